"""``mind4 convert`` and ``mind4 inspect-checkpoint``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from mind4_specs import oracle

from mind4_core import convert as convert_module
from mind4_core.checkpoint import INDEX_FILE, open_checkpoint
from mind4_core.cli import cli, main
from mind4_core.convert import convert_checkpoint, decode_bytes_per_token
from mind4_core.errors import CheckpointError
from mind4_core.presets import parameter_count

from .conftest import SMALL, assert_same_tensors


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("experts", ["float32", "bf16", "mxfp4"])
def test_round_trip_through_hf_is_bit_exact(make_canonical, tmp_path, experts):
    src = make_canonical(experts=experts, dtype="bfloat16")
    report = json.loads(_run("convert", str(src), str(tmp_path / "hf"), "--to", "hf", "--json"))
    assert report["to"] == "hf" and report["source_format"] == "canonical"
    assert report["quantisation"] == []
    _run("convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "canonical", "--json")
    back = open_checkpoint(tmp_path / "back")
    assert back.format == "canonical" and back.config == SMALL
    assert_same_tensors(open_checkpoint(src), back)
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.loads(
        (src / "config.json").read_text()
    )


def test_small_pieces_give_the_same_files(make_canonical, tmp_path, monkeypatch):
    """Streaming in many small pieces (rows split inside matrices) changes nothing."""
    src = make_canonical(experts="bf16")
    convert_checkpoint(src, tmp_path / "whole", to="hf", experts="mxfp4")
    monkeypatch.setattr(convert_module, "PIECE_ELEMENTS", 48)
    convert_checkpoint(src, tmp_path / "pieces", to="hf", experts="mxfp4")
    assert (tmp_path / "whole" / "model.safetensors").read_bytes() == (
        tmp_path / "pieces" / "model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("experts", ["float32", "bf16"])
def test_quantising_to_mxfp4_reports_its_error(make_canonical, tmp_path, experts):
    src = make_canonical(experts=experts)
    report = convert_checkpoint(src, tmp_path / "q", to="canonical", experts="mxfp4")
    dense, q = open_checkpoint(src), open_checkpoint(tmp_path / "q")
    rows = {r["tensor"]: r for r in report.quantisation}
    assert len(rows) == 2 * SMALL.num_hidden_layers
    for name, row in rows.items():
        w = dense.float32(name).astype(np.float64)
        blocks, scales = oracle.mxfp4_encode(w)  # the reference quantiser, float64
        np.testing.assert_array_equal(q.mxfp4(name)[0], blocks)
        np.testing.assert_array_equal(q.mxfp4(name)[1], scales)
        deq = oracle.mxfp4_decode(blocks, scales)
        assert row["relative_error"] == pytest.approx(oracle.relative_error(deq, w), rel=1e-6)
        assert row["max_abs_error"] == pytest.approx(np.abs(deq - w).max(), rel=1e-6)
        assert 0.01 < row["relative_error"] < 0.3  # FP4 on Gaussian weights: ~12%
    # everything but the experts is copied bit for bit
    for name in dense.names():
        if not q.is_mxfp4(name):
            np.testing.assert_array_equal(dense.tensor(name), q.tensor(name))


def test_cli_prints_the_quantisation_error(make_canonical, tmp_path):
    src = make_canonical(experts="bf16")
    out = _run("convert", str(src), str(tmp_path / "q"), "--to", "hf", "--experts", "mxfp4")
    assert "MXFP4 quantisation error" in out and "block.2.mlp.mlp2_weight" in out
    assert "worst relative error: 0.1" in out


def test_dequantising_mxfp4_to_bf16_is_exact(make_canonical, tmp_path):
    src = make_canonical(experts="mxfp4")
    convert_checkpoint(src, tmp_path / "hf-bf16", to="hf", experts="bf16")
    q, d = open_checkpoint(src), open_checkpoint(tmp_path / "hf-bf16")
    for name in q.names():
        if q.is_mxfp4(name):
            assert d.dtype(name) == "BF16"
            np.testing.assert_array_equal(d.float32(name), q.float32(name))


def test_sharded_output_and_copied_aux_files(make_canonical, tmp_path):
    src = make_canonical()
    (src / "tokenizer.json").write_text("{}")
    out = json.loads(
        _run(
            "convert",
            str(src),
            str(tmp_path / "hf"),
            "--to",
            "hf",
            "--max-shard-size",
            "50KB",
            "--json",
        )
    )
    assert len(out["files"]) > 1 and (tmp_path / "hf" / INDEX_FILE).is_file()
    assert (tmp_path / "hf" / "tokenizer.json").read_text() == "{}"
    assert_same_tensors(open_checkpoint(src), open_checkpoint(tmp_path / "hf"))


def test_destination_rules(make_canonical, tmp_path):
    src = make_canonical()
    with pytest.raises(CheckpointError, match="is the source"):
        convert_checkpoint(src, src, to="hf")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty.*--overwrite"):
        convert_checkpoint(src, tmp_path / "busy", to="hf")
    convert_checkpoint(src, tmp_path / "busy", to="hf", overwrite=True)
    assert open_checkpoint(tmp_path / "busy").format == "hf"


def test_cli_error_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    rc = main(["convert", str(tmp_path / "src"), str(tmp_path / "d"), "--to", "hf"])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.startswith("error: no weight loader can read")
    assert "Traceback" not in captured.err and "converting" not in captured.err


def test_inspect_json(make_canonical, tmp_path):
    src = make_canonical(experts="mxfp4", dtype="bfloat16")
    convert_checkpoint(src, tmp_path / "hf", to="hf")
    info = json.loads(_run("inspect-checkpoint", str(tmp_path / "hf"), "--json"))
    assert info["format"] == "hf" and info["experts"] == "MXFP4"
    assert info["config"]["hidden_size"] == 64
    assert info["parameters"] == parameter_count(SMALL)
    assert info["active_parameters_per_token"] == parameter_count(SMALL, active=True)
    # by hand: bf16 dense weights, f32 norms, MXFP4 experts (17 bytes per 32 values)
    H, V, L, E, k, inter = 64, 96, 3, 4, 2, 64
    qkv, out = (4 + 2 * 2) * 16, 4 * 16
    attn = 2 * (qkv * H + qkv + 4 + H * out + H) + 4 * H
    router = 2 * (E * H + E) + 4 * H
    experts = (2 * inter * H + H * inter) * 17 // 32 + 2 * (2 * inter + H)  # one expert
    expected = 2 * H + L * (attn + router + k * experts) + 4 * H + 2 * V * H
    assert info["decode_bytes_per_token"] == expected
    assert decode_bytes_per_token(open_checkpoint(tmp_path / "hf")) == expected
    assert info["kv_cache_bytes_per_token"]["bfloat16"] == 2 * L * 2 * 16 * 2
    row = next(t for t in info["tensors"] if t["name"] == "block.0.attn.qkv.weight")
    assert row["shape"] == [128, 64] and row["dtype"] == "BF16"
    assert "{q,k,v}_proj" in row["stored_as"]


def test_inspect_table(make_canonical):
    src = make_canonical()
    out = _run("inspect-checkpoint", str(src))
    assert "format canonical" in out and "active per token" in out
    assert "block.2.mlp.mlp2_bias" in out or "block.2.mlp.mlp2_bi" in out
