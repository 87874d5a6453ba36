"""o200k_harmony with a synthetic o200k_base ranks file (the real one is not shipped)."""

from __future__ import annotations

import base64
import itertools

import pytest
from helpers import b64, byte_lines, write_ranks_lines
from mind4_tokenizer import get_encoding
from mind4_tokenizer.registry import (
    O200K_BASE_SHA256,
    O200K_BASE_URL,
    _load_o200k,
    o200k_base_cache_path,
    o200k_harmony,
)
from mind4_tokenizer.specials import O200K_BASE_N_RANKS, O200K_HARMONY_IDS

from mind4_core.errors import TokenizerError


def synthetic_o200k_base(path):
    """199998 ranks in tiktoken's format: the 256 bytes, then byte pairs, then triples."""
    tokens = itertools.chain(
        (bytes([b]) for b in range(256)),
        (bytes([a, b]) for a in range(256) for b in range(256)),
        (bytes([a, b, c]) for a in range(97, 123) for b in range(256) for c in range(256)),
    )
    lines = (
        base64.b64encode(t) + b" " + str(rank).encode()
        for rank, t in zip(range(O200K_BASE_N_RANKS), tokens, strict=False)
    )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def ranks_file(tmp_path_factory):
    return synthetic_o200k_base(tmp_path_factory.mktemp("o200k") / "o200k_base.tiktoken")


@pytest.fixture(autouse=True)
def _fresh_cache():
    _load_o200k.cache_clear()
    yield
    _load_o200k.cache_clear()


def test_explicit_path(ranks_file):
    tok = get_encoding(str(ranks_file))
    assert tok.name == "o200k_harmony"
    assert tok.n_vocab == 201088
    for text, token in O200K_HARMONY_IDS.items():
        assert tok.encode_special(text) == token
        assert tok.decode([token]) == text
    # the reserved ids are filled: every id decodes
    specials = tok.special_tokens
    assert specials["<|reserved_200000|>"] == 200000
    assert specials["<|reserved_201087|>"] == 201087
    assert sorted(specials.values()) == list(range(199998, 201088))
    s = "hello <|start|>assistant<|message|> wörld"
    ids = tok.encode(s)
    assert tok.decode(ids) == s and max(ids) < 199998
    assert o200k_harmony(ranks_file).n_vocab == 201088


def test_found_in_tiktoken_cache(ranks_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    cached = o200k_base_cache_path()
    assert cached.parent == tmp_path
    assert cached.name == "fb374d419588a4632f3f557e76b4b70aebbca790"  # sha1 of the URL
    cached.write_bytes(ranks_file.read_bytes())
    tok = get_encoding("o200k_harmony")
    assert tok.source == str(cached.resolve())
    assert tok.encode_special("<|call|>") == 200012


def test_missing_says_what_to_provide(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(TokenizerError) as info:
        get_encoding("o200k_harmony")
    message = str(info.value)
    assert O200K_BASE_URL in message and O200K_BASE_SHA256 in message
    assert str(o200k_base_cache_path()) in message
    assert "o200k_base.tiktoken" in message


def test_wrong_size_bare_ranks_file(tmp_path):
    path = write_ranks_lines(tmp_path / "small.tiktoken", [*byte_lines(), f"{b64(b'ab')} 256"])
    with pytest.raises(TokenizerError, match="holds 257 ranks, but o200k_base has 199998"):
        get_encoding(path)
    with pytest.raises(TokenizerError, match="ranks file not found"):
        get_encoding(tmp_path / "missing.tiktoken")
