"""Mind 4's Triton backend: fused GPU kernels for gpt-oss models.

Importing ``mind4_triton`` (or its :mod:`~mind4_triton.plugin` module) imports
neither torch nor triton; the kernels live in :mod:`mind4_triton.kernels` and
the model runtime in :mod:`mind4_triton.runtime`, imported only when used.
"""

__version__ = "0.1.0"
