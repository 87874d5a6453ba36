"""``python -m mind4_evals`` is ``mind4 eval``."""

from .cli import main

main()
