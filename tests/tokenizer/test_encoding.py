"""Encodings: round trip, special-token safety, ranks-file validation."""

from __future__ import annotations

import json

import pytest
import tiktoken
import tiktoken.load
from helpers import b64, byte_lines, write_ranks_lines
from hypothesis import given, settings
from hypothesis import strategies as st
from mind4_tokenizer import get_encoding, read_ranks, save_encoding
from mind4_tokenizer.encoding import Tokenizer, load_encoding_spec, write_ranks
from mind4_tokenizer.specials import HARMONY_SPECIALS

from mind4_core.errors import Mind4Error, TokenizerError
from mind4_core.protocols import Tokenizer as TokenizerProtocol


@pytest.fixture(scope="module")
def tok():
    return get_encoding("mind4-8k")


# --------------------------------------------------------------------------- the shipped encoding


def test_mind4_8k_shape(tok):
    assert isinstance(tok, TokenizerProtocol)
    assert tok.name == "mind4-8k"
    assert tok.n_vocab == 8192
    assert tok.n_ranks == 8192 - len(HARMONY_SPECIALS)
    # harmony specials follow the ranks, in the harmony order
    assert [tok.special_tokens[t] for t in HARMONY_SPECIALS] == list(range(tok.n_ranks, 8192))
    for i, text in enumerate(HARMONY_SPECIALS):
        assert tok.encode_special(text) == tok.n_ranks + i
        assert tok.token_bytes(tok.n_ranks + i) == text.encode()
        assert tok.is_special(tok.n_ranks + i)


def test_mind4_8k_compresses_english(tok):
    text = (
        "Return the value of the named attribute of object. If the string is the name of "
        "one of the object's attributes, the result is the value of that attribute."
    )
    ids = tok.encode(text)
    assert len(text.encode()) / len(ids) > 4.0  # learned merges, not bytes


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_arbitrary_unicode(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.decode_bytes(ids) == s.encode("utf-8")
    assert all(0 <= i < tok.n_ranks for i in ids)


@pytest.mark.parametrize(
    "s",
    [
        "",
        "\x00\x01\x7f",
        "a\r\nb\rc\n\n\t  x",
        "👩‍👩‍👧‍👦 family, e\u0301 combining, 한국어, العربية, 中文",
        "\U0010ffff\ufeff\u200b",
        " " * 1000,
        "<|endoftext|>",
    ],
)
def test_round_trip_edge_cases(tok, s):
    assert tok.decode(tok.encode(s)) == s


def test_lone_surrogates_become_replacement_character(tok):
    # documented policy (as tiktoken): not a Unicode scalar value -> U+FFFD
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(HARMONY_SPECIALS + ("<|reserved_200020|>",)), st.text(max_size=8)
        ),
        max_size=12,
    )
)
def test_special_token_text_is_never_a_special_token(tok, parts):
    text = "".join(parts)
    ids = tok.encode(text)
    assert not any(tok.is_special(i) for i in ids)
    assert all(i < tok.n_ranks for i in ids)
    assert tok.decode(ids) == text


def test_encode_special_unknown(tok):
    with pytest.raises(TokenizerError, match="not a special token.*<\\|start\\|>"):
        tok.encode_special("<|nope|>")


def test_decode_out_of_range_ids(tok):
    with pytest.raises(TokenizerError, match=r"\[8192\].*0\.\.8191"):
        tok.decode([1, 8192])
    with pytest.raises(Mind4Error):
        tok.decode([-1])


def test_encode_batch_matches_encode(tok):
    texts = ["hello world", "", "<|start|> x", "ünïcode"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_tiktoken_loads_shipped_ranks(tok, no_tiktoken_cache):
    from mind4_tokenizer.registry import ENCODINGS_DIR

    path = ENCODINGS_DIR / "mind4-8k" / "ranks.tiktoken"
    ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    spec = json.loads((ENCODINGS_DIR / "mind4-8k" / "encoding.json").read_text())
    plain = tiktoken.Encoding(
        "check",
        pat_str=spec["pat_str"],
        mergeable_ranks=ranks,
        special_tokens=spec["special_tokens"],
    )
    text = "def encode(self, text):\n    return [ord(c) for c in text]  # ok"
    assert plain.encode_ordinary(text) == tok.encode(text)
    assert plain.n_vocab == tok.n_vocab == spec["n_vocab"]


# --------------------------------------------------------------------------- ranks files


def test_read_ranks_valid(tmp_path):
    path = write_ranks_lines(tmp_path / "r.tiktoken", [*byte_lines(), f"{b64(b'ab')} 256", ""])
    ranks = read_ranks(path)
    assert len(ranks) == 257 and ranks[b"ab"] == 256 and ranks[b"\x00"] == 0


def test_write_then_read_ranks(tmp_path, no_tiktoken_cache):
    ranks = {bytes([b]): b for b in range(256)} | {b"he": 256, b"hel": 257}
    write_ranks(ranks, tmp_path / "r.tiktoken")
    assert read_ranks(tmp_path / "r.tiktoken") == ranks
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "r.tiktoken")) == ranks


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["notbase64!! 256"], "line 257.*not base64"),
        ([f"{b64(b'ab')}"], "line 257.*expected '<base64 token> <rank>'"),
        ([f"{b64(b'ab')} 256 7"], "line 257.*expected"),
        ([f"{b64(b'ab')} x"], "line 257.*rank 'x' is not an integer"),
        ([f"{b64(b'ab')} -3"], "negative rank"),
        ([f"{b64(b'a')} 256"], "duplicate token b'a'.*line 257.*rank 97"),
        ([f"{b64(b'ab')} 255"], "duplicate rank 255.*line 257.*line 256"),
        ([f"{b64(b'ab')} 300"], "not 0..256 without gaps"),
    ],
)
def test_read_ranks_errors(tmp_path, extra, message):
    path = write_ranks_lines(tmp_path / "bad.tiktoken", [*byte_lines(), *extra])
    with pytest.raises(TokenizerError, match=message) as info:
        read_ranks(path)
    assert "bad.tiktoken" in str(info.value)


def test_read_ranks_missing_byte(tmp_path):
    lines = byte_lines()
    lines[65] = f"{b64(b'zz')} 65"  # 'A' missing
    with pytest.raises(TokenizerError, match="lack 1 single-byte tokens.*b'A'"):
        read_ranks(write_ranks_lines(tmp_path / "r.tiktoken", lines))


def test_read_ranks_missing_or_empty(tmp_path):
    with pytest.raises(TokenizerError, match="ranks file not found: .*nope.tiktoken"):
        read_ranks(tmp_path / "nope.tiktoken")
    (tmp_path / "empty.tiktoken").write_text("\n")
    with pytest.raises(TokenizerError, match="holds no tokens"):
        read_ranks(tmp_path / "empty.tiktoken")


def _byte_ranks():
    return {bytes([b]): b for b in range(256)}


def test_specials_colliding_with_ranks():
    with pytest.raises(TokenizerError, match="'<\\|start\\|>'.*id 200.*collides.*>= 256"):
        Tokenizer(
            "x",
            pat_str=r"\S+|\s+",
            mergeable_ranks=_byte_ranks(),
            special_tokens={"<|start|>": 200},
        )
    with pytest.raises(TokenizerError, match="share id 300"):
        Tokenizer(
            "x",
            pat_str=r"\S+|\s+",
            mergeable_ranks=_byte_ranks(),
            special_tokens={"<|a|>": 300, "<|b|>": 300},
        )


def test_n_vocab_must_match_ids():
    with pytest.raises(
        TokenizerError, match="declares n_vocab 500 but its highest token id is 256"
    ):
        Tokenizer(
            "x",
            pat_str=r"\S+|\s+",
            mergeable_ranks=_byte_ranks(),
            special_tokens={"<|a|>": 256},
            n_vocab=500,
        )


def test_bad_split_pattern_is_a_tokenizer_error():
    with pytest.raises(TokenizerError, match="tiktoken cannot build"):
        Tokenizer("x", pat_str="(", mergeable_ranks=_byte_ranks(), special_tokens={})


# --------------------------------------------------------------------------- encoding specs


def _save_small(tmp_path, name="small"):
    ranks = _byte_ranks() | {b"th": 256, b"the": 257}
    specials = {t: 258 + i for i, t in enumerate(HARMONY_SPECIALS)}
    return save_encoding(
        tmp_path / name, name=name, ranks=ranks, pat_str=r"\S+|\s+", special_tokens=specials
    )


def test_encoding_directory_round_trip(tmp_path):
    spec = _save_small(tmp_path)
    for where in (spec, spec.parent, str(spec.parent)):
        tok = get_encoding(where) if not isinstance(where, str) else get_encoding(where)
        assert tok.name == "small" and tok.n_vocab == 258 + len(HARMONY_SPECIALS)
        assert tok.encode("the") == [257]


def test_encoding_spec_errors(tmp_path):
    spec = _save_small(tmp_path)
    ranks = spec.parent / "ranks.tiktoken"
    ranks.write_text(ranks.read_text() + f"{b64(b'xy')} 258\n")
    with pytest.raises(TokenizerError, match="does not match .*encoding.json.*sha256"):
        load_encoding_spec(spec.parent)

    spec2 = _save_small(tmp_path, "two")
    data = json.loads(spec2.read_text())
    data["format"] = "something-else"
    spec2.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match="not a Mind 4 encoding spec"):
        load_encoding_spec(spec2)
    spec2.write_text("{ not json")
    with pytest.raises(TokenizerError, match="cannot read encoding spec"):
        load_encoding_spec(spec2)
    with pytest.raises(TokenizerError, match="no encoding spec at"):
        load_encoding_spec(tmp_path / "nowhere")

    spec3 = _save_small(tmp_path, "three")
    data = json.loads(spec3.read_text())
    data["special_tokens"]["<|start|>"] = 5
    spec3.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match="collides with the mergeable ranks"):
        load_encoding_spec(spec3)


def test_unknown_encoding_name():
    with pytest.raises(TokenizerError, match="unknown encoding 'nope-1k'.*mind4-8k"):
        get_encoding("nope-1k")
