import json
import struct

import numpy as np
import pytest

from mind4_core import mxfp4
from mind4_core.checkpoint import (
    bf16_bits_to_float32,
    expected_tensors,
    open_checkpoint,
    to_bf16_bits,
    write_checkpoint,
)
from mind4_core.errors import CheckpointError
from mind4_core.presets import PRESETS, init_checkpoint, parameter_count
from mind4_core.safetensors_io import SafetensorsFile, write_file
from tests.conftest import MICRO


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_bf16_round_trip_and_rounding():
    rng = np.random.default_rng()
    x = rng.standard_normal(10_000).astype(np.float32)
    y = bf16_bits_to_float32(to_bf16_bits(x))
    assert rel(y.astype(np.float64), x.astype(np.float64)) < 2**-8
    # exactly representable values survive unchanged
    exact = np.array([1.0, -2.5, 0.15625, 2.0**100, np.inf], dtype=np.float32)
    assert np.array_equal(bf16_bits_to_float32(to_bf16_bits(exact)), exact)


def test_mxfp4_encode_decode_against_float64():
    rng = np.random.default_rng()
    x = rng.standard_normal((3, 8, 64)).astype(np.float32) * rng.uniform(0.01, 10)
    blocks, scales = mxfp4.encode(x)
    assert blocks.shape == (3, 8, 2, 16) and scales.shape == (3, 8, 2)
    y = mxfp4.decode(blocks, scales)
    # FP4 keeps ~1.5 significant bits: relative error of the tensor stays well under 0.2
    assert rel(y.astype(np.float64), x.astype(np.float64)) < 0.2
    # values that are exactly representable decode exactly, and the nibble order is low=even
    grid = np.array([[0.5, -1.0, 6.0, -6.0] * 8], dtype=np.float32)
    b, s = mxfp4.encode(grid)
    assert np.array_equal(mxfp4.decode(b, s), grid)
    assert b[0, 0, 0] & 0x0F == 1 and b[0, 0, 0] >> 4 == 10  # 0.5 -> code 1, -1.0 -> code 10


def test_init_and_open_checkpoint(tmp_path):
    path = init_checkpoint(MICRO, tmp_path / "m", seed=3, experts="mxfp4")
    ckpt = open_checkpoint(path)
    assert ckpt.format == "canonical"
    assert ckpt.is_mxfp4("block.0.mlp.mlp1_weight")
    assert ckpt.dtype("embedding.weight") == "BF16"
    assert ckpt.dtype("norm.scale") == "F32"
    assert set(ckpt.names()) == {e.name for e in expected_tensors(MICRO)}
    w = ckpt.float32("block.1.mlp.mlp2_weight")
    assert w.shape == (4, 64, 64) and np.isfinite(w).all() and w.std() > 0
    # same seed, other storage: the dense tensors agree to bf16 precision
    other = open_checkpoint(init_checkpoint(MICRO, tmp_path / "f", seed=3, dtype="float32"))
    assert rel(ckpt.float32("embedding.weight"), other.float32("embedding.weight")) < 1e-2


def test_presets_have_the_documented_sizes():
    assert abs(parameter_count(PRESETS["small"]) - 64e6) < 2e6
    assert 1e6 < parameter_count(PRESETS["tiny"]) < 10e6
    assert abs(parameter_count(PRESETS["gpt-oss-20b"]) - 20.9e9) < 0.3e9
    assert abs(parameter_count(PRESETS["gpt-oss-120b"]) - 116.8e9) < 1e9
    assert abs(parameter_count(PRESETS["gpt-oss-20b"], active=True) - 3.6e9) < 0.1e9


@pytest.fixture
def ckpt_dir(tmp_path, micro_checkpoint):
    import shutil

    return shutil.copytree(micro_checkpoint, tmp_path / "c")


def test_truncated_file_is_a_clear_error(ckpt_dir):
    f = ckpt_dir / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="past the end of the file.*corrupt or truncated"):
        open_checkpoint(ckpt_dir)
    f.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="too short"):
        open_checkpoint(ckpt_dir)


def test_header_garbage_and_overlaps(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        SafetensorsFile(bad)
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    raw = json.dumps(header).encode()
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 24)
    with pytest.raises(CheckpointError, match="overlap"):
        SafetensorsFile(bad)
    header = {"a": {"dtype": "F32", "shape": [2**39, 2**39], "data_offsets": [0, 16]}}
    raw = json.dumps(header).encode()
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    with pytest.raises(CheckpointError, match="need"):
        SafetensorsFile(bad)
    bad.write_bytes(struct.pack("<Q", 2**60))
    with pytest.raises(CheckpointError, match="does not fit"):
        SafetensorsFile(bad)


def _rewrite(ckpt_dir, mutate):
    f = ckpt_dir / "model.safetensors"
    src = SafetensorsFile(f)
    tensors = {name: (info.dtype, src.array(name).copy()) for name, info in src.tensors.items()}
    src.close()
    mutate(tensors)
    write_file(f, tensors)


def test_missing_tensor(ckpt_dir):
    _rewrite(ckpt_dir, lambda t: t.pop("block.1.attn.sinks"))
    with pytest.raises(CheckpointError, match="missing tensor 'block.1.attn.sinks'"):
        open_checkpoint(ckpt_dir)


def test_wrong_shape(ckpt_dir):
    def mutate(t):
        dtype, arr = t["block.0.attn.out.bias"]
        t["block.0.attn.out.bias"] = (dtype, arr[:-1].copy())

    _rewrite(ckpt_dir, mutate)
    with pytest.raises(
        CheckpointError, match="'block.0.attn.out.bias' has shape \\[63\\].*implies \\[64\\]"
    ):
        open_checkpoint(ckpt_dir)


def test_wrong_dtype(ckpt_dir):
    def mutate(t):
        t["norm.scale"] = ("I32", np.ones(64, dtype=np.int32))

    _rewrite(ckpt_dir, mutate)
    with pytest.raises(CheckpointError, match="'norm.scale' has dtype I32"):
        open_checkpoint(ckpt_dir)


def test_invalid_config_field(ckpt_dir):
    cfg = json.loads((ckpt_dir / "config.json").read_text())
    cfg["num_experts"] = "four"
    (ckpt_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="num_experts.*'four'"):
        open_checkpoint(ckpt_dir)


def test_mxfp4_blocks_scales_disagree(tmp_path):
    path = init_checkpoint(MICRO, tmp_path / "m", experts="mxfp4")

    def mutate(t):
        dtype, arr = t["block.0.mlp.mlp2_weight.scales"]
        t["block.0.mlp.mlp2_weight.scales"] = (dtype, arr[:, :, :1].copy())

    _rewrite(path, mutate)
    with pytest.raises(
        CheckpointError, match="blocks and scales for block.0.mlp.mlp2_weight disagree"
    ):
        open_checkpoint(path)


def test_pickles_are_refused_with_advice(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="never unpickles.*weights_only=True"):
        open_checkpoint(d)


def test_not_a_directory_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        open_checkpoint(tmp_path / "nope")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="is a directory"):
        open_checkpoint(f)


def test_write_is_atomic_when_interrupted(tmp_path, micro_checkpoint):
    good = open_checkpoint(micro_checkpoint)
    target = tmp_path / "w"
    write_checkpoint(target, good.config, [(n, good.float32(n)) for n in good.names()])
    before = (target / "model.safetensors").read_bytes()

    def boom():
        yield "embedding.weight", good.float32("embedding.weight")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(target, good.config, boom(), specs=None)
    assert (target / "model.safetensors").read_bytes() == before
    assert not list(target.glob("*.tmp"))
