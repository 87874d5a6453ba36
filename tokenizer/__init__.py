"""Mind 4's tokenizers: tiktoken encodings, a BPE trainer, the harmony chat format.

>>> from mind4_tokenizer import get_encoding
>>> tok = get_encoding("mind4-8k")
>>> tok.decode(tok.encode("Hello, world!"))
'Hello, world!'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .encoding import Tokenizer, load_encoding_spec, read_ranks, save_encoding, write_ranks
    from .registry import get_encoding, o200k_harmony, shipped_encodings
    from .specials import HARMONY_SPECIALS

# Imported on first use, so that plugin discovery (``mind4_tokenizer.plugin``) stays light.
_LAZY = {
    "Tokenizer": "encoding",
    "load_encoding_spec": "encoding",
    "read_ranks": "encoding",
    "save_encoding": "encoding",
    "write_ranks": "encoding",
    "get_encoding": "registry",
    "o200k_harmony": "registry",
    "shipped_encodings": "registry",
    "HARMONY_SPECIALS": "specials",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HARMONY_SPECIALS",
    "Tokenizer",
    "get_encoding",
    "load_encoding_spec",
    "o200k_harmony",
    "read_ranks",
    "save_encoding",
    "shipped_encodings",
    "write_ranks",
]
