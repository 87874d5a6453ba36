"""Training data: text -> one memory-mapped token file -> train/validation batches.

    sources (files, folders) or the default corpus
      -> tokenised with a named encoding, documents joined by <|endoftext|>
      -> <cache_dir>/tokens-<key>.bin  (uint16/uint32, np.memmap) + tokens-<key>.json
      -> train = tokens[:split], validation = tokens[split:]  (the tail)

The cache key hashes the encoding's vocabulary and the text, so a changed file
or encoding re-tokenises and an unchanged one is reused. Batches are a pure
function of ``(seed, step, micro-batch)``: resuming at step ``s`` sees exactly
the batches an uninterrupted run would, and ``P`` processes of ``B`` sequences
see the same global batch as one process of ``P·B`` (no torch here).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mind4_core.errors import Mind4Error

FORMAT_VERSION = 1
DEFAULT_CORPUS = "default corpus (pydoc_data topics + standard-library docstrings)"


class DataError(Mind4Error):
    """The training data cannot be read, or is too small for the configuration."""


# ----------------------------------------------------------------------------- sources


def find_files(sources: list[str], extensions: list[str]) -> list[Path]:
    """The files named by ``sources``: files as given, folders walked (sorted) for
    files ending in one of ``extensions``."""
    files: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.endswith(tuple(extensions))
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(
                    f"data source {source!r} is a folder with no files ending in "
                    f"{', '.join(extensions)}; add files or change data.extensions"
                )
            files.extend(found)
        else:
            raise DataError(
                f"data source {source!r} does not exist (data.sources takes text files or folders)"
            )
    return files


def documents(sources: list[str], extensions: list[str]) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of every document: the user's files, or the default corpus."""
    if not sources:
        from mind4_tokenizer.corpus import default_corpus_text

        yield DEFAULT_CORPUS, default_corpus_text()
        return
    for path in find_files(sources, extensions):
        try:
            yield str(path), path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path} is not UTF-8 text (byte {exc.start}); convert it or remove it from "
                "data.sources"
            ) from None
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc}") from None


# ----------------------------------------------------------------------------- tokens


def vocabulary_digest(tokenizer: Any) -> str:
    """A hash of the encoding: its name and the bytes of every token id."""
    h = hashlib.sha256(f"{tokenizer.name}:{tokenizer.n_vocab}".encode())
    for i in range(tokenizer.n_vocab):
        try:
            h.update(len(b := tokenizer.token_bytes(i)).to_bytes(4, "little") + b)
        except Mind4Error:
            h.update(b"\xff\xff\xff\xff")  # an id with no bytes (a gap in the vocabulary)
    return h.hexdigest()


def token_byte_lengths(tokenizer: Any) -> np.ndarray:
    """``(n_vocab,)`` int64: UTF-8 bytes each token stands for (special tokens: 0).

    Bits per byte divide a loss by these: a special token carries no text bytes."""
    out = np.zeros(tokenizer.n_vocab, dtype=np.int64)
    for i in range(tokenizer.n_vocab):
        if tokenizer.is_special(i):
            continue
        try:
            out[i] = len(tokenizer.token_bytes(i))
        except Mind4Error:
            out[i] = 0
    return out


@attrs.frozen
class TokenData:
    """A tokenised corpus, memory-mapped, split into train (head) and validation (tail)."""

    path: Path
    tokens: np.ndarray  # (N,) uint16/uint32 memmap
    split: int  # tokens[:split] train, tokens[split:] validation
    meta: dict[str, Any]

    @property
    def train(self) -> np.ndarray:
        return self.tokens[: self.split]

    @property
    def validation(self) -> np.ndarray:
        return self.tokens[self.split :]

    def __len__(self) -> int:
        return len(self.tokens)


def required_tokens(context_length: int, validation_fraction: float) -> int:
    """Fewest tokens a corpus may have: one full sequence in each split."""
    window = context_length + 1
    return max(2 * window, math.ceil(window / validation_fraction))


def split_point(n_tokens: int, validation_fraction: float, context_length: int) -> int:
    """First validation token: the tail holds ``validation_fraction`` of the tokens
    (at least one sequence of ``context_length + 1``)."""
    n_val = max(context_length + 1, math.ceil(validation_fraction * n_tokens))
    return n_tokens - n_val


def prepare(
    tokenizer: Any,
    sources: list[str],
    extensions: list[str],
    cache_dir: str | Path,
    *,
    context_length: int,
    validation_fraction: float,
    log=None,
) -> TokenData:
    """Tokenise the sources into ``cache_dir`` (reused when unchanged) and split them."""
    cache_dir = Path(cache_dir)
    docs = list(documents(sources, extensions))
    h = hashlib.sha256(f"mind4-tokens:{FORMAT_VERSION}:{vocabulary_digest(tokenizer)}".encode())
    for _name, text in docs:
        h.update(len(text).to_bytes(8, "little"))
        h.update(text.encode("utf-8"))
    key = h.hexdigest()[:16]
    bin_path = cache_dir / f"tokens-{key}.bin"
    meta_path = cache_dir / f"tokens-{key}.json"

    meta = _read_meta(meta_path, bin_path)
    if meta is None:
        if log:
            log(f"tokenising {len(docs)} document(s) with {tokenizer.name} into {bin_path}")
        meta = _tokenise(tokenizer, docs, bin_path, meta_path, key)
    dtype = np.dtype(meta["dtype"])
    n = meta["n_tokens"]
    need = required_tokens(context_length, validation_fraction)
    if n < need:
        where = ", ".join(name for name, _ in docs[:3]) + (" ..." if len(docs) > 3 else "")
        raise DataError(
            f"the corpus ({where}) has {n} tokens with encoding {tokenizer.name!r}, but at least "
            f"{need} are needed for training.context_length={context_length} and "
            f"data.validation_fraction={validation_fraction} (one sequence of "
            f"{context_length + 1} tokens in the validation tail, the rest for training). Add "
            "text, or lower training.context_length."
        )
    tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,))
    split = split_point(n, validation_fraction, context_length)
    return TokenData(path=bin_path, tokens=tokens, split=split, meta=meta)


def _read_meta(meta_path: Path, bin_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    expected = meta.get("n_tokens", -1) * np.dtype(meta.get("dtype", "uint16")).itemsize
    if not bin_path.is_file() or bin_path.stat().st_size != expected:
        return None
    return meta


def _tokenise(
    tokenizer: Any, docs: list[tuple[str, str]], bin_path: Path, meta_path: Path, key: str
) -> dict[str, Any]:
    """Encode every document into ``bin_path`` (written to a temporary file, then renamed)."""
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.n_vocab <= 1 << 16 else np.uint32
    eot = tokenizer.special_tokens.get("<|endoftext|>")
    tmp = bin_path.with_name(bin_path.name + f".tmp{os.getpid()}")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for i, (_, text) in enumerate(docs):
                ids = tokenizer.encode(text)
                if i and eot is not None:
                    ids = [eot, *ids]  # documents separated by <|endoftext|>
                np.asarray(ids, dtype=dtype).tofile(f)
                n += len(ids)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, bin_path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "format": "mind4-tokens",
        "version": FORMAT_VERSION,
        "key": key,
        "encoding": tokenizer.name,
        "n_vocab": tokenizer.n_vocab,
        "dtype": np.dtype(dtype).name,
        "n_tokens": n,
        "documents": len(docs),
        "bytes": sum(len(text.encode("utf-8")) for _, text in docs),
        "sources": [name for name, _ in docs][:1000],
    }
    tmp_meta = meta_path.with_name(meta_path.name + f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    return meta


# ----------------------------------------------------------------------------- batches


def batch_offsets(seed: int, step: int, n_train: int, window: int, count: int) -> np.ndarray:
    """Start offsets of the ``count`` training windows of one optimiser step:
    uniform over ``[0, n_train - window]``, a pure function of ``(seed, step)``."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_train - window + 1, size=count)


def windows(tokens: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
    """``(len(offsets), window)`` int64: ``tokens[o : o + window]`` for each offset."""
    index = offsets[:, None] + np.arange(window)[None, :]  # (B, window)
    return np.asarray(tokens[index], dtype=np.int64)


class Batches:
    """Training micro-batches of one process.

    Step ``s`` draws ``B·A·P`` windows (batch size, accumulation, processes).
    Micro-batch ``m`` of rank ``r`` takes the slice of global micro-batch
    ``m·P + r``; so one process with ``A = P`` sees the very batches ``P``
    processes with ``A = 1`` see together.
    """

    def __init__(
        self,
        data: TokenData,
        *,
        seed: int,
        batch_size: int,
        context_length: int,
        grad_accumulation: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.data = data
        self.seed = seed
        self.batch_size = batch_size
        self.window = context_length + 1
        self.accumulation = grad_accumulation
        self.rank, self.world_size = rank, world_size

    @property
    def global_batch(self) -> int:
        """Sequences per optimiser step, over every process."""
        return self.batch_size * self.accumulation * self.world_size

    def micro_batch(self, step: int, micro: int) -> np.ndarray:
        """``(B, T + 1)`` int64 tokens: inputs ``[:, :-1]``, targets ``[:, 1:]``."""
        offsets = batch_offsets(self.seed, step, self.data.split, self.window, self.global_batch)
        g = micro * self.world_size + self.rank
        mine = offsets[g * self.batch_size : (g + 1) * self.batch_size]
        return windows(self.data.tokens, mine, self.window)


def validation_windows(
    n_val: int, context_length: int, max_tokens: int | None = None
) -> list[tuple[int, int]]:
    """``(start, length)`` windows that tile the validation split: window ``i`` covers
    ``[i·T, i·T + T + 1)``, so its targets are tokens ``i·T + 1 .. i·T + T`` and all the
    windows together predict every validation token but the first, once each.
    The last window may be shorter. ``max_tokens`` caps the tokens predicted."""
    T = context_length
    limit = n_val - 1 if max_tokens is None else min(n_val - 1, max_tokens)
    out = []
    for start in range(0, limit, T):
        out.append((start, min(T, limit - start) + 1))
    return out


def validation_target_bytes(
    data: TokenData, tokenizer: Any, max_tokens: int | None = None
) -> bytes:
    """The exact text bytes a validation pass scores (every target token), for
    comparing bits per byte with a compressor such as ``xz -9``."""
    val = np.asarray(data.validation)
    limit = len(val) - 1 if max_tokens is None else min(len(val) - 1, max_tokens)
    ids = [int(t) for t in val[1 : 1 + limit] if not tokenizer.is_special(int(t))]
    return tokenizer.decode_bytes(ids)
