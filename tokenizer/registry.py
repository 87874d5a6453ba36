"""Finding encodings by name or path: :func:`get_encoding`.

Names resolve in this order:

1. a path (a directory with ``encoding.json``, an ``encoding.json`` file, or a
   bare ``*.tiktoken`` ranks file, read as o200k_base -> ``o200k_harmony``);
2. an encoding shipped in this package (``tokenizer/encodings/<name>/``);
3. ``o200k_harmony`` (gpt-oss), from tiktoken's cache;
4. an encoding a third-party plugin registers through the ``mind4_tokenizers`` hook.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from mind4_core.errors import TokenizerError

from .encoding import O200K_PAT_STR, SPEC_FILE, Tokenizer, load_encoding_spec, read_ranks
from .specials import O200K_BASE_N_RANKS, O200K_HARMONY_N_VOCAB, o200k_harmony_special_tokens

ENCODINGS_DIR = Path(__file__).parent / "encodings"
O200K_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def shipped_encodings() -> list[str]:
    """Names of the encodings shipped inside this package."""
    if not ENCODINGS_DIR.is_dir():
        return []
    return sorted(p.name for p in ENCODINGS_DIR.iterdir() if (p / SPEC_FILE).is_file())


def load_shipped(name: str) -> Tokenizer:
    return _load_dir(str(ENCODINGS_DIR / name))


@functools.lru_cache(maxsize=16)
def _load_dir(path: str) -> Tokenizer:
    return load_encoding_spec(path)


# --------------------------------------------------------------------------- o200k_harmony


def tiktoken_cache_dir() -> Path | None:
    """Where tiktoken keeps downloaded files (same rules as ``tiktoken.load``);
    ``None`` when caching is turned off (``TIKTOKEN_CACHE_DIR=""``)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def o200k_base_cache_path() -> Path | None:
    """The file name tiktoken gives o200k_base in its cache (sha1 of the URL)."""
    cache = tiktoken_cache_dir()
    return None if cache is None else cache / hashlib.sha1(O200K_BASE_URL.encode()).hexdigest()


def find_o200k_base() -> Path:
    """Locate o200k_base's ranks file or say exactly what to provide."""
    path = o200k_base_cache_path()
    if path is not None and path.is_file():
        return path
    if path is None:
        path = "$TIKTOKEN_CACHE_DIR/" + hashlib.sha1(O200K_BASE_URL.encode()).hexdigest()
    raise TokenizerError(
        "o200k_harmony needs the o200k_base ranks file, which Mind 4 does not ship and "
        "cannot download. Get o200k_base.tiktoken "
        f"(from {O200K_BASE_URL}, sha256 {O200K_BASE_SHA256}) and either\n"
        f"  - copy it to {path} (tiktoken's cache; set TIKTOKEN_CACHE_DIR to use another "
        "folder), or\n"
        "  - pass its path as the encoding: `--tokenizer /path/to/o200k_base.tiktoken` "
        "(or get_encoding('/path/to/o200k_base.tiktoken'))."
    )


def o200k_harmony(ranks_file: str | Path | None = None) -> Tokenizer:
    """The gpt-oss tokenizer: o200k_base ranks + harmony specials at their real ids."""
    path = Path(ranks_file) if ranks_file is not None else find_o200k_base()
    return _load_o200k(str(path.resolve()))


@functools.lru_cache(maxsize=4)
def _load_o200k(path: str) -> Tokenizer:
    ranks = read_ranks(path)
    if len(ranks) != O200K_BASE_N_RANKS:
        raise TokenizerError(
            f"{path} holds {len(ranks)} ranks, but o200k_base has {O200K_BASE_N_RANKS}: "
            "a bare ranks file is read as o200k_base; for another encoding give a "
            f"directory with {SPEC_FILE} (see `mind4 tokenizer train`)"
        )
    return Tokenizer(
        "o200k_harmony",
        pat_str=O200K_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=o200k_harmony_special_tokens(),
        n_vocab=O200K_HARMONY_N_VOCAB,
        source=path,
    )


# --------------------------------------------------------------------------- get_encoding

BUILTIN_NAMES = ("o200k_harmony",)


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or name.endswith((".json", ".tiktoken"))
        or name.startswith(".")
        or Path(name).exists()
    )


def get_encoding(name_or_path: str | os.PathLike[str]) -> Tokenizer:
    """Return the :class:`Tokenizer` for a registered name or a path.

    >>> tok = get_encoding("mind4-8k")
    >>> tok.decode(tok.encode("hello <|start|>")) == "hello <|start|>"
    True
    """
    name = os.fspath(name_or_path)
    if not name:
        raise TokenizerError("empty encoding name")
    if _looks_like_path(name):
        return load_path(name)
    if name in shipped_encodings():
        return load_shipped(name)
    if name == "o200k_harmony":
        return o200k_harmony()
    return _from_plugins(name)


def load_path(path: str | os.PathLike[str]) -> Tokenizer:
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        return _load_dir(str(p.resolve() if p.is_dir() else p.resolve().parent))
    if p.suffix == ".tiktoken" or p.is_file():
        if not p.exists():
            raise TokenizerError(f"ranks file not found: {p}")
        return o200k_harmony(p)
    raise TokenizerError(f"no encoding at {p}: not a directory, encoding.json or ranks file")


def _from_plugins(name: str) -> Tokenizer:
    known = [*shipped_encodings(), *BUILTIN_NAMES]
    try:
        from mind4_core.plugins import get_manager
    except ImportError:  # the plugin manager is not there (e.g. a stripped core)
        get_manager = None
    if get_manager is not None:
        for record in get_manager().records("tokenizer"):
            if record.name == name:
                return record.create()
            known.append(record.name)
    raise TokenizerError(
        f"unknown encoding {name!r}; known: {', '.join(sorted(set(known)))}, "
        "or give a path to an encoding directory or ranks file"
    )
