"""The whole model: logits against the oracle, KV-cache equivalences, dtypes,
checkpoint formats, training use, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import config, random_weights, rel_err, write
from mind4_specs import oracle
from mind4_torch.errors import InputError
from mind4_torch.model import KVCache, Transformer, canonical_names
from mind4_torch.runtime import TorchRuntime, factory, load_transformer

from mind4_core.config import Config, RuntimeConfig
from mind4_core.errors import ContextOverflowError, Mind4Error

#: relative error of logits vs the float64 oracle allowed per dtype (tiny random models)
TOL = {"float32": 1e-5, "bfloat16": 3e-2, "float16": 5e-3}


def runtime(checkpoint, dtype="float32", **kwargs) -> TorchRuntime:
    cfg = Config(runtime=RuntimeConfig(device="cpu", dtype=dtype))
    return factory(checkpoint=checkpoint, config=cfg, components=kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model (GQA, window 5, YaRN) in float32 storage, and its weights."""
    cfg = config()
    checkpoint, stored = write(tmp_path_factory.mktemp("tiny"), cfg, random_weights(cfg, seed=1))
    return cfg, checkpoint, stored


@pytest.fixture(scope="module")
def tiny_runtime(tiny):
    return runtime(tiny[1])


def tokens(cfg, B, T, seed=0):
    return np.random.default_rng(seed).integers(0, cfg.vocab_size, (B, T))


# ----------------------------------------------------------------------------- against the oracle


def test_full_forward_matches_oracle(tiny, tiny_runtime):
    cfg, _, stored = tiny
    toks = tokens(cfg, 2, 13)  # longer than the window (5)
    out = tiny_runtime.to_numpy(tiny_runtime.forward(toks, None, last_only=False))
    assert out.shape == (2, 13, cfg.vocab_size) and out.dtype == np.float32
    assert rel_err(out, oracle.forward(stored, cfg, toks)) < TOL["float32"]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_key_value_heads=1),  # MQA
        dict(num_key_value_heads=4, rope_scaling_factor=1.0),  # MHA, plain RoPE
        dict(sliding_window=0, experts_per_token=1, num_hidden_layers=2),  # no window, top-1
        dict(experts_per_token=4),  # every expert
    ],
)
def test_architecture_variants_match_oracle(tmp_path, overrides):
    cfg = config(**overrides)
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=2))
    toks = tokens(cfg, 1, 11, seed=3)
    rt = runtime(checkpoint)
    out = rt.to_numpy(rt.forward(toks, None, last_only=False))
    assert rel_err(out, oracle.forward(stored, cfg, toks)) < TOL["float32"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_matches_oracle(tmp_path, dtype):
    """Every expert is selected (k = E) so that rounding cannot flip a routing decision:
    a near-tie between two router logits is a discontinuity no tolerance covers."""
    cfg = config(experts_per_token=4)
    storage = "bf16" if dtype == "bfloat16" else "float32"
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=1), storage=storage)
    rt = runtime(checkpoint, dtype)
    assert rt.dtype == dtype and rt.model.block[0].attn.qkv.weight.dtype == getattr(torch, dtype)
    assert rt.model.block[0].attn.sinks.dtype == torch.float32  # kept in float32
    assert rt.model.block[0].attn.norm.scale.dtype == torch.float32
    toks = tokens(cfg, 2, 9)
    ref = oracle.forward(stored, cfg, toks)
    out = rt.to_numpy(rt.forward(toks, None, last_only=False))
    assert out.dtype == np.float32
    assert rel_err(out, ref) < TOL[dtype]
    cache = rt.new_cache(2, 16)  # and the cached path in that dtype
    steps = [rt.to_numpy(rt.forward(toks[:, t : t + 1], cache, t)) for t in range(9)]
    assert rel_err(np.stack(steps, 1), ref) < TOL[dtype]


@pytest.mark.parametrize("storage", ["bf16", "mxfp4"])
@pytest.mark.parametrize("experts", ["dense", "mxfp4"])
def test_checkpoint_storage_formats(tmp_path, monkeypatch, storage, experts):
    """bf16 and MXFP4 checkpoints give the logits of their decoded weights, with MXFP4
    experts either dequantised at load or kept packed."""
    cfg = config(hidden_size=64, intermediate_size=32)
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=4), storage=storage)
    monkeypatch.setenv("MIND4_TORCH_EXPERTS", experts)
    rt = runtime(checkpoint)
    packed = not isinstance(rt.model.block[0].mlp.mlp1_weight, torch.Tensor)
    assert packed == (storage == "mxfp4" and experts == "mxfp4")
    toks = tokens(cfg, 2, 7)
    ref = oracle.forward(stored, cfg, toks)
    assert rel_err(rt.to_numpy(rt.forward(toks, None, last_only=False)), ref) < TOL["float32"]
    cache = rt.new_cache(2, 8)
    rt.forward(toks[:, :4], cache, 0)
    last = rt.to_numpy(rt.forward(toks[:, 4:], cache, 4, last_only=False))
    assert rel_err(last, ref[:, 4:]) < TOL["float32"]


# ----------------------------------------------------------------------------- the KV cache


def test_incremental_decode_equals_full_recompute(tiny_runtime, tiny):
    cfg = tiny[0]
    toks = tokens(cfg, 2, 15, seed=5)
    full = tiny_runtime.to_numpy(tiny_runtime.forward(toks, None, last_only=False))
    cache = tiny_runtime.new_cache(2, 20)
    steps = [
        tiny_runtime.to_numpy(tiny_runtime.forward(toks[:, t : t + 1], cache, t)) for t in range(15)
    ]
    assert rel_err(np.stack(steps, axis=1), full) < 1e-6


@pytest.mark.parametrize("chunks", [[6, 9], [1, 4, 2, 8], [5, 5, 5]])
def test_chunked_prefill_equals_one_shot(tiny_runtime, tiny, chunks):
    cfg = tiny[0]
    toks = tokens(cfg, 2, 15, seed=6)
    cache = tiny_runtime.new_cache(2, 32)
    one_shot = tiny_runtime.to_numpy(tiny_runtime.forward(toks, cache, 0, last_only=False))
    cache = tiny_runtime.new_cache(2, 32)
    parts, start = [], 0
    for n in chunks:
        parts.append(
            tiny_runtime.to_numpy(
                tiny_runtime.forward(toks[:, start : start + n], cache, start, last_only=False)
            )
        )
        start += n
    assert rel_err(np.concatenate(parts, axis=1), one_shot) < 1e-6


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # k = 2
        dict(experts_per_token=1),
        dict(experts_per_token=3),
        dict(num_key_value_heads=1, sliding_window=3),
    ],
)
@pytest.mark.parametrize("storage", ["float32", "mxfp4"])
def test_fast_decode_equals_the_readable_path(tmp_path, monkeypatch, overrides, storage):
    """Batch-1 decode goes through mind4_torch.decode; it must match the readable path
    and the oracle, with dense or packed MXFP4 experts."""
    cfg = config(**overrides)
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=11), storage=storage)
    monkeypatch.setenv("MIND4_TORCH_EXPERTS", "mxfp4")
    rt = runtime(checkpoint)
    toks = tokens(cfg, 1, 14, seed=12)
    ref = oracle.forward(stored, cfg, toks)
    fast_cache, slow_cache = rt.new_cache(1, 16), rt.new_cache(1, 16)
    rt.forward(toks[:, :3], fast_cache, 0)
    rt.forward(toks[:, :3], slow_cache, 0)
    fast, slow = [], []
    for t in range(3, 14):
        fast.append(rt.to_numpy(rt.forward(toks[:, t : t + 1], fast_cache, t)))
        rt.model.fast_decode = False
        slow.append(rt.to_numpy(rt.forward(toks[:, t : t + 1], slow_cache, t)))
        rt.model.fast_decode = True
    assert rt.model._decode_step is not None  # the fast path ran
    fast, slow = np.stack(fast, 1), np.stack(slow, 1)
    assert rel_err(fast, slow) < 1e-6
    assert rel_err(fast, ref[:, 3:]) < TOL["float32"]
    for fast_kv, slow_kv in ((fast_cache.k, slow_cache.k), (fast_cache.v, slow_cache.v)):
        assert rel_err(fast_kv.numpy(), slow_kv.numpy()) < 1e-6  # float32 rounding only


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fast_decode_low_precision(tmp_path, dtype):
    cfg = config(experts_per_token=4)  # k = E: no routing flips
    checkpoint, stored = write(tmp_path, cfg, random_weights(cfg, seed=13))
    rt = runtime(checkpoint, dtype)
    toks = tokens(cfg, 1, 9)
    cache = rt.new_cache(1, 12)
    steps = [rt.to_numpy(rt.forward(toks[:, t : t + 1], cache, t)) for t in range(9)]
    assert rt.model._decode_step is not None
    assert rel_err(np.stack(steps, 1), oracle.forward(stored, cfg, toks)) < TOL[dtype]


def test_rewind_reuses_a_shared_prefix(tiny_runtime, tiny):
    """A smaller offset overwrites the cache from there: the engine's prefix reuse."""
    cfg = tiny[0]
    a, b = tokens(cfg, 1, 12, seed=7), tokens(cfg, 1, 5, seed=8)
    cache = tiny_runtime.new_cache(1, 16)
    tiny_runtime.forward(a, cache, 0)
    rewound = tiny_runtime.to_numpy(tiny_runtime.forward(b, cache, 7))  # keep a[:7], then b
    fresh = tiny_runtime.to_numpy(tiny_runtime.forward(np.concatenate([a[:, :7], b], 1), None))
    assert rel_err(rewound, fresh) < 1e-6


def test_batched_rows_at_different_offsets_equal_one_by_one(tiny_runtime, tiny):
    """Rows of different lengths decode together with per-row offsets."""
    cfg = tiny[0]
    lengths = [3, 11, 7]
    prompts = [tokens(cfg, 1, n, seed=10 + n) for n in lengths]
    nxt = tokens(cfg, 3, 4, seed=9)
    expected = []
    for b, prompt in enumerate(prompts):  # reference: each row alone, full recompute
        seq = np.concatenate([prompt, nxt[b : b + 1]], axis=1)
        full = tiny_runtime.to_numpy(tiny_runtime.forward(seq, None, last_only=False))
        expected.append(full[0, lengths[b] :])
    cache = tiny_runtime.new_cache(3, 20)
    for b, prompt in enumerate(prompts):  # prefill each row into its own cache row
        row = tiny_runtime.new_cache(1, 20)
        tiny_runtime.forward(prompt, row, 0)
        cache.k[:, b], cache.v[:, b] = row.k[:, 0], row.v[:, 0]
    offsets = np.array(lengths)
    got = [
        tiny_runtime.to_numpy(tiny_runtime.forward(nxt[:, t : t + 1], cache, offsets + t))
        for t in range(2)
    ]
    got.append(
        tiny_runtime.to_numpy(
            tiny_runtime.forward(nxt[:, 2:], cache, (offsets + 2).tolist(), last_only=False)
        )
    )
    got = np.concatenate([got[0][:, None], got[1][:, None], got[2]], axis=1)  # (3, 4, V)
    assert rel_err(got, np.stack(expected)) < 1e-6


def test_decode_reads_only_the_visible_cache(tiny):
    """Past positions are all the keys a decode step sees: garbage after them is ignored,
    and window layers are handed at most `window` keys."""
    cfg, checkpoint, _ = tiny
    seen = []

    class Spy:
        def __init__(self):
            from mind4_torch.attention import TorchAttention

            self.inner = TorchAttention()

        def __call__(self, q, k, v, sinks, **kw):
            seen.append((k.shape[1], kw["window"]))
            return self.inner(q, k, v, sinks, **kw)

    rt = runtime(checkpoint, attention=Spy())
    toks = tokens(cfg, 1, 9)
    cache = rt.new_cache(1, 64)
    rt.forward(toks[:, :8], cache, 0)
    cache.k[:, :, 9:] = float("nan")  # beyond the next token: must never be read
    seen.clear()
    out = rt.to_numpy(rt.forward(toks[:, 8:], cache, 8))
    assert np.isfinite(out).all()
    assert sorted(seen) == sorted([(5, 5), (9, None), (5, 5)])  # layers 0, 1, 2


# ----------------------------------------------------------------------------- components swap


def test_model_calls_the_components_it_is_given(tiny):
    cfg, checkpoint, stored = tiny
    calls = {"attention": 0, "route": 0, "experts": 0}

    class CountingAttention:
        def __call__(self, *args, **kwargs):
            from mind4_torch.attention import TorchAttention

            calls["attention"] += 1
            return TorchAttention()(*args, **kwargs)

    class RoutingOnly:  # no "experts" feature: the model computes experts itself
        def route(self, logits, k):
            from mind4_torch.moe import route

            calls["route"] += 1
            return route(logits, k)

    rt = runtime(checkpoint, attention=CountingAttention(), moe_routing=RoutingOnly())
    toks = tokens(cfg, 1, 6)
    out = rt.to_numpy(rt.forward(toks, None, last_only=False))
    assert calls["attention"] == cfg.num_hidden_layers and calls["route"] == cfg.num_hidden_layers
    assert rel_err(out, oracle.forward(stored, cfg, toks)) < TOL["float32"]
    # a foreign MoE component receives canonical (contiguous) expert weights
    assert rt.model.block[0].mlp.mlp1_weight.is_contiguous()


# ----------------------------------------------------------------------------- training use


def test_state_dict_names_are_canonical():
    cfg = config()
    model = Transformer(cfg)
    assert sorted(model.state_dict()) == sorted(canonical_names(cfg))
    from mind4_core.checkpoint import expected_tensors

    shapes = {e.name: e.shape for e in expected_tensors(cfg)}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


def test_training_forward_backward_and_aux_loss():
    cfg = config()
    model = Transformer(cfg)
    model.init_weights(seed=0)
    toks = torch.from_numpy(tokens(cfg, 2, 10))
    logits, aux = model(toks, return_aux_loss=True)
    assert logits.shape == (2, 10, cfg.vocab_size)
    assert aux.ndim == 0 and 0.0 < aux.item() < cfg.num_experts  # 1.0 when perfectly balanced
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, cfg.vocab_size), toks[:, 1:].reshape(-1)
    )
    (loss + 0.01 * aux).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["block.0.mlp.gate.weight"].abs().sum() > 0
    assert grads["block.1.attn.sinks"].abs().sum() > 0
    assert torch.isfinite(torch.cat([g.flatten() for g in grads.values()])).all()


def test_to_checkpoint_tensors_round_trip(tmp_path):
    cfg = config()
    model = Transformer(cfg)
    model.init_weights(seed=3)
    tensors = model.to_checkpoint_tensors()
    assert list(tensors) == canonical_names(cfg)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in tensors.values())
    checkpoint, stored = write(tmp_path, cfg, tensors)
    rt = runtime(checkpoint)
    toks = tokens(cfg, 1, 8)
    with torch.no_grad():
        trained = model(torch.from_numpy(toks)).numpy()
    assert rel_err(rt.to_numpy(rt.forward(toks, None, last_only=False)), trained) < 1e-5
    # the fast-layout runtime model exports the same tensors
    again = rt.model.to_checkpoint_tensors()
    assert all(np.array_equal(again[n], tensors[n]) for n in tensors)


def test_load_transformer_for_fine_tuning(tiny):
    cfg, checkpoint, stored = tiny
    model = Transformer.from_checkpoint(checkpoint)
    assert model.training and model.block[0].mlp.mlp1_weight.is_contiguous()
    toks = torch.from_numpy(tokens(cfg, 1, 6))
    logits, aux = model(toks, return_aux_loss=True)
    assert rel_err(logits.detach().numpy(), oracle.forward(stored, cfg, toks)) < TOL["float32"]
    (logits.sum() + aux).backward()
    assert model.block[0].attn.qkv.weight.grad is not None
    assert isinstance(load_transformer(checkpoint), Transformer)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "toks, cache, offset, error, match",
    [
        (np.zeros((3,), np.int64), None, 0, InputError, "shape \\(B, T\\)"),
        (np.zeros((1, 0), np.int64), None, 0, InputError, "shape \\(B, T\\)"),
        (np.full((1, 2), 97), None, 0, InputError, "outside the vocabulary 0..96"),
        (np.full((1, 2), -1), None, 0, InputError, "outside the vocabulary"),
        (np.zeros((1, 2), np.float32), None, 0, InputError, "integers"),
        (np.zeros((1, 2), np.int64), None, 3, InputError, "without a KV cache"),
        (np.zeros((2, 2), np.int64), "cache1", 0, InputError, "holds 1 rows"),
        (np.zeros((1, 2), np.int64), "cache1", 7, ContextOverflowError, "holds 8"),
        (np.zeros((2, 2), np.int64), "cache2", [1, 2, 3], InputError, "one offset per row"),
        (np.zeros((1, 2), np.int64), "cache1", -1, InputError, ">= 0"),
        (np.zeros((1, 300), np.int64), None, 0, ContextOverflowError, "max_context_length=256"),
        (np.zeros((1, 2), np.int64), "notacache", 0, InputError, "KVCache"),
    ],
)
def test_bad_input_raises_clear_errors(tiny_runtime, toks, cache, offset, error, match):
    caches = {
        "cache1": tiny_runtime.new_cache(1, 8),
        "cache2": tiny_runtime.new_cache(2, 8),
        "notacache": object(),
    }
    with pytest.raises(error, match=match) as info:
        tiny_runtime.forward(toks, caches.get(cache) if cache else None, offset)
    assert isinstance(info.value, Mind4Error)


def test_cache_size_errors(tiny_runtime):
    with pytest.raises(ContextOverflowError, match="max_context_length=256"):
        tiny_runtime.new_cache(1, 1000)
    with pytest.raises(InputError, match="positive integer"):
        tiny_runtime.new_cache(0, 8)
    assert isinstance(tiny_runtime.new_cache(2, 8), KVCache)


def test_runtime_attributes(tiny_runtime, tiny):
    assert tiny_runtime.model_config == tiny[0]
    assert tiny_runtime.device == "cpu" and tiny_runtime.dtype == "float32"
    logits = tiny_runtime.forward(tokens(tiny[0], 2, 3), None)
    assert logits.shape == (2, tiny[0].vocab_size) and logits.dtype == torch.float32


def test_fast_decode_steps_aside_for_hooks_and_swapped_components(tiny):
    """A forward hook or a swapped-in component (as the lab's capture installs) must see
    every decode step, so the fast path gives way to the readable one."""
    cfg, checkpoint, _ = tiny
    rt = runtime(checkpoint)
    cache = rt.new_cache(1, 8)
    rt.forward(tokens(cfg, 1, 3), cache, 0)
    rt.forward(tokens(cfg, 1, 1), cache, 3)
    assert rt.model._decode_step is not None and rt.model._decode_step.applies()
    seen = []
    handle = rt.model.block[1].attn.register_forward_hook(lambda m, a, o: seen.append(o.shape))
    rt.forward(tokens(cfg, 1, 1), cache, 4)
    handle.remove()
    assert seen == [(1, 1, cfg.hidden_size)]
    calls = []
    block = rt.model.block[0].mlp
    original = block.moe

    class Observer:
        def route(self, logits, k):
            calls.append(k)
            return original.route(logits, k)

    block.moe = Observer()
    try:
        rt.forward(tokens(cfg, 1, 1), cache, 5)
    finally:
        block.moe = original
    assert calls == [cfg.experts_per_token]
    rt.forward(tokens(cfg, 1, 1), cache, 6)  # restored: the fast path again
    assert rt.model._decode_step.applies()


def test_fast_decode_only_for_the_standard_model(tiny):
    """A wrapped module (as tensor parallelism installs) sends decode through the readable path."""
    from mind4_torch.model import Linear

    cfg, checkpoint, _ = tiny
    rt = runtime(checkpoint)
    cache = rt.new_cache(1, 8)
    rt.forward(tokens(cfg, 1, 2), cache, 0)
    calls = []

    class Doubled(Linear):  # a stand-in for a row-parallel linear: must be called
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    attn = rt.model.block[2].attn
    wrapped = Doubled(attn.out.in_features, attn.out.out_features)
    wrapped.weight, wrapped.bias = attn.out.weight, attn.out.bias
    original, attn.out = attn.out, wrapped
    try:
        rt.forward(tokens(cfg, 1, 1), cache, 2)
    finally:
        attn.out = original
    assert calls == [(1, 1, cfg.num_attention_heads * cfg.head_dim)]
    rt.forward(tokens(cfg, 1, 1), cache, 3)
    assert rt.model._decode_step.applies()


def test_building_a_model_on_meta_runs_no_init():
    """No random init on the meta device: it goes through torch's decompositions and
    imports sympy, seconds of startup for `mind4 run`."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from mind4_torch.model import Transformer\n"
        "from mind4_core.presets import PRESETS\n"
        "with torch.device('meta'):\n"
        "    model = Transformer(PRESETS['small'], init=False)\n"
        "assert model.embedding.weight.is_meta\n"
        "print('sympy' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"
