"""The Hugging Face layout loader: names, orientation, shards, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mind4_core.checkpoint import INDEX_FILE, open_checkpoint
from mind4_core.convert import convert_checkpoint
from mind4_core.errors import CheckpointError, Mind4Error
from mind4_core.hf import HFCheckpoint
from mind4_core.safetensors_io import SafetensorsFile, write_file

from .conftest import SMALL, assert_same_tensors


def _hf(make_canonical, tmp_path: Path, experts: str = "float32", **kwargs) -> tuple[Path, Path]:
    src = make_canonical(experts=experts)
    dst = tmp_path / f"hf-{experts}"
    convert_checkpoint(src, dst, to="hf", **kwargs)
    return src, dst


def _read_all(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Every tensor of every shard of ``path`` as ``name -> (dtype, array copy)``."""
    out = {}
    for file in sorted(path.glob("*.safetensors")):
        f = SafetensorsFile(file)
        out.update({n: (i.dtype, np.array(f.array(n))) for n, i in f.tensors.items()})
        f.close()
    return out


def _rewrite(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Replace the checkpoint's data by one model.safetensors holding ``tensors``."""
    for file in path.glob("*.safetensors"):
        file.unlink()
    (path / INDEX_FILE).unlink(missing_ok=True)
    write_file(path / "model.safetensors", tensors)


@pytest.mark.parametrize("experts", ["float32", "bf16", "mxfp4"])
def test_hf_layout_opens_as_the_same_canonical_tensors(make_canonical, tmp_path, experts):
    src, dst = _hf(make_canonical, tmp_path, experts)
    hf = open_checkpoint(dst)
    assert isinstance(hf, HFCheckpoint) and hf.format == "hf"
    assert hf.config == SMALL
    assert_same_tensors(open_checkpoint(src), hf)
    names = _read_all(dst)
    assert "model.layers.2.self_attn.q_proj.weight" in names
    if experts == "mxfp4":
        assert names["model.layers.0.mlp.experts.gate_up_proj_blocks"][0] == "U8"
        assert hf.is_mxfp4("block.0.mlp.mlp1_weight")
    else:
        # input-major on disk: gate_up_proj[e] is mlp1_weight[e] transposed
        dtype, stored = names["model.layers.1.mlp.experts.gate_up_proj"]
        assert stored.shape == (4, 64, 128)
        np.testing.assert_array_equal(
            stored.swapaxes(-1, -2), open_checkpoint(src).tensor("block.1.mlp.mlp1_weight")
        )


def test_expert_matrices_are_views_of_the_memory_map(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    hf = open_checkpoint(dst)
    w = hf.tensor("block.0.mlp.mlp2_weight")
    assert w.shape == (4, 64, 64) and not w.flags.owndata and not w.flags.c_contiguous
    assert hf.source("block.0.mlp.mlp2_weight").endswith("down_proj (transposed)")
    assert hf.float32("block.0.mlp.mlp2_weight").dtype == np.float32


def test_sharded_with_index(make_canonical, tmp_path):
    src, dst = _hf(make_canonical, tmp_path, max_shard_bytes=40_000)
    shards = sorted(p.name for p in dst.glob("*.safetensors"))
    assert len(shards) > 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((dst / INDEX_FILE).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert_same_tensors(open_checkpoint(src), open_checkpoint(dst))


def test_no_attention_bias_and_tied_embeddings(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    embed = tensors["model.embed_tokens.weight"]
    tensors = {
        n: v
        for n, v in tensors.items()
        if not (n.endswith("_proj.bias") and ".self_attn." in n) and n != "lm_head.weight"
    }
    _rewrite(dst, tensors)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(attention_bias=False, tie_word_embeddings=True)
    (dst / "config.json").write_text(json.dumps(cfg))
    hf = open_checkpoint(dst)
    assert not hf.float32("block.1.attn.qkv.bias").any()
    assert not hf.float32("block.1.attn.out.bias").any()
    assert hf.float32("block.1.attn.qkv.bias").shape == (128,)
    np.testing.assert_array_equal(hf.tensor("unembedding.weight"), embed[1])


# ----------------------------------------------------------------------------- bad input


def test_unknown_layout_lists_every_loader_and_why(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    write_file(tmp_path / "model.safetensors", {"x": np.ones(3, np.float32)})
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(tmp_path)
    message = str(info.value)
    assert "- canonical: config.json has no 'num_experts'" in message
    assert "- hf: config.json has model_type 'llama', not 'gpt_oss'" in message


def test_mixed_layouts_are_refused(make_canonical, tmp_path):
    src, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    tensors["block.0.attn.sinks"] = ("F32", np.zeros(4, np.float32))
    _rewrite(dst, tensors)
    with pytest.raises(
        CheckpointError, match="mixes layouts.*Hugging Face names.*'block.0.attn.sinks'"
    ):
        open_checkpoint(dst)


def test_missing_shard_is_named(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, max_shard_bytes=40_000)
    victim = sorted(dst.glob("*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"missing: {victim.name}"):
        open_checkpoint(dst)


def test_index_naming_a_tensor_its_shard_lacks(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, max_shard_bytes=40_000)
    index = json.loads((dst / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    name = next(n for n, s in index["weight_map"].items() if s == shards[0])
    index["weight_map"][name] = shards[1]
    (dst / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"puts tensor '{name}' in {shards[1]}"):
        open_checkpoint(dst)


def test_shape_mismatch_names_tensor_and_shapes(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    tensors["model.layers.1.self_attn.k_proj.weight"] = ("F32", np.zeros((16, 64), np.float32))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match=r"k_proj.weight' has shape \[16, 64\].*\[32, 64\]"):
        open_checkpoint(dst)


def test_config_disagreeing_with_tensors(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["intermediate_size"] = 32
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config.json implies"):
        open_checkpoint(dst)


def test_dtype_mismatch(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    tensors["model.norm.weight"] = ("I32", np.ones(64, np.int32))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="'model.norm.weight' has dtype I32"):
        open_checkpoint(dst)


def test_q_k_v_of_different_dtypes(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    dtype, v = tensors["model.layers.0.self_attn.v_proj.weight"]
    tensors["model.layers.0.self_attn.v_proj.weight"] = ("F16", v.astype(np.float16))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="different dtypes"):
        open_checkpoint(dst)


def test_unexpected_extra_tensor(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    tensors = _read_all(dst)
    tensors["model.layers.3.input_layernorm.weight"] = ("F32", np.ones(64, np.float32))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="unexpected tensor.*layers.3"):
        open_checkpoint(dst)


@pytest.mark.parametrize("suffix", [".bin", ".pt"])
def test_pickle_checkpoints_are_refused_with_the_safe_route(tmp_path, suffix):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_oss"}))
    # not a valid pickle either: were it unpickled, the error would be different
    (tmp_path / f"pytorch_model{suffix}").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(tmp_path)
    message = str(info.value)
    assert "pickle" in message and "arbitrary code" in message
    assert "weights_only=True" in message and "safetensors" in message


def test_mxfp4_blocks_and_scales_disagree(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, experts="mxfp4")
    tensors = _read_all(dst)
    name = "model.layers.1.mlp.experts.down_proj_scales"
    tensors[name] = ("U8", tensors[name][1][:, :, :1].copy())
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="blocks and scales.*disagree"):
        open_checkpoint(dst)


def test_mxfp4_blocks_without_scales(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, experts="mxfp4")
    tensors = _read_all(dst)
    del tensors["model.layers.2.mlp.experts.gate_up_proj_scales"]
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="gate_up_proj_blocks' has no partner"):
        open_checkpoint(dst)


def test_mxfp4_and_dense_copies_of_one_weight(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, experts="mxfp4")
    tensors = _read_all(dst)
    tensors["model.layers.0.mlp.experts.down_proj"] = ("F32", np.zeros((4, 64, 64), np.float32))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="both .*down_proj'.*MXFP4"):
        open_checkpoint(dst)


def test_mxfp4_blocks_of_the_wrong_dtype(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path, experts="mxfp4")
    tensors = _read_all(dst)
    name = "model.layers.0.mlp.experts.down_proj_blocks"
    tensors[name] = ("I8", tensors[name][1].view(np.int8))
    _rewrite(dst, tensors)
    with pytest.raises(CheckpointError, match="must be U8, got I8"):
        open_checkpoint(dst)


def test_truncated_shard(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    data = (dst / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        open_checkpoint(dst)


def test_bad_hf_config_is_a_mind4_error(make_canonical, tmp_path):
    _, dst = _hf(make_canonical, tmp_path)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["rope_parameters"]["truncate"] = True
    cfg["rope_scaling"]["truncate"] = True
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Mind4Error, match="truncate"):
        open_checkpoint(dst)


def test_canonical_directory_with_hf_names_is_mixed(make_canonical):
    src = make_canonical()
    f = SafetensorsFile(src / "model.safetensors")
    tensors = {n: (i.dtype, np.array(f.array(n))) for n, i in f.tensors.items()}
    f.close()
    tensors["model.norm.weight"] = ("F32", np.ones(64, np.float32))
    _rewrite(src, tensors)
    with pytest.raises(CheckpointError, match="mixes layouts"):
        open_checkpoint(src)
