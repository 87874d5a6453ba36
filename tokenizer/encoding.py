"""Encodings: a tiktoken ``Encoding`` built from a ranks file plus special tokens.

File formats
------------
*Ranks file* (tiktoken's own format, e.g. ``o200k_base.tiktoken``): one line per
mergeable token, ``<base64 of the token's bytes> <rank>``. Ranks are dense
(``0 .. N-1``), every single byte is a token, and a lower rank merges first.

*Encoding spec* (``encoding.json``, Mind 4's own encodings)::

    {"format": "mind4-encoding", "version": 1, "name": "mind4-8k",
     "ranks": "ranks.tiktoken", "ranks_sha256": "…", "pat_str": "…",
     "special_tokens": {"<|startoftext|>": 8183, …}, "n_vocab": 8192,
     "training": {…provenance…}}

Text policy: :meth:`Tokenizer.encode` encodes *all* text as ordinary text
(tiktoken's ``encode_ordinary``), so ``"<|start|>"`` typed by a user becomes
the literal characters. Lone surrogates (not valid Unicode scalar values) are
replaced by U+FFFD, as tiktoken does; every other string round-trips exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tiktoken

from mind4_core.errors import TokenizerError

#: The split pattern of o200k_base (the default of Mind 4's trainer).
O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
#: The split pattern of cl100k_base.
CL100K_PAT_STR = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"o200k": O200K_PAT_STR, "cl100k": CL100K_PAT_STR}

SPEC_FORMAT = "mind4-encoding"
SPEC_VERSION = 1
SPEC_FILE = "encoding.json"


# --------------------------------------------------------------------------- ranks files


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Read and validate a tiktoken ranks file -> ``{token bytes: rank}``.

    Raises :class:`TokenizerError` naming the file (and line) for a missing
    file, a malformed line, a duplicate token or rank, ranks that are not
    ``0 .. N-1``, or a missing single-byte token.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TokenizerError(f"ranks file not found: {path}") from None
    except OSError as exc:
        raise TokenizerError(f"cannot read ranks file {path}: {exc.strerror}") from None
    ranks: dict[bytes, int] = {}
    seen_ranks: dict[int, int] = {}  # rank -> line number
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{path}, line {lineno}"
        if len(fields) != 2:
            raise TokenizerError(
                f"malformed ranks file {where}: expected '<base64 token> <rank>', got {line[:80]!r}"
            )
        try:
            token = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise TokenizerError(
                f"malformed ranks file {where}: {fields[0][:60].decode(errors='replace')!r} is not base64"
            ) from None
        try:
            rank = int(fields[1])
        except ValueError:
            raise TokenizerError(
                f"malformed ranks file {where}: rank {fields[1][:20].decode(errors='replace')!r} is not an integer"
            ) from None
        if not token:
            raise TokenizerError(f"malformed ranks file {where}: empty token")
        if rank < 0:
            raise TokenizerError(f"malformed ranks file {where}: negative rank {rank}")
        if token in ranks:
            raise TokenizerError(
                f"duplicate token {token!r} in ranks file {where} "
                f"(it already has rank {ranks[token]})"
            )
        if rank in seen_ranks:
            raise TokenizerError(
                f"duplicate rank {rank} in ranks file {where} (already used on line "
                f"{seen_ranks[rank]})"
            )
        ranks[token] = rank
        seen_ranks[rank] = lineno
    check_ranks(ranks, where=str(path))
    return ranks


def check_ranks(ranks: Mapping[bytes, int], *, where: str) -> None:
    """Mergeable ranks must be dense and contain every single byte."""
    if not ranks:
        raise TokenizerError(f"ranks file {where} holds no tokens")
    n = len(ranks)
    if max(ranks.values()) != n - 1 or len(set(ranks.values())) != n:
        missing = sorted(set(range(n)) - set(ranks.values()))[:5]
        raise TokenizerError(
            f"ranks in {where} are not 0..{n - 1} without gaps (first missing: {missing})"
        )
    missing_bytes = [b for b in range(256) if bytes([b]) not in ranks]
    if missing_bytes:
        raise TokenizerError(
            f"ranks in {where} lack {len(missing_bytes)} single-byte tokens "
            f"(first: {bytes(missing_bytes[:5])!r}); a byte-level BPE needs all 256"
        )


def write_ranks(ranks: Mapping[bytes, int], path: str | Path) -> str:
    """Write ranks in tiktoken's format (sorted by rank); returns the file's sha256."""
    lines = [
        base64.b64encode(token) + b" " + str(rank).encode()
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
    ]
    data = b"\n".join(lines) + b"\n"
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the tokenizer


class Tokenizer:
    """A named encoding: tiktoken does the work, this adds Mind 4's contract.

    Follows :class:`mind4_core.protocols.Tokenizer`. ``encode`` never produces
    special tokens; use :meth:`encode_special` for those (the chat renderer does).
    """

    def __init__(
        self,
        name: str,
        *,
        pat_str: str,
        mergeable_ranks: dict[bytes, int],
        special_tokens: Mapping[str, int],
        n_vocab: int | None = None,
        source: str | None = None,
    ):
        check_specials(mergeable_ranks, special_tokens, where=source or name)
        self.name = name
        self.pat_str = pat_str
        #: where the encoding was loaded from (a file or directory), for messages
        self.source = source
        self.special_tokens: Mapping[str, int] = MappingProxyType(dict(special_tokens))
        last_id = max([len(mergeable_ranks) - 1, *special_tokens.values()])
        self.n_vocab = last_id + 1 if n_vocab is None else n_vocab
        if self.n_vocab != last_id + 1:
            raise TokenizerError(
                f"encoding {name!r} ({source or 'in memory'}) declares n_vocab {n_vocab} "
                f"but its highest token id is {last_id}"
            )
        self.n_ranks = len(mergeable_ranks)
        try:
            self._enc = tiktoken.Encoding(
                name,
                pat_str=pat_str,
                mergeable_ranks=mergeable_ranks,
                special_tokens=dict(special_tokens),
            )
        except Exception as exc:  # noqa: BLE001 - the Rust core reports e.g. a bad regex
            raise TokenizerError(
                f"tiktoken cannot build encoding {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self._special_ids = frozenset(special_tokens.values())

    def __repr__(self) -> str:
        return f"<Tokenizer {self.name!r} n_vocab={self.n_vocab}>"

    @property
    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """The underlying :class:`tiktoken.Encoding` (for bulk or numpy encoding)."""
        return self._enc

    # encoding --------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ordinary text -> ids. Special-token text stays literal text."""
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        """:meth:`encode` over many texts, in tiktoken's thread pool."""
        return self._enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def encode_special(self, token_text: str) -> int:
        """The id of one special token, e.g. ``encode_special("<|start|>")``."""
        try:
            return self.special_tokens[token_text]
        except KeyError:
            named = [t for t in self.special_tokens if not t.startswith("<|reserved_")]
            raise TokenizerError(
                f"{token_text!r} is not a special token of encoding {self.name!r}; "
                f"it has: {', '.join(named)}"
            ) from None

    # decoding --------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = ids if isinstance(ids, list) else list(ids)
        try:
            return self._enc.decode_bytes(ids)
        except (KeyError, OverflowError, TypeError, ValueError) as exc:
            bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < self.n_vocab)]
            raise TokenizerError(
                f"cannot decode with {self.name!r}: token ids {bad[:5]} are outside "
                f"0..{self.n_vocab - 1} ({type(exc).__name__})"
            ) from None

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token (a special token gives its text in UTF-8)."""
        return self.decode_bytes([token])

    def is_special(self, token: int) -> bool:
        return token in self._special_ids


def check_specials(
    mergeable_ranks: Mapping[bytes, int], special_tokens: Mapping[str, int], *, where: str
) -> None:
    """Special ids must not collide with mergeable ranks or with each other."""
    n = len(mergeable_ranks)
    by_id: dict[int, str] = {}
    for text, token in special_tokens.items():
        if not isinstance(token, int) or isinstance(token, bool) or token < 0:
            raise TokenizerError(f"special token {text!r} in {where} has invalid id {token!r}")
        if token < n:
            raise TokenizerError(
                f"special token {text!r} in {where} has id {token}, which collides with the "
                f"mergeable ranks 0..{n - 1}; special ids must be >= {n}"
            )
        if token in by_id:
            raise TokenizerError(
                f"special tokens {by_id[token]!r} and {text!r} in {where} share id {token}"
            )
        by_id[token] = text


# --------------------------------------------------------------------------- encoding specs


def save_encoding(
    out_dir: str | Path,
    *,
    name: str,
    ranks: Mapping[bytes, int],
    pat_str: str,
    special_tokens: Mapping[str, int],
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``ranks.tiktoken`` + ``encoding.json`` into ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_ranks(ranks, where=name)
    check_specials(ranks, special_tokens, where=name)
    digest = write_ranks(ranks, out / "ranks.tiktoken")
    spec = {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "name": name,
        "ranks": "ranks.tiktoken",
        "ranks_sha256": digest,
        "pat_str": pat_str,
        "special_tokens": dict(special_tokens),
        "n_vocab": max([len(ranks) - 1, *special_tokens.values()]) + 1,
        "training": dict(training or {}),
    }
    path = out / SPEC_FILE
    path.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_encoding_spec(path: str | Path) -> Tokenizer:
    """Load a Mind 4 encoding from its ``encoding.json`` (or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(
            f"no encoding spec at {path}: an encoding directory holds {SPEC_FILE} and a ranks "
            "file (see `mind4 tokenizer train`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"cannot read encoding spec {path}: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise TokenizerError(
            f'{path} is not a Mind 4 encoding spec (expected "format": "{SPEC_FORMAT}")'
        )
    if spec.get("version") != SPEC_VERSION:
        raise TokenizerError(
            f"{path}: encoding spec version {spec.get('version')!r} is not supported "
            f"(this Mind 4 reads version {SPEC_VERSION})"
        )
    for field, kind in (("name", str), ("ranks", str), ("pat_str", str), ("special_tokens", dict)):
        if not isinstance(spec.get(field), kind):
            raise TokenizerError(
                f"{path}: field {field!r} must be a {kind.__name__}, got {spec.get(field)!r}"
            )
    ranks_path = path.parent / spec["ranks"]
    expected = spec.get("ranks_sha256")
    if expected is not None and ranks_path.exists() and sha256_file(ranks_path) != expected:
        raise TokenizerError(
            f"{ranks_path} does not match {path} (sha256 differs): the ranks file was changed "
            "or belongs to another encoding"
        )
    ranks = read_ranks(ranks_path)
    return Tokenizer(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=ranks,
        special_tokens=spec["special_tokens"],
        n_vocab=spec.get("n_vocab"),
        source=str(path.parent),
    )
