"""Weight loading: canonical checkpoints read exactly, bad ones fail clearly.

With every installed plugin's weight loaders in place, a canonical
checkpoint (bf16, float32, or MXFP4 experts) must open through
:func:`mind4_core.checkpoint.open_checkpoint` with every tensor holding exactly
what was written, MXFP4 decoding as the oracle says. Each bad input (missing
or truncated file, corrupt header, missing tensor, wrong shape or dtype,
invalid or unknown config field, missing shard, pickle-only directory,
disagreeing MXFP4 blocks and scales) must raise a
:class:`~mind4_core.errors.Mind4Error` that names the culprit, both when
opened directly and when a backend loads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mind4_core.errors import Mind4Error

from . import oracle
from .models import SPEC_CONFIG


@pytest.mark.parametrize("kind", ["bf16", "float32", "mxfp4"])
def test_canonical_tensors_read_exactly(spec_models, kind):
    """Every canonical tensor reads back bit for bit; MXFP4 experts decode like the oracle."""
    from mind4_core.checkpoint import open_checkpoint

    ckpt = spec_models.checkpoint(kind)
    opened = open_checkpoint(ckpt.path)
    try:
        assert opened.config == SPEC_CONFIG
        assert sorted(opened.names()) == sorted(ckpt.weights)
        for name, value in ckpt.weights.items():
            if name + ".blocks" in ckpt.stored:
                assert opened.is_mxfp4(name), f"{name} should be MXFP4"
                blocks, scales = opened.mxfp4(name)
                np.testing.assert_array_equal(blocks, ckpt.stored[name + ".blocks"], err_msg=name)
                np.testing.assert_array_equal(scales, ckpt.stored[name + ".scales"], err_msg=name)
            else:
                assert not opened.is_mxfp4(name)
                np.testing.assert_array_equal(
                    np.asarray(opened.tensor(name)), ckpt.stored[name], err_msg=name
                )
            decoded = opened.float32(name)
            assert decoded.dtype == np.float32, f"{name}: float32() gave {decoded.dtype}"
            np.testing.assert_array_equal(
                decoded, value.astype(np.float32), err_msg=f"{name} decoded"
            )
    finally:
        opened.close()


def test_core_mxfp4_matches_oracle(rng):
    """``mind4_core.mxfp4`` decodes exactly like the oracle and encodes as well as it."""
    from mind4_core import mxfp4

    blocks = rng.integers(0, 256, (3, 8, 2, 16), dtype=np.uint8)
    scales = rng.integers(100, 140, (3, 8, 2), dtype=np.uint8)
    np.testing.assert_array_equal(mxfp4.decode(blocks, scales), oracle.mxfp4_decode(blocks, scales))

    x = (rng.standard_normal((4, 8, 64)) * np.exp2(rng.integers(-6, 6, (4, 8, 1)))).astype(
        np.float32
    )
    ours = oracle.mxfp4_decode(*mxfp4.encode(x))
    ref = oracle.mxfp4_decode(*oracle.mxfp4_encode(x))
    assert oracle.relative_error(ours, x) <= oracle.relative_error(ref, x) * 1.01 + 1e-12


# ----------------------------------------------------------------------------- bad input


def _rewrite(path: Path, drop=(), replace=None) -> None:
    """Rewrite ``path``'s checkpoint without the stored tensors named in ``drop`` and
    with those in ``replace`` (stored names: MXFP4 parts are ``NAME.blocks``/``.scales``)."""
    from mind4_core.checkpoint import BF16, open_checkpoint, write_checkpoint

    opened = open_checkpoint(path)
    stored = []
    for name in opened.names():
        if opened.is_mxfp4(name):
            blocks, scales = opened.mxfp4(name)
            stored += [(name + ".blocks", np.array(blocks)), (name + ".scales", np.array(scales))]
        elif opened.dtype(name) == "BF16":
            stored.append((name, BF16(np.array(opened.tensor(name)))))
        else:
            stored.append((name, np.array(opened.tensor(name))))
    opened.close()
    replace = replace or {}
    items = [(name, replace.get(name, value)) for name, value in stored if name not in drop]
    (path / "model.safetensors").unlink()
    write_checkpoint(path, opened.config, items)


def _edit_config(path: Path, **changes) -> None:
    data = json.loads((path / "config.json").read_text())
    data.update(changes)
    (path / "config.json").write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: int(len(data) * 0.6)])


def _corrupt_header(path: Path) -> None:
    data = bytearray((path / "model.safetensors").read_bytes())
    data[:8] = (len(data) * 4).to_bytes(8, "little")  # a header longer than the file
    (path / "model.safetensors").write_bytes(bytes(data))


def _missing_shard(path: Path) -> None:
    (path / "model.safetensors").rename(path / "model-00001-of-00002.safetensors")
    weight_map = {
        "embedding.weight": "model-00001-of-00002.safetensors",
        "norm.scale": "model-00002-of-00002.safetensors",
    }
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def _pickle_only(path: Path) -> None:
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def _mxfp4_mismatch(path: Path) -> None:
    from mind4_core.checkpoint import open_checkpoint

    opened = open_checkpoint(path)
    scales = np.array(opened.mxfp4("block.0.mlp.mlp1_weight")[1])
    opened.close()
    _rewrite(path, replace={"block.0.mlp.mlp1_weight.scales": scales[:, :, :1].copy()})


#: case -> (source checkpoint, how to break it, text the error must contain)
BAD_INPUTS = {
    "missing_file": ("bf16", lambda p: (p / "model.safetensors").unlink(), "safetensors"),
    "truncated_file": ("bf16", _truncate, "model.safetensors"),
    "corrupt_header": ("bf16", _corrupt_header, "model.safetensors"),
    "missing_tensor": (
        "bf16",
        lambda p: _rewrite(p, drop={"block.1.attn.sinks"}),
        "block.1.attn.sinks",
    ),
    "wrong_shape": (
        "bf16",
        lambda p: _rewrite(
            p, replace={"block.0.attn.qkv.bias": np.ones(SPEC_CONFIG.qkv_dim + 1, np.float32)}
        ),
        "block.0.attn.qkv.bias",
    ),
    "wrong_dtype": (
        "bf16",
        lambda p: _rewrite(
            p, replace={"block.0.mlp.gate.bias": np.arange(SPEC_CONFIG.num_experts, dtype=np.int32)}
        ),
        "block.0.mlp.gate.bias",
    ),
    "invalid_config_field": (
        "bf16",
        lambda p: _edit_config(p, num_attention_heads=-4),
        "num_attention_heads",
    ),
    "unknown_config_field": ("bf16", lambda p: _edit_config(p, hidden_sise=64), "hidden_sise"),
    "missing_shard": ("bf16", _missing_shard, "model-00002-of-00002.safetensors"),
    "pickle_only": ("bf16", _pickle_only, "pickle"),
    "mxfp4_mismatch": ("mxfp4", _mxfp4_mismatch, "mlp1_weight"),
}


@pytest.fixture
def bad_checkpoint(request, spec_models, tmp_path):
    """A broken copy of a spec checkpoint: ``(path, text its error must contain)``."""
    source, breaker, needle = BAD_INPUTS[request.param]
    path = tmp_path / request.param
    shutil.copytree(spec_models.checkpoint(source).path, path)
    breaker(path)
    return path, needle


@pytest.mark.parametrize("bad_checkpoint", list(BAD_INPUTS), indirect=True)
def test_bad_checkpoint_is_a_clear_error(bad_checkpoint):
    """``open_checkpoint`` raises a Mind4Error naming the culprit."""
    from mind4_core.checkpoint import open_checkpoint

    path, needle = bad_checkpoint
    with pytest.raises(Mind4Error) as info:
        open_checkpoint(path).close()
    assert needle in str(info.value), f"the error does not mention {needle!r}: {info.value}"


@pytest.mark.parametrize("bad_checkpoint", list(BAD_INPUTS), indirect=True)
def test_backend_refuses_bad_checkpoint(backend_target, bad_checkpoint):
    """Loading it into the backend raises a Mind4Error too (never a crash)."""
    from mind4_core import engine

    path, needle = bad_checkpoint
    with pytest.raises(Mind4Error) as info:
        engine.load(path, **backend_target.load_kwargs())
    assert needle in str(info.value), f"the error does not mention {needle!r}: {info.value}"
