"""Training data: token files, the cache, the split, batches and validation windows."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mind4_torch.train import data as data_mod
from mind4_torch.train.data import (
    Batches,
    DataError,
    batch_offsets,
    prepare,
    required_tokens,
    split_point,
    token_byte_lengths,
    validation_target_bytes,
    validation_windows,
)

from mind4_core.engine import load_tokenizer

WORDS = (
    "the model reads text and predicts the next token from the tokens before it; a list "
    "of values returns None when the function raises an error in Python with a dict"
).split()


def prose(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    sentences, words = [], []
    for _ in range(n_words):
        words.append(rng.choice(WORDS))
        if len(words) >= rng.randint(6, 14):
            sentences.append(" ".join(words).capitalize() + ".")
            words = []
    return " ".join(sentences) + "\n"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("mind4-8k")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(prose(1, 800), encoding="utf-8")
    (folder / "sub" / "b.md").write_text(prose(2, 600) + "héllo wörld ✓\n", encoding="utf-8")
    (folder / "skip.bin").write_bytes(b"\x00\xff" * 100)  # not a text extension
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "c.txt").write_text("hidden", encoding="utf-8")
    return folder


def make(tok, sources, tmp_path, context_length=16, fraction=0.1, **kw):
    return prepare(
        tok,
        [str(s) for s in sources],
        [".txt", ".md"],
        tmp_path / "cache",
        context_length=context_length,
        validation_fraction=fraction,
        **kw,
    )


def test_folder_is_tokenised_in_sorted_order_with_separators(tok, corpus, tmp_path):
    data = make(tok, [corpus], tmp_path)
    a = tok.encode((corpus / "a.txt").read_text(encoding="utf-8"))
    b = tok.encode((corpus / "sub" / "b.md").read_text(encoding="utf-8"))
    eot = tok.special_tokens["<|endoftext|>"]
    assert data.tokens.dtype == np.uint16
    assert isinstance(data.tokens, np.memmap)
    np.testing.assert_array_equal(np.asarray(data.tokens), np.array(a + [eot] + b))
    assert data.meta["documents"] == 2
    assert data.path.stat().st_size == 2 * len(data)


def test_split_is_the_tail(tok, corpus, tmp_path):
    data = make(tok, [corpus], tmp_path, fraction=0.1)
    n = len(data)
    assert data.split == split_point(n, 0.1, 16)
    assert len(data.validation) == n - data.split >= 17
    assert abs(len(data.validation) - 0.1 * n) <= 1
    np.testing.assert_array_equal(
        np.concatenate([data.train, data.validation]), np.asarray(data.tokens)
    )


def test_cache_is_reused_and_invalidated(tok, corpus, tmp_path, monkeypatch):
    first = make(tok, [corpus], tmp_path)
    calls = []
    real = data_mod._tokenise
    monkeypatch.setattr(data_mod, "_tokenise", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = make(tok, [corpus], tmp_path)
    assert calls == [] and again.path == first.path
    (corpus / "a.txt").write_text(prose(3, 800), encoding="utf-8")
    changed = make(tok, [corpus], tmp_path)
    assert calls == [1] and changed.path != first.path


def test_truncated_cache_file_is_rebuilt(tok, corpus, tmp_path):
    first = make(tok, [corpus], tmp_path)
    expected = np.array(first.tokens)
    with open(first.path, "r+b") as f:
        f.truncate(10)
    again = make(tok, [corpus], tmp_path)
    np.testing.assert_array_equal(np.asarray(again.tokens), expected)


def test_too_small_corpus_says_how_many_tokens_are_needed(tok, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("Just a few words of text.", encoding="utf-8")
    need = required_tokens(64, 0.05)
    with pytest.raises(DataError) as err:
        make(tok, [small], tmp_path, context_length=64, fraction=0.05)
    message = str(err.value)
    assert f"at least {need}" in message
    assert f"has {len(tok.encode('Just a few words of text.'))} tokens" in message
    assert "training.context_length" in message


def test_empty_file_is_too_small(tok, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="has 0 tokens"):
        make(tok, [empty], tmp_path)


@pytest.mark.parametrize("case", ["missing", "empty_folder", "binary"])
def test_bad_sources_are_named(tok, tmp_path, case):
    if case == "missing":
        source, match = tmp_path / "nope.txt", "does not exist"
    elif case == "empty_folder":
        source = tmp_path / "empty"
        source.mkdir()
        match = "no files ending in"
    else:
        source = tmp_path / "latin1.txt"
        source.write_bytes("caf\xe9".encode("latin-1"))
        match = "not UTF-8"
    with pytest.raises(DataError, match=match) as err:
        make(tok, [source], tmp_path)
    assert str(source) in str(err.value) or source.name in str(err.value)


def test_required_tokens_leave_one_window_in_each_split():
    for T, f in [(16, 0.1), (256, 0.05), (8, 0.5)]:
        n = required_tokens(T, f)
        split = split_point(n, f, T)
        assert split >= T + 1 and n - split >= T + 1


# ----------------------------------------------------------------------------- batches


def test_batch_offsets_depend_only_on_seed_and_step():
    a = batch_offsets(0, 5, 1000, 17, 8)
    assert np.array_equal(a, batch_offsets(0, 5, 1000, 17, 8))
    assert not np.array_equal(a, batch_offsets(0, 6, 1000, 17, 8))
    assert not np.array_equal(a, batch_offsets(1, 5, 1000, 17, 8))
    many = batch_offsets(3, 0, 100, 17, 10_000)
    assert many.min() == 0 and many.max() == 100 - 17  # every start, never past the split


def test_windows_are_inputs_and_shifted_targets(tok, corpus, tmp_path):
    data = make(tok, [corpus], tmp_path)
    b = Batches(data, seed=0, batch_size=4, context_length=16).micro_batch(3, 0)
    assert b.shape == (4, 17) and b.dtype == np.int64
    offsets = batch_offsets(0, 3, data.split, 17, 4)
    for row, o in zip(b, offsets):
        np.testing.assert_array_equal(row, np.asarray(data.tokens[o : o + 17]))
        assert o + 17 <= data.split  # training windows never read validation tokens


def test_ranks_split_the_global_batch_like_accumulation(tok, corpus, tmp_path):
    data = make(tok, [corpus], tmp_path)
    single = Batches(data, seed=1, batch_size=2, context_length=16, grad_accumulation=2)
    ranks = [
        Batches(data, seed=1, batch_size=2, context_length=16, rank=r, world_size=2)
        for r in range(2)
    ]
    for step in range(3):
        for r in range(2):
            np.testing.assert_array_equal(
                single.micro_batch(step, r), ranks[r].micro_batch(step, 0)
            )
    assert single.global_batch == ranks[0].global_batch == 4


# ----------------------------------------------------------------------------- validation


@settings(max_examples=60, deadline=None)
@given(
    n_val=st.integers(2, 400),
    T=st.integers(1, 40),
    cap=st.one_of(st.none(), st.integers(1, 500)),
)
def test_validation_windows_predict_each_token_once(n_val, T, cap):
    spans = validation_windows(n_val, T, cap)
    targets = []
    for start, length in spans:
        assert 2 <= length <= T + 1 and start + length <= n_val
        targets.extend(range(start + 1, start + length))
    limit = n_val - 1 if cap is None else min(n_val - 1, cap)
    assert targets == list(range(1, limit + 1))


def test_byte_lengths_count_the_decoded_bytes(tok, corpus, tmp_path):
    data = make(tok, [corpus], tmp_path)
    lengths = token_byte_lengths(tok)
    val = np.asarray(data.validation, dtype=np.int64)
    scored = validation_target_bytes(data, tok)
    assert lengths[val[1:]].sum() == len(scored)
    assert scored == tok.decode_bytes([int(t) for t in val[1:]])
    assert lengths[tok.special_tokens["<|endoftext|>"]] == 0
    assert lengths[tok.encode("hello")[0]] == len(tok.decode_bytes(tok.encode("hello")[:1]))


def test_default_corpus_is_used_without_sources(tok, tmp_path, monkeypatch):
    import mind4_tokenizer.corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "default_corpus_text", lambda: prose(9, 3000))
    data = make(tok, [], tmp_path, context_length=32, fraction=0.05)
    assert data.meta["sources"] == [data_mod.DEFAULT_CORPUS]
    np.testing.assert_array_equal(np.asarray(data.tokens), tok.encode(prose(9, 3000)))
