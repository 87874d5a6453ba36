"""Mind 4's tokenizers: tiktoken encodings, a BPE trainer, the harmony chat format.

>>> from mind4_tokenizer import get_encoding
>>> tok = get_encoding("mind4-8k")
>>> tok.decode(tok.encode("Hello, world!"))
'Hello, world!'
"""

from __future__ import annotations

from .encoding import Tokenizer, load_encoding_spec, read_ranks, save_encoding, write_ranks
from .registry import get_encoding, o200k_harmony, shipped_encodings
from .specials import HARMONY_SPECIALS

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
