"""The BPE trainer: exact merges, agreement with a naive reference, determinism, errors."""

from __future__ import annotations

from collections import Counter

import pytest
import regex
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st
from mind4_tokenizer import get_encoding
from mind4_tokenizer.encoding import O200K_PAT_STR
from mind4_tokenizer.specials import HARMONY_SPECIALS
from mind4_tokenizer.trainer import read_text_file, train_bpe, train_files

from mind4_core.errors import TokenizerError

N_SPECIAL = len(HARMONY_SPECIALS)
WHOLE_LINES = r"[^\n]+|\n"  # a pattern that keeps each line whole, for hand-checked examples


def naive_bpe(texts, n_merges, pat_str, min_frequency=2):
    """Reference: recount every pair from scratch before each merge (slow, obvious)."""
    words = Counter(t for text in texts for t in regex.findall(pat_str, text))
    seqs = {w: list(w.encode()) for w in words}
    vocab = [bytes([b]) for b in range(256)]
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, seq in seqs.items():
            for p in zip(seq, seq[1:], strict=False):
                pairs[p] += words[w]
        if not pairs:
            break
        (a, b), count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < min_frequency:
            break
        merged = vocab[a] + vocab[b]
        new = vocab.index(merged) if merged in vocab else len(vocab)
        if new == len(vocab):
            vocab.append(merged)
        merges.append((a, b, new))
        for w, seq in seqs.items():
            out, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[w] = out
        if len(vocab) >= 256 + n_merges:
            break
    return vocab, merges


def test_hand_checked_merges():
    # "aaabdaaabac": (a,a) occurs 4 times -> "aa"; then (aa,a) and (a,b) tie at 2 and the
    # pair of smaller ids (a,b) wins; then (aa,ab) -> "aaab"; nothing else occurs twice.
    result = train_bpe(["aaabdaaabac"], 256 + N_SPECIAL + 10, pat_str=WHOLE_LINES)
    learned = sorted(result.ranks.items(), key=lambda kv: kv[1])[256:]
    assert learned == [(b"aa", 256), (b"ab", 257), (b"aaab", 258)]
    assert [(m.left, m.right, m.token, m.count) for m in result.merges] == [
        (97, 97, 256, 4),
        (97, 98, 257, 2),
        (256, 257, 258, 2),
    ]
    assert result.special_tokens == {t: 259 + i for i, t in enumerate(HARMONY_SPECIALS)}
    assert result.n_vocab == 259 + N_SPECIAL


words = st.text(alphabet="abcde ", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(words, min_size=1, max_size=30), st.integers(1, 40))
def test_incremental_counts_match_naive_reference(texts, n_merges):
    result = train_bpe(texts, 256 + N_SPECIAL + n_merges, pat_str=O200K_PAT_STR)
    vocab, merges = naive_bpe(texts, n_merges, O200K_PAT_STR)
    assert [(m.left, m.right, m.token) for m in result.merges][: len(merges)] == merges[
        : len(result.merges)
    ]
    assert sorted(result.ranks, key=result.ranks.get) == vocab


def test_same_input_same_ranks_in_any_order():
    texts = ["the cat sat on the mat\n", "a theme of thermal mathematics\n", "then that\n"] * 3
    first = train_bpe(texts, 300 + N_SPECIAL)
    again = train_bpe(list(texts), 300 + N_SPECIAL)
    reordered = train_bpe(texts[::-1], 300 + N_SPECIAL)
    assert first.ranks == again.ranks == reordered.ranks
    assert first.merges == again.merges == reordered.merges


def test_tiktoken_loads_trained_ranks(tmp_path, no_tiktoken_cache):
    corpus = tmp_path / "corpus.txt"
    from pydoc_data.topics import topics

    corpus.write_text("\n".join(topics[k] for k in ("if", "while", "for", "try")), "utf-8")
    result, spec = train_files([corpus], 320, tmp_path / "enc", name="tiny-320")
    assert result.n_vocab == 320 and len(result.ranks) == 320 - N_SPECIAL
    ranks = tiktoken.load.load_tiktoken_bpe(str(spec.parent / "ranks.tiktoken"))
    assert ranks == result.ranks
    tok = get_encoding(spec.parent)
    assert tok.name == "tiny-320" and tok.n_vocab == 320
    plain = tiktoken.Encoding("p", pat_str=O200K_PAT_STR, mergeable_ranks=ranks, special_tokens={})
    text = corpus.read_text()
    assert tok.encode(text) == plain.encode_ordinary(text)
    assert len(tok.encode(text)) < 0.75 * len(text.encode())  # merges learned from it compress it
    assert tok.decode(tok.encode(text)) == text


def test_stops_early_when_pairs_run_out():
    result = train_bpe(["ab ab"], 1000)
    assert result.n_vocab < 1000
    assert [m.count >= 2 for m in result.merges] == [True] * len(result.merges)


def test_vocab_too_small():
    with pytest.raises(TokenizerError, match=f"at least {256 + N_SPECIAL}"):
        train_bpe(["hello"], 256 + N_SPECIAL - 1)


def test_invalid_utf8_is_reported_with_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\n" + b"caf\xe9 au lait")
    with pytest.raises(TokenizerError, match=r"bad\.txt: invalid UTF-8 at byte offset 15"):
        read_text_file(bad)
    with pytest.raises(TokenizerError, match="invalid UTF-8 at byte offset 15"):
        train_files([bad], 300, tmp_path / "out")
    assert read_text_file(bad, "replace").endswith("caf\ufffd au lait")
    assert read_text_file(bad, "ignore").endswith("caf au lait")
    with pytest.raises(TokenizerError, match="cannot read training file"):
        read_text_file(tmp_path / "absent.txt")
