"""The metal runtime against the float64 oracle, its cache semantics, and bad
input becoming Mind4Error subclasses with the C library's sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mind4_specs import oracle

from mind4_core.checkpoint import open_checkpoint
from mind4_core.config import ModelConfig, SamplingParams
from mind4_core.errors import CheckpointError, ContextOverflowError, Mind4Error
from mind4_core.presets import init_checkpoint

pytestmark = pytest.mark.needs_native

CONFIG = ModelConfig(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    vocab_size=300,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=64,
    max_context_length=256,
    sliding_window=7,
    rope_theta=10000.0,
    rope_scaling_factor=4.0,
)


@pytest.fixture(scope="module", params=["float32", "bf16", "mxfp4"])
def checkpoint(request, tmp_path_factory):
    path = init_checkpoint(
        CONFIG,
        tmp_path_factory.mktemp(request.param),
        seed=3,
        experts=request.param,
        dtype="bfloat16",
    )
    return open_checkpoint(path)


def oracle_logits(ckpt, tokens):
    weights = {n: ckpt.float32(n).astype(np.float64) for n in ckpt.names()}
    return oracle.forward(weights, ckpt.config, tokens)


def runtime(ckpt, dtype="float32", threads=2):
    from mind4_metal.runtime import MetalRuntime

    return MetalRuntime(ckpt, dtype=dtype, num_threads=threads)


def test_logits_match_oracle(checkpoint):
    rng = np.random.default_rng()
    tokens = rng.integers(0, CONFIG.vocab_size, size=(2, 19))
    rt = runtime(checkpoint)
    out = rt.forward(tokens, None, 0, last_only=False)
    assert out.shape == (2, 19, CONFIG.vocab_size) and out.dtype == np.float32
    err = oracle.relative_error(out, oracle_logits(checkpoint, tokens))
    assert err < 1e-5, err


def test_bfloat16_weights(checkpoint):
    """dtype bfloat16 rounds every weight matrix to bf16 (vectors stay float32) and
    computes in float32: exact against the oracle on the rounded weights."""
    from mind4_core.checkpoint import bf16_bits_to_float32, to_bf16_bits

    tokens = np.random.default_rng().integers(0, CONFIG.vocab_size, size=(1, 9))
    out = runtime(checkpoint, dtype="bfloat16").forward(tokens, None, last_only=False)
    weights = {}
    for name in checkpoint.names():
        w = checkpoint.float32(name)
        if w.ndim >= 2 and not checkpoint.is_mxfp4(name) and not name.endswith("_bias"):
            w = bf16_bits_to_float32(to_bf16_bits(w))
        weights[name] = w.astype(np.float64)
    ref = oracle.forward(weights, checkpoint.config, tokens)
    assert oracle.relative_error(out, ref) < 1e-5
    assert oracle.relative_error(out, oracle_logits(checkpoint, tokens)) < 5e-2


def test_cache_decode_and_offsets(checkpoint):
    rng = np.random.default_rng()
    tokens = rng.integers(0, CONFIG.vocab_size, size=(2, 12))
    rt = runtime(checkpoint, threads=1)
    full = rt.forward(tokens, None, last_only=False)
    cache = rt.new_cache(2, 16)
    first = rt.forward(tokens[:, :5], cache, 0, last_only=True)
    np.testing.assert_allclose(first, full[:, 4], rtol=0, atol=1e-4)
    for t in range(5, 12):  # one token at a time, per-row offsets
        step = rt.forward(tokens[:, t : t + 1], cache, [t, t], last_only=True)
        np.testing.assert_allclose(step, full[:, t], rtol=0, atol=1e-4)
    # rewind row 1 to a shorter prefix and continue with other tokens
    other = rng.integers(0, CONFIG.vocab_size, size=(1, 3))
    again = rt.forward(np.concatenate([tokens[:1, 3:6], other]), cache, [3, 3], last_only=False)
    expect = rt.forward(np.concatenate([tokens[1:, :3], other], axis=1), None, last_only=False)
    np.testing.assert_allclose(again[1], expect[0, 3:], rtol=0, atol=1e-4)


def metal_registered():
    """The installed entry point, or this checkout's plugin registered for the test."""
    import contextlib

    import mind4_metal.plugin

    from mind4_core.plugins import get_manager, temporary_plugin

    if "metal" in get_manager().names("backend"):
        return contextlib.nullcontext()
    return temporary_plugin(mind4_metal.plugin, "metal-test")


def test_engine_generation_is_deterministic(checkpoint):
    from mind4_core import engine

    with metal_registered():
        model = engine.load(checkpoint, backend="metal")
        prompt = [5, 17, 33, 2]
        greedy = SamplingParams(temperature=0, max_new_tokens=6)
        a = model.generate(prompt, greedy, stop_tokens=[])
        weights = {n: checkpoint.float32(n).astype(np.float64) for n in checkpoint.names()}
        assert list(a) == list(oracle.greedy_generate(weights, checkpoint.config, prompt, 6))
        seeded = SamplingParams(temperature=0.9, top_k=20, top_p=0.9, max_new_tokens=6, seed=11)
        assert model.generate(prompt, seeded, stop_tokens=[]) == model.generate(
            prompt, seeded, stop_tokens=[]
        )
        batch = model.generate_batch([prompt, prompt[:2]], greedy, stop_tokens=[])
        assert batch[0] == list(a)


def test_errors(checkpoint, tmp_path):
    rt = runtime(checkpoint, threads=1)
    cache = rt.new_cache(1, 4)
    with pytest.raises(ContextOverflowError, match="exceed"):
        rt.forward(np.zeros((1, 5), np.int64), cache, 0)
    with pytest.raises(Mind4Error, match="vocabulary"):
        rt.forward(np.array([[1, CONFIG.vocab_size]]), cache, 0)
    rt.forward(np.array([[1, 2]]), cache, 0)
    with pytest.raises(Mind4Error, match="past the 2 tokens"):
        rt.forward(np.array([[1]]), cache, 3)
    with pytest.raises(Mind4Error, match="offset 0"):
        rt.forward(np.array([[1]]), None, 2)


def _copy_checkpoint(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_checkpoints(tmp_path):
    from mind4_metal.runtime import MetalRuntime

    src = init_checkpoint(CONFIG, tmp_path / "good", seed=1, experts="bf16", dtype="float32")
    good = open_checkpoint(src)
    # truncated weights file (the core opened it before it was cut)
    cut = _copy_checkpoint(src, tmp_path / "cut")
    ck = open_checkpoint(cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        MetalRuntime(ck)
    # header offsets past the end
    bad = _copy_checkpoint(src, tmp_path / "offsets")
    raw = bytearray((bad / "model.safetensors").read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    name = "block.0.attn.qkv.bias"
    b, e = header[name]["data_offsets"]
    header[name]["data_offsets"] = [b + 10**9, e + 10**9]
    text = json.dumps(header).encode()
    text += b" " * (n - len(text)) if len(text) <= n else b""
    raw = len(text).to_bytes(8, "little") + text + raw[8 + n :]
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=name):
        MetalRuntime(good.__class__(bad, good.config, good._tensors, format="canonical"))
    # NaN weights: refused at load, naming the tensor
    nan = _copy_checkpoint(src, tmp_path / "nan")
    raw = bytearray((nan / "model.safetensors").read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    b, e = header["block.1.attn.out.weight"]["data_offsets"]
    raw[8 + n + b : 8 + n + b + 4] = np.array([np.nan], np.float32).tobytes()
    (nan / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"block\.1\.attn\.out\.weight.*NaN"):
        MetalRuntime(open_checkpoint(nan))


def test_dtype_and_device_refused(checkpoint):
    from mind4_metal.runtime import MetalRuntime

    with pytest.raises(Mind4Error, match="float16"):
        MetalRuntime(checkpoint, dtype="float16")


@pytest.mark.parametrize("layout", ["hf", "sharded"])
def test_other_layouts(tmp_path, layout):
    """Hugging Face layout (re-packed in memory) and sharded canonical files."""
    from mind4_metal.runtime import MetalRuntime

    from mind4_core.convert import convert_checkpoint

    src = init_checkpoint(CONFIG, tmp_path / "src", seed=4, experts="mxfp4", dtype="bfloat16")
    dst = tmp_path / layout
    if layout == "hf":
        convert_checkpoint(src, dst, to="hf")
    else:
        convert_checkpoint(src, dst, to="canonical", max_shard_bytes=40_000)
        assert len(list(dst.glob("*.safetensors"))) > 1
    ckpt = open_checkpoint(dst)
    tokens = np.random.default_rng().integers(0, CONFIG.vocab_size, size=(1, 10))
    out = MetalRuntime(ckpt, num_threads=1).forward(tokens, None, last_only=False)
    assert oracle.relative_error(out, oracle_logits(ckpt, tokens)) < 1e-5


def _mutated(src, dst, mutate):
    """A copy of checkpoint ``src`` whose safetensors header went through ``mutate``."""
    _copy_checkpoint(src, dst)
    raw = (dst / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    mutate(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (dst / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    return dst


def _overlap(h):
    a, b = h["block.0.attn.sinks"]["data_offsets"], h["block.0.attn.out.bias"]["data_offsets"]
    h["block.0.attn.out.bias"]["data_offsets"] = [a[0], a[0] + (b[1] - b[0])]


def _absurd(h):
    h["norm.scale"]["shape"] = [2**62, 2**62]


def _dtype(h):
    h["block.1.mlp.gate.bias"]["dtype"] = "I32"


@pytest.mark.parametrize(
    "mutate,match",
    [(_overlap, "overlap"), (_absurd, "overflow"), (_dtype, r"block\.1\.mlp\.gate\.bias")],
    ids=["overlapping", "absurd-dims", "wrong-dtype"],
)
def test_bad_headers(tmp_path, mutate, match):
    """The C reader's own validation, reached without the core's loader in front."""
    from mind4_metal.runtime import MetalRuntime

    src = init_checkpoint(CONFIG, tmp_path / "good", seed=1, experts="bf16", dtype="float32")
    good = open_checkpoint(src)
    bad = _mutated(src, tmp_path / "bad", mutate)
    with pytest.raises(CheckpointError, match=match) as info:
        MetalRuntime(good.__class__(bad, good.config, good._tensors, format="canonical"))
    assert "model.safetensors" in str(info.value)
