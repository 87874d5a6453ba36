"""A byte-level BPE trainer that writes ranks tiktoken can load.

How it works (the whole algorithm, in the order the code runs):

1. **Pre-split.** The split pattern (o200k's by default) cuts text into
   *pre-tokens*: words with their leading space, runs of digits, punctuation,
   whitespace. Merges never cross a pre-token boundary, exactly as tiktoken
   applies them when it encodes.
2. **Count unique pre-tokens.** 10 MB of text has only a few hundred thousand
   distinct pre-tokens, so the trainer works on ``(bytes, count)`` pairs, not on
   the text.
3. **Start from bytes.** Tokens 0..255 are the 256 single bytes (rank = byte
   value); every pre-token is a list of byte ids.
4. **Count adjacent pairs** over all pre-tokens, weighted by their counts, and
   remember which pre-tokens contain each pair.
5. **Merge the most frequent pair** into a new token (rank = next id), rewrite
   only the pre-tokens that contain it, and update the pair counts
   *incrementally* from what changed in those pre-tokens. A heap keyed by
   ``(-count, first id, second id)`` finds the next best pair; entries whose
   count went stale are skipped when popped. Ties go to the pair of smaller ids
   (older tokens first), so training is deterministic.
6. Repeat until the vocabulary (ranks + special tokens) reaches the target.

A merge whose bytes already exist as a token (``"ab"+"c"`` after ``"a"+"bc"``)
reuses that token's id: tiktoken keys ranks by bytes, so a byte string has one
rank.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from pathlib import Path

import attrs
import regex

from mind4_core.errors import TokenizerError

from .encoding import O200K_PAT_STR, save_encoding
from .specials import HARMONY_SPECIALS, appended_special_tokens

Pair = tuple[int, int]


@attrs.frozen
class Merge:
    """One learned merge: tokens ``left`` + ``right`` -> ``token``, seen ``count`` times."""

    left: int
    right: int
    token: int
    count: int


@attrs.frozen
class TrainResult:
    ranks: dict[bytes, int]  # token bytes -> rank (= token id)
    merges: list[Merge]  # in the order they were learned
    special_tokens: dict[str, int]
    pat_str: str
    n_pretokens: int  # distinct pre-tokens
    n_bytes: int  # UTF-8 bytes of training text
    seconds: float

    @property
    def n_vocab(self) -> int:
        return len(self.ranks) + len(self.special_tokens)


# --------------------------------------------------------------------------- input


def read_text_file(path: str | Path, errors: str = "strict") -> str:
    """Read a UTF-8 training file.

    Policy for invalid UTF-8: ``errors="strict"`` (default) raises
    :class:`TokenizerError` naming the file and the byte offset; ``"replace"``
    substitutes U+FFFD; ``"ignore"`` drops the bad bytes.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"cannot read training file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise TokenizerError(
            f"{path}: invalid UTF-8 at byte offset {exc.start} "
            f"(bytes {data[exc.start : exc.start + 4]!r}); fix the file or train with "
            "--errors replace (U+FFFD) or --errors ignore (drop the bytes)"
        ) from None
    except LookupError:
        raise TokenizerError(
            f"unknown errors policy {errors!r}: use strict, replace or ignore"
        ) from None


def count_pretokens(texts: Iterable[str], pat_str: str = O200K_PAT_STR) -> Counter[str]:
    """Pre-split every text with the pattern and count distinct pre-tokens."""
    pattern = regex.compile(pat_str)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pattern.findall(text))
    return counts


# --------------------------------------------------------------------------- training


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    pat_str: str = O200K_PAT_STR,
    special_tokens: Sequence[str] = HARMONY_SPECIALS,
    min_frequency: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Learn byte-level BPE ranks so that ranks + ``special_tokens`` = ``vocab_size``.

    Training stops early (with fewer tokens) when no pair occurs at least
    ``min_frequency`` times. ``progress(done, total)`` is called after each merge.
    """
    n_special = len(special_tokens)
    if vocab_size < 256 + n_special:
        raise TokenizerError(
            f"vocabulary size {vocab_size} is too small: it must hold the 256 byte tokens "
            f"plus {n_special} special tokens, so at least {256 + n_special}"
        )
    if min_frequency < 1:
        raise TokenizerError(f"min_frequency must be >= 1, got {min_frequency}")
    start = time.perf_counter()
    n_bytes = 0

    def measured(texts: Iterable[str]) -> Iterable[str]:
        nonlocal n_bytes
        for text in texts:
            n_bytes += len(text.encode("utf-8", errors="surrogatepass"))
            yield text

    # 1-2. distinct pre-tokens, sorted so the result does not depend on input order
    counted = count_pretokens(measured(texts), pat_str)
    pretokens = sorted(counted.items(), key=lambda item: item[0].encode("utf-8", "surrogatepass"))
    # 3. every pre-token as a list of byte ids; its count
    words: list[list[int]] = [list(w.encode("utf-8", "surrogatepass")) for w, _ in pretokens]
    freqs: list[int] = [c for _, c in pretokens]
    vocab: list[bytes] = [bytes([b]) for b in range(256)]  # token id -> bytes
    token_of: dict[bytes, int] = {t: i for i, t in enumerate(vocab)}

    # 4. pair counts and, per pair, the pre-tokens that (may) contain it
    pair_count: dict[Pair, int] = defaultdict(int)
    pair_where: dict[Pair, set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        f = freqs[i]
        for pair in pairwise(word):
            pair_count[pair] += f
            pair_where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges: list[Merge] = []
    target = vocab_size - n_special
    while len(vocab) < target and heap:
        neg, a, b = heapq.heappop(heap)
        count = pair_count.get((a, b), 0)
        if count != -neg:
            continue  # stale heap entry: the pair's count changed since it was pushed
        if count < min_frequency:
            break
        # 5. the new token (or the existing token with the same bytes)
        merged = vocab[a] + vocab[b]
        new = token_of.get(merged)
        if new is None:
            new = len(vocab)
            vocab.append(merged)
            token_of[merged] = new
        merges.append(Merge(a, b, new, count))
        delta = _merge_pair(a, b, new, words, freqs, pair_count, pair_where)
        for pair, d in delta.items():
            if d and pair_count.get(pair, 0) > 0:
                heapq.heappush(heap, (-pair_count[pair], pair[0], pair[1]))
        if progress is not None:
            progress(len(vocab), target)

    ranks = {token: rank for rank, token in enumerate(vocab)}
    return TrainResult(
        ranks=ranks,
        merges=merges,
        special_tokens=appended_special_tokens_for(special_tokens, len(ranks)),
        pat_str=pat_str,
        n_pretokens=len(words),
        n_bytes=n_bytes,
        seconds=time.perf_counter() - start,
    )


def _merge_pair(
    a: int,
    b: int,
    new: int,
    words: list[list[int]],
    freqs: list[int],
    pair_count: dict[Pair, int],
    pair_where: dict[Pair, set[int]],
) -> dict[Pair, int]:
    """Replace every ``a b`` by ``new`` in the pre-tokens that contain it and update
    the pair counts by the difference; returns ``{pair: change in count}``."""
    delta: dict[Pair, int] = defaultdict(int)
    for i in pair_where.pop((a, b)):
        word = words[i]
        n = len(word)
        # rewrite the word left to right, merging non-overlapping occurrences
        out: list[int] = []
        j = 0
        while j < n:
            if j + 1 < n and word[j] == a and word[j + 1] == b:
                out.append(new)
                j += 2
            else:
                out.append(word[j])
                j += 1
        if len(out) == n:
            continue  # stale membership: the pair left this word in an earlier merge
        f = freqs[i]
        for pair in pairwise(word):
            delta[pair] -= f
        for pair in pairwise(out):
            delta[pair] += f
            pair_where[pair].add(i)
        words[i] = out
    for pair, d in delta.items():
        if d:
            c = pair_count[pair] + d
            if c > 0:
                pair_count[pair] = c
            else:
                pair_count.pop(pair, None)
                pair_where.pop(pair, None)
    pair_count.pop((a, b), None)
    return delta


def appended_special_tokens_for(special_tokens: Sequence[str], n_ranks: int) -> dict[str, int]:
    if tuple(special_tokens) == HARMONY_SPECIALS:
        return appended_special_tokens(n_ranks)
    missing = [t for t in HARMONY_SPECIALS if t not in special_tokens]
    if missing:
        raise TokenizerError(
            f"special tokens must include the harmony tokens (missing {missing}): the chat "
            "format needs them in every encoding"
        )
    if len(set(special_tokens)) != len(special_tokens):
        raise TokenizerError(f"duplicate special tokens in {list(special_tokens)}")
    return {text: n_ranks + i for i, text in enumerate(special_tokens)}


# --------------------------------------------------------------------------- files -> encoding


def train_files(
    paths: Sequence[str | Path],
    vocab_size: int,
    out_dir: str | Path,
    *,
    name: str | None = None,
    errors: str = "strict",
    pat_str: str = O200K_PAT_STR,
    min_frequency: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainResult, Path]:
    """Train on text files and write the encoding directory; returns (result, json path)."""
    if not paths:
        raise TokenizerError("no training files given")
    texts = (read_text_file(p, errors) for p in paths)
    result = train_bpe(
        texts, vocab_size, pat_str=pat_str, min_frequency=min_frequency, progress=progress
    )
    out = Path(out_dir)
    spec = save_encoding(
        out,
        name=name or out.name,
        ranks=result.ranks,
        pat_str=result.pat_str,
        special_tokens=result.special_tokens,
        training={
            "files": [Path(p).name for p in paths],
            "bytes": result.n_bytes,
            "requested_vocab_size": vocab_size,
            "min_frequency": min_frequency,
            "errors": errors,
        },
    )
    return result, spec
