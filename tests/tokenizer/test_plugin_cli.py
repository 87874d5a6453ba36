"""The plugin hook, third-party encodings, the `tokenizer` CLI group and the corpus."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from mind4_tokenizer import get_encoding, save_encoding
from mind4_tokenizer.cli import tokenizer as tokenizer_cli
from mind4_tokenizer.plugin import mind4_tokenizers, tokenizer_records
from mind4_tokenizer.specials import HARMONY_SPECIALS

from mind4_core.errors import TokenizerError
from mind4_core.hookspecs import hookimpl
from mind4_core.records import TokenizerRecord


def test_records_are_lazy_and_create_encodings():
    records = {r.name: r for r in mind4_tokenizers()}
    assert set(records) >= {"mind4-8k", "o200k_harmony"}
    assert all(isinstance(r, TokenizerRecord) for r in records.values())
    assert records["o200k_harmony"].factory == "mind4_tokenizer.registry:o200k_harmony"
    assert records["mind4-8k"].create().n_vocab == 8192
    assert [r.name for r in tokenizer_records()] == [r.name for r in mind4_tokenizers()]


def test_plugin_module_does_not_import_heavy_things():
    import subprocess
    import sys

    code = (
        "import sys, mind4_tokenizer.plugin as p; p.mind4_tokenizers(); "
        "print(any(m in sys.modules for m in ('torch', 'triton', 'tiktoken', 'regex')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0 and "No module named 'mind4_tokenizer'" in out.stderr:
        pytest.skip("mind4_tokenizer is not installed (importable only through conftest)")
    assert out.stdout.strip() == "False", out.stderr


def test_third_party_encoding_by_name(tmp_path):
    plugins = pytest.importorskip("mind4_core.plugins")
    ranks = {bytes([b]): b for b in range(256)} | {b"zz": 256}
    specials = {t: 257 + i for i, t in enumerate(HARMONY_SPECIALS)}
    spec = save_encoding(
        tmp_path / "zz", name="zz-266", ranks=ranks, pat_str=r"\S+|\s+", special_tokens=specials
    )

    class ThirdParty:
        @hookimpl
        def mind4_tokenizers(self):
            return [TokenizerRecord(name="zz-266", factory=lambda: get_encoding(spec.parent))]

    with pytest.raises(TokenizerError, match="unknown encoding 'zz-266'"):
        get_encoding("zz-266")
    with plugins.temporary_plugin(ThirdParty(), name="third-party-zz"):
        assert get_encoding("zz-266").encode("zzz") == [256, ord("z")]
    with pytest.raises(TokenizerError, match="unknown encoding 'zz-266'"):
        get_encoding("zz-266")


# --------------------------------------------------------------------------- CLI


@pytest.fixture()
def runner():
    return CliRunner()


def test_cli_encode_decode(runner):
    result = runner.invoke(tokenizer_cli, ["encode", "--json", "hi <|start|>"])
    assert result.exit_code == 0, result.output
    ids = json.loads(result.output)
    tok = get_encoding("mind4-8k")
    assert ids == tok.encode("hi <|start|>") and not any(tok.is_special(i) for i in ids)
    back = runner.invoke(tokenizer_cli, ["decode", *map(str, ids)])
    assert back.exit_code == 0 and back.output == "hi <|start|>\n"
    piped = runner.invoke(tokenizer_cli, ["decode"], input=json.dumps(ids))
    assert piped.output == "hi <|start|>\n"
    bad = runner.invoke(tokenizer_cli, ["decode", "99999"])
    assert bad.exit_code != 0 and "outside 0..8191" in bad.output
    bad = runner.invoke(tokenizer_cli, ["decode", "x1"])
    assert bad.exit_code != 0 and "must be integers" in bad.output


def test_cli_inspect(runner):
    result = runner.invoke(tokenizer_cli, ["inspect", "--json", "héllo"])
    rows = json.loads(result.output)
    assert b"".join(bytes(r["bytes"]) for r in rows) == "héllo".encode()
    plain = runner.invoke(tokenizer_cli, ["inspect", "the value"])
    assert plain.exit_code == 0 and "tokens" in plain.output and "mind4-8k" in plain.output


def test_cli_train_and_use(runner, tmp_path):
    from pydoc_data.topics import topics

    corpus = tmp_path / "c.txt"
    corpus.write_text(topics["if"] + topics["while"], encoding="utf-8")
    out = tmp_path / "mini"
    result = runner.invoke(tokenizer_cli, ["train", str(corpus), "-v", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "trained 300 tokens" in result.output
    spec = json.loads((out / "encoding.json").read_text())
    assert spec["name"] == "mini" and spec["n_vocab"] == 300
    enc = runner.invoke(tokenizer_cli, ["encode", "-e", str(out), "--json", "if x:"])
    assert enc.exit_code == 0 and max(json.loads(enc.output)) < 300


def test_cli_train_errors(runner, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    result = runner.invoke(
        tokenizer_cli, ["train", str(bad), "-v", "300", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "invalid UTF-8 at byte offset 2" in result.output
    small = runner.invoke(
        tokenizer_cli,
        ["train", str(bad), "-v", "100", "--out", str(tmp_path / "o"), "--errors", "replace"],
    )
    assert small.exit_code != 0 and "at least 265" in small.output
    none = runner.invoke(tokenizer_cli, ["train", "-v", "300", "--out", str(tmp_path / "o")])
    assert none.exit_code != 0 and "--default-corpus" in none.output
    missing = runner.invoke(tokenizer_cli, ["encode", "-e", "nope-1k", "x"])
    assert missing.exit_code != 0 and "unknown encoding" in missing.output


def test_cli_list(runner):
    result = runner.invoke(tokenizer_cli, ["list", "--json"])
    names = {row["name"] for row in json.loads(result.output)}
    assert {"mind4-8k", "o200k_harmony"} <= names


# --------------------------------------------------------------------------- corpus


def test_default_corpus_is_deterministic():
    from mind4_tokenizer import corpus

    text = corpus.default_corpus_text()  # built once per process (a few seconds)
    assert len(text.encode()) > 1_000_000
    assert 'The "if" statement' in text  # pydoc topics
    assert "Return the number of" in text  # stdlib docstrings
    files = corpus.stdlib_source_files()
    assert files == sorted(files, key=lambda p: p.relative_to(corpus.stdlib_dir()).as_posix())
    assert not any(part in corpus.SKIP_DIRS for f in files for part in f.parts)
    # the same files give the same docstrings, in the same order, on every run
    sample = files[:: max(1, len(files) // 40)]

    def digest():
        h = hashlib.sha256()
        for f in sample:
            for doc in corpus.docstrings(f.read_bytes()):
                h.update(doc.encode())
        return h.hexdigest()

    assert digest() == digest()
    assert list(
        corpus.docstrings(
            b'"""M."""\nclass A:\n    """C."""\n    def f(self):\n        """F."""\nif X:\n    def g():\n        """G."""\n'
        )
    ) == ["M.", "C.", "F.", "G."]
