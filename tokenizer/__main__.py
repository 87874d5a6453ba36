"""``python -m mind4_tokenizer`` runs the ``mind4 tokenizer`` command group."""

from .cli import main

main()
