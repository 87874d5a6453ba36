"""Capture on the torch backend (mind4_torch.capture): what the observers report is
what the running model computed (checked against a float64 reference built from the
oracle's pieces), the model's outputs do not change, and nothing is left behind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import config, random_weights, rel_err, write
from mind4_specs import oracle
from mind4_torch.attention import TorchAttention
from mind4_torch.capture import (
    AttentionObserver,
    RoutingObserver,
    attention_probabilities,
    capture_kinds,
)
from mind4_torch.moe import TorchMoE
from mind4_torch.runtime import factory

from mind4_core.config import Config, RuntimeConfig
from mind4_core.lab import CAPTURE_KINDS, LabError, capture, residual_names

T_PROMPT = 13  # longer than the window (5) of the even layers


def make_runtime(checkpoint, dtype="float32"):
    cfg = Config(runtime=RuntimeConfig(device="cpu", dtype=dtype))
    return factory(checkpoint=checkpoint, config=cfg, components={})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = config()
    checkpoint, stored = write(tmp_path_factory.mktemp("cap"), cfg, random_weights(cfg, seed=4))
    return cfg, checkpoint, stored


@pytest.fixture(scope="module")
def rt(tiny):
    return make_runtime(tiny[1])


def prompt(cfg, T=T_PROMPT, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (T,) if batch is None else (batch, T)
    return rng.integers(0, cfg.vocab_size, shape)


def reference_probs(q, k, sinks, sm_scale, window, offset):
    """float64 ``(B, Hq, T, S)`` attention weights (the oracle's formula, kept visible)."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    B, T, Hq, _ = q.shape
    k = np.repeat(k, Hq // k.shape[2], axis=2)  # (B, S, Hq, D)
    scores = np.einsum("bthd,bshd->bhts", q, k) * sm_scale
    visible = oracle.attention_mask(T, k.shape[1], offset, window, batch=B)[:, None]
    scores = np.where(visible, scores, -np.inf)
    sink = np.broadcast_to(np.asarray(sinks, np.float64)[None, :, None, None], (B, Hq, T, 1))
    return oracle.softmax(np.concatenate([scores, sink], -1), -1)[..., :-1]


def reference_trace(w, cfg, tokens):
    """float64 forward of one row recording what a capture reports."""
    T = len(tokens)
    Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    eps = cfg.rms_norm_eps
    cos, sin = oracle.rope_tables(
        np.arange(T),
        D,
        cfg.rope_theta,
        cfg.rope_scaling_factor,
        cfg.rope_ntk_alpha,
        cfg.rope_ntk_beta,
        cfg.initial_context_length,
    )
    x = np.asarray(w["embedding.weight"], np.float64)[tokens][None]  # (1, T, H)
    out = {"residual": {"embedding": x[0]}, "probs": [], "routing": []}
    for n in range(cfg.num_hidden_layers):
        a, m = f"block.{n}.attn.", f"block.{n}.mlp."
        qkv = oracle.linear(
            oracle.rmsnorm(x, w[a + "norm.scale"], eps), w[a + "qkv.weight"], w[a + "qkv.bias"]
        )
        q = oracle.apply_rope(qkv[..., : Hq * D].reshape(1, T, Hq, D), cos, sin)
        k = oracle.apply_rope(qkv[..., Hq * D : (Hq + Hkv) * D].reshape(1, T, Hkv, D), cos, sin)
        v = qkv[..., (Hq + Hkv) * D :].reshape(1, T, Hkv, D)
        window = cfg.window_of_layer(n)
        out["probs"].append(reference_probs(q, k, w[a + "sinks"], 1 / math.sqrt(D), window, 0)[0])
        o = oracle.attention(
            q, k, v, w[a + "sinks"], sm_scale=1 / math.sqrt(D), window=window, offset=0
        )
        x = x + oracle.linear(o.reshape(1, T, Hq * D), w[a + "out.weight"], w[a + "out.bias"])
        out["residual"][f"block.{n}.attn"] = x[0]
        h = oracle.rmsnorm(x, w[m + "norm.scale"], eps).reshape(T, -1)
        out["routing"].append(
            oracle.route(
                oracle.linear(h, w[m + "gate.weight"], w[m + "gate.bias"]), cfg.experts_per_token
            )
        )
        x = x + oracle.moe(h, w, m, cfg).reshape(1, T, -1)
        out["residual"][f"block.{n}.mlp"] = x[0]
    out["logits"] = oracle.forward(w, cfg, np.asarray(tokens)[None])[0]
    return out


# ----------------------------------------------------------------------------- against float64


def test_capture_reports_what_the_model_computed(tiny, rt):
    cfg, _, w = tiny
    tokens = prompt(cfg)
    ref = reference_trace(w, cfg, tokens)
    layers = range(cfg.num_hidden_layers)
    with capture(rt, CAPTURE_KINDS, attention_layers=layers) as rec:
        logits = rt.to_numpy(rt.forward(tokens[None], None, 0, last_only=False))[0]
    assert rel_err(logits, ref["logits"]) < 1e-5
    positions, streams = rec.residuals()
    assert list(streams) == residual_names(cfg.num_hidden_layers)
    assert list(positions) == list(range(T_PROMPT))
    for name, x in streams.items():
        assert rel_err(x, ref["residual"][name]) < 1e-5, name
    for n in layers:
        routing = rec.routing(n)
        np.testing.assert_array_equal(routing.experts, ref["routing"][n][0])
        assert rel_err(routing.weights, ref["routing"][n][1]) < 1e-5
        amap = rec.attention(n)
        assert amap.window == cfg.window_of_layer(n)
        assert rel_err(amap.probs, ref["probs"][n]) < 1e-5
        ref_sink = 1 - ref["probs"][n].sum(-1)  # (Hq, T)
        np.testing.assert_allclose(amap.sink, ref_sink, atol=1e-5)
    # the logit lens of the last stage is the model's own output
    lens = rec.unembed(streams[f"block.{cfg.num_hidden_layers - 1}.mlp"])
    np.testing.assert_allclose(lens, logits, rtol=1e-6, atol=1e-6)
    assert rel_err(rec.unembed(streams["embedding"]), oracle.linear(
        oracle.rmsnorm(ref["residual"]["embedding"], w["norm.scale"]), w["unembedding.weight"]
    )) < 1e-5  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_probing_reads_the_components_probabilities(dtype):
    """S spans several probe chunks; per-row offsets; a window; GQA."""
    torch_dtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(7)
    B, T, S, Hq, Hkv, D = 2, 3, 37, 4, 2, 8
    q = torch.randn(B, T, Hq, D, generator=g).to(torch_dtype)
    k = torch.randn(B, S, Hkv, D, generator=g).to(torch_dtype)
    sinks = torch.randn(Hq, generator=g)
    offset = torch.tensor([S - T, 20])
    probs = attention_probabilities(
        TorchAttention(), q, k, sinks, sm_scale=0.4, window=9, offset=offset
    )
    ref = reference_probs(
        q.float().numpy(), k.float().numpy(), sinks.numpy(), 0.4, 9, offset.numpy()
    )
    assert probs.shape == (B, Hq, T, S) and probs.dtype == torch.float32
    assert rel_err(probs.numpy(), ref) < {"float32": 1e-6, "bfloat16": 1e-2}[dtype]


def test_decode_steps_add_up_to_the_full_picture(tiny, rt):
    """Prefill then decode with the KV cache (windowed layers get a cut cache): the
    captured maps over absolute positions equal those of one full forward pass."""
    cfg = tiny[0]
    tokens = prompt(cfg, seed=1)
    layers = range(cfg.num_hidden_layers)
    with capture(rt, CAPTURE_KINDS, attention_layers=layers) as full:
        rt.forward(tokens[None], None, 0, last_only=False)
    cache = rt.new_cache(1, 32)
    with capture(rt, CAPTURE_KINDS, attention_layers=layers) as steps:
        rt.forward(tokens[None, :7], cache, 0)
        for t in range(7, T_PROMPT):
            rt.forward(tokens[None, t : t + 1], cache, t)
    assert steps.forward_passes == 1 + T_PROMPT - 7
    for n in layers:
        a, b = full.attention(n), steps.attention(n)
        assert list(b.positions) == list(range(T_PROMPT)) and b.probs.shape == a.probs.shape
        assert rel_err(b.probs, a.probs) < 1e-5 and rel_err(b.sink, a.sink) < 1e-5
        np.testing.assert_array_equal(steps.routing(n).experts, full.routing(n).experts)
    _, r_full = full.residuals()
    _, r_steps = steps.residuals()
    for name in r_full:
        assert rel_err(r_steps[name], r_full[name]) < 1e-5


def test_rows_with_their_own_offsets(tiny, rt):
    cfg = tiny[0]
    batch = prompt(cfg, T=6, seed=2, batch=2)
    extra = prompt(cfg, T=1, seed=3, batch=2)
    cache = rt.new_cache(2, 16)
    with capture(rt, ["routing", "attention"], attention_layers=[0]) as rec:
        rt.forward(batch, cache, 0)
        rt.forward(extra, cache, [6, 3])  # row 1 rewrites position 3
    row1 = np.concatenate([batch[1, :3], extra[1]])
    with capture(rt, ["routing", "attention"], attention_layers=[0]) as alone:
        rt.forward(row1[None], None, 0, last_only=False)
    assert list(rec.routing(0, row=0).positions) == list(range(7))
    got = rec.attention(0, row=1)
    assert list(got.positions) == list(range(6))
    want = alone.attention(0)
    assert rel_err(got.probs[:, 3, :4], want.probs[:, 3, :4]) < 1e-5
    np.testing.assert_array_equal(rec.routing(0, row=1).experts[3], alone.routing(0).experts[3])


# ----------------------------------------------------------------------------- no trace left


def _state(model):
    return (
        [type(b.attn.attention) for b in model.block],
        [type(b.mlp.moe) for b in model.block],
        [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
    )


def test_nothing_is_installed_outside_a_capture(tiny, rt):
    cfg = tiny[0]
    tokens = prompt(cfg)[None]
    before = _state(rt.model)
    assert set(before[0]) == {TorchAttention} and set(before[1]) == {TorchMoE}
    assert sum(before[2]) == 0
    plain = rt.forward(tokens, None, 0, last_only=False)
    with capture(rt, CAPTURE_KINDS, attention_layers=[0, 1]):
        during = _state(rt.model)
        observed = rt.forward(tokens, None, 0, last_only=False)
    assert {AttentionObserver} <= set(during[0]) and set(during[1]) == {RoutingObserver}
    assert sum(during[2]) > 0
    assert _state(rt.model) == before
    assert torch.equal(observed, plain)  # observing changes nothing
    with pytest.raises(RuntimeError, match="boom"):
        with capture(rt, ["routing"]):
            raise RuntimeError("boom")
    assert _state(rt.model) == before
    assert torch.equal(rt.forward(tokens, None, 0, last_only=False), plain)


def test_the_decode_fast_path_is_off_only_while_a_capture_is_open(rt):
    decode = pytest.importorskip("mind4_torch.decode")
    step = decode.DecodeStep(rt.model)
    assert step.applies()
    for kinds in (["routing"], ["attention"], ["residual"]):
        with capture(rt, kinds, attention_layers=[1] if kinds == ["attention"] else []):
            assert not step.applies()  # observers need the readable path
        assert step.applies()


def test_one_capture_at_a_time(rt):
    with capture(rt, ["routing"]):
        with pytest.raises(LabError, match="already open"):
            with capture(rt, ["residual"]):
                pass
    with capture(rt, ["residual"]):  # closed: a new one opens
        pass


def test_observers_pass_everything_through():
    moe = TorchMoE()
    observer = RoutingObserver(moe, 0, record=None)
    assert observer.experts == moe.experts

    class RoutingOnly:
        def route(self, logits, k):
            return moe.route(logits, k)

    assert getattr(RoutingObserver(RoutingOnly(), 0, None), "experts", None) is None
    assert capture_kinds(object()) == frozenset()


def test_a_tensor_parallel_rank_captures_routing_only(rt):
    class Rank:  # what capture reads of a TensorParallelRuntime rank
        model, model_config, world_size = rt.model, rt.model_config, 2

    Rank.__module__ = "mind4_torch.parallel"  # found through mind4_torch.capture, like the real one

    assert capture_kinds(Rank()) == frozenset({"routing"})
    with pytest.raises(LabError, match="cannot capture attention: it captures routing"):
        with capture(Rank(), ["attention"], attention_layers=[0]):
            pass
    assert capture_kinds(rt) == frozenset(CAPTURE_KINDS)


def test_bfloat16_capture_is_close(tiny):
    cfg, checkpoint, w = tiny
    rt16 = make_runtime(checkpoint, dtype="bfloat16")
    tokens = prompt(cfg)
    ref = reference_trace(w, cfg, tokens)
    with capture(rt16, CAPTURE_KINDS, attention_layers=[0]) as rec:
        rt16.forward(tokens[None], None, 0, last_only=False)
    assert rel_err(rec.attention(0).probs, ref["probs"][0]) < 5e-2
    _, streams = rec.residuals()
    assert rel_err(streams["block.0.mlp"], ref["residual"]["block.0.mlp"]) < 5e-2
