"""mind4-metal: Mind 4's native C engine (``metal_native``) bound with cffi.

Importing this package is cheap: the compiled module ``mind4_metal._native``
loads only when a runtime or sampler is created. The plugin's hooks live in
:mod:`mind4_metal.plugin` (entry point ``mind4: metal``).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# A development build (`python build_ffi.py --inplace`) leaves the compiled
# module in ../build-dev/lib; an installed wheel has it inside this package.
_dev_lib = Path(__file__).resolve().parent.parent / "build-dev" / "lib"
if _dev_lib.is_dir():
    __path__.append(str(_dev_lib))  # noqa: F821 - the package's own __path__
