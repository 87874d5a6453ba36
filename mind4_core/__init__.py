"""Mind 4: a laboratory and runtime for the gpt-oss transformer family.

The core is small and light: importing it never imports torch, triton or a
compiled extension. Backends arrive as plugins (entry-point group ``mind4``).
"""

from __future__ import annotations

from .errors import Mind4Error
from .hookspecs import PLUGIN_API_VERSION, hookimpl

__version__ = "0.1.0"

__all__ = ["Mind4Error", "PLUGIN_API_VERSION", "__version__", "hookimpl", "load"]


def load(*args, **kwargs):
    """Load a model for generation; see :func:`mind4_core.engine.load`."""
    from .engine import load as _load

    return _load(*args, **kwargs)
