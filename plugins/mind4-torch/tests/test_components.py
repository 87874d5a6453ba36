"""Each component against the float64 oracle of ``mind4_specs`` (fresh random inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import config, rel_err
from mind4_specs import oracle
from mind4_torch.attention import TorchAttention
from mind4_torch.errors import InputError
from mind4_torch.model import RMSNorm, RotaryEmbedding
from mind4_torch.moe import MXFP4Weight, TorchMoE, dequantize_mxfp4, load_balancing_loss

from mind4_core.config import SamplingParams
from mind4_core.mxfp4 import encode

TOL = {torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def randn(*shape, dtype=torch.float32, scale=1.0):
    return (scale * torch.randn(*shape, dtype=torch.float64)).to(dtype)


def np64(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


# ----------------------------------------------------------------------------- RMSNorm, RoPE


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rmsnorm(dtype):
    norm = RMSNorm(48, eps=1e-5)
    with torch.no_grad():
        norm.scale.copy_(1 + 0.3 * torch.randn(48))
    x = randn(3, 5, 48, dtype=dtype, scale=4.0)
    out = norm(x)
    assert out.dtype == dtype
    ref = oracle.rmsnorm(np64(x), np64(norm.scale.detach()), 1e-5)
    assert rel_err(np64(out.detach()), ref) < TOL[dtype]


@pytest.mark.parametrize("factor", [1.0, 4.0, 32.0])
def test_rope_matches_oracle(factor):
    cfg = config(rope_scaling_factor=factor, head_dim=16, initial_context_length=64)
    rope = RotaryEmbedding(cfg)
    positions = torch.tensor([[0, 1, 7, 63, 200, 255]])
    x = randn(1, 6, 3, 16)
    out = RotaryEmbedding.rotate(x, *rope(positions, 256))
    cos, sin = oracle.rope_tables(
        positions.numpy(), 16, cfg.rope_theta, factor, cfg.rope_ntk_alpha, cfg.rope_ntk_beta, 64
    )
    ref = oracle.apply_rope(np64(x), cos, sin)
    assert rel_err(np64(out), ref) < 1e-6


def test_rope_tables_grow_on_demand():
    rope = RotaryEmbedding(config())
    cos, _ = rope(torch.tensor([[3]]), 4)
    first = cos.clone()
    cos, _ = rope(torch.tensor([[3, 5000]]), 5001)  # beyond the initial table
    assert rope.cos_table.shape[0] >= 5001
    assert torch.equal(cos[:, :1], first)


# ----------------------------------------------------------------------------- attention


ATTENTION_CASES = [
    # B, T, S, Hq, Hkv, window, offset
    (2, 7, 7, 4, 2, None, 0),  # prefill, GQA
    (2, 7, 7, 4, 4, 3, 0),  # MHA, window
    (1, 5, 12, 6, 1, None, 4),  # MQA, offset, keys beyond the last query (masked)
    (3, 1, 20, 4, 2, 6, 19),  # decode with window, keys up to the query
    (3, 1, 9, 4, 2, None, 8),  # decode, all visible (the fast path)
    (3, 4, 16, 4, 2, 4, [0, 5, 12]),  # per-row offsets
]


@pytest.mark.parametrize("case", range(len(ATTENTION_CASES)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_attention_matches_oracle(case, dtype):
    B, T, S, Hq, Hkv, window, offset = ATTENTION_CASES[case]
    if isinstance(offset, list):
        offset = torch.tensor(offset)
    D = 16
    q, k, v = (
        randn(B, T, Hq, D, dtype=dtype),
        randn(B, S, Hkv, D, dtype=dtype),
        randn(B, S, Hkv, D, dtype=dtype),
    )
    sinks = randn(Hq)
    out = TorchAttention()(q, k, v, sinks, sm_scale=1 / math.sqrt(D), window=window, offset=offset)
    assert out.shape == (B, T, Hq, D) and out.dtype == dtype
    ref = oracle.attention(
        np64(q),
        np64(k),
        np64(v),
        np64(sinks),
        sm_scale=1 / math.sqrt(D),
        window=window,
        offset=offset.numpy() if isinstance(offset, torch.Tensor) else offset,
    )
    assert rel_err(np64(out), ref) < TOL[dtype]


def test_attention_chunked_prefill_matches_oracle():
    """A long prefill is processed in chunks of queries; the result must not change."""
    B, T, Hq, Hkv, D = 1, 33, 4, 2, 8
    q, k, v, sinks = randn(B, T, Hq, D), randn(B, T, Hkv, D), randn(B, T, Hkv, D), randn(Hq)
    attention = TorchAttention(max_scores=Hq * T * 5)  # chunks of 5 queries
    out = attention(q, k, v, sinks, sm_scale=0.3, window=6, offset=0)
    ref = oracle.attention(np64(q), np64(k), np64(v), np64(sinks), sm_scale=0.3, window=6, offset=0)
    assert rel_err(np64(out), ref) < TOL[torch.float32]


def test_attention_numpy_offsets_and_strong_sinks():
    """Offsets may be a NumPy array; a huge sink absorbs nearly all mass."""
    q, k, v = randn(2, 1, 2, 8), randn(2, 6, 2, 8), randn(2, 6, 2, 8)
    sinks = torch.tensor([30.0, -30.0])
    out = TorchAttention()(q, k, v, sinks, sm_scale=0.1, window=None, offset=np.array([2, 5]))
    ref = oracle.attention(
        np64(q), np64(k), np64(v), np64(sinks), sm_scale=0.1, window=None, offset=np.array([2, 5])
    )
    assert rel_err(np64(out), ref) < 1e-6
    assert out[:, :, 0].abs().max() < 1e-9  # head 0 gives all its mass to the sink


@pytest.mark.parametrize(
    "q_shape, k_shape, sinks_shape, offset, match",
    [
        ((1, 2, 4, 8), (1, 3, 3, 8), (4,), 0, "kv heads must divide"),
        ((1, 2, 4, 8), (1, 3, 2, 16), (4,), 0, "head dim"),
        ((1, 2, 4, 8), (1, 3, 2, 8), (2,), 0, "sinks must have shape"),
        ((1, 2, 4), (1, 3, 2, 8), (4,), 0, "q must be a 4-d"),
        ((2, 1, 4, 8), (2, 3, 2, 8), (4,), [1, 2, 3], "offset must be"),
    ],
)
def test_attention_bad_shapes(q_shape, k_shape, sinks_shape, offset, match):
    with pytest.raises(InputError, match=match):
        TorchAttention()(
            torch.randn(q_shape),
            torch.randn(k_shape),
            torch.randn(k_shape),
            torch.randn(sinks_shape),
            sm_scale=1.0,
            window=None,
            offset=offset,
        )


# ----------------------------------------------------------------------------- routing, experts


def test_route_matches_oracle():
    logits = randn(50, 8)
    indices, weights = TorchMoE().route(logits, 3)
    ref_indices, ref_weights = oracle.route(np64(logits), 3)
    assert indices.dtype == torch.int64 and weights.dtype == torch.float32
    np.testing.assert_array_equal(indices.numpy(), ref_indices)
    assert rel_err(weights.numpy(), ref_weights) < 1e-6
    np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, rtol=1e-6)


def test_route_bad_input():
    with pytest.raises(InputError, match="cannot route"):
        TorchMoE().route(torch.randn(3, 4), 5)
    with pytest.raises(InputError, match="shape \\(N, E\\)"):
        TorchMoE().route(torch.randn(3), 1)


def expert_weights(E=5, H=32, I=16, dtype=torch.float32):  # noqa: E741
    return (
        randn(E, 2 * I, H, scale=3 / math.sqrt(H), dtype=dtype),
        randn(E, 2 * I, scale=0.3, dtype=dtype),
        randn(E, H, I, scale=1 / math.sqrt(I), dtype=dtype),
        randn(E, H, scale=0.3, dtype=dtype),
    )


@pytest.mark.parametrize("N", [1, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_experts_match_oracle(N, dtype):
    """One token (the decode path) and many (grouped by expert); the clamp is exercised."""
    w1, b1, w2, b2 = expert_weights(dtype=dtype)
    x = randn(N, 32, dtype=dtype)
    indices, weights = TorchMoE().route(randn(N, 5), 2)
    with torch.inference_mode():
        out = TorchMoE().experts(x, indices, weights, w1, b1, w2, b2, 7.0)
    assert out.shape == (N, 32) and out.dtype == dtype
    h = np.einsum("eoh,nh->neo", np64(w1), np64(x))
    assert (h[..., 0::2] > 7).any() or N == 1  # the clamp matters for the batch case
    ref = oracle.experts(
        np64(x), indices.numpy(), weights.numpy(), np64(w1), np64(b1), np64(w2), np64(b2), 7.0
    )
    assert rel_err(np64(out), ref) < TOL[dtype]


def test_experts_input_major_weights():
    """Weights stored transposed in memory (the runtime's fast layout) give the same result."""
    w1, b1, w2, b2 = expert_weights()
    x = randn(1, 32)
    indices, weights = TorchMoE().route(randn(1, 5), 2)
    fast = [w.transpose(-1, -2).contiguous().transpose(-1, -2) for w in (w1, w2)]
    with torch.inference_mode():
        a = TorchMoE().experts(x, indices, weights, w1, b1, w2, b2, 7.0)
        b = TorchMoE().experts(x, indices, weights, fast[0], b1, fast[1], b2, 7.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_experts_gradients_flow():
    w1, b1, w2, b2 = (w.requires_grad_() for w in expert_weights())
    x = randn(9, 32).requires_grad_()
    indices, weights = TorchMoE().route(randn(9, 5), 2)
    TorchMoE().experts(x, indices, weights, w1, b1, w2, b2, 7.0).square().sum().backward()
    used = indices.unique()
    assert x.grad.abs().sum() > 0
    assert w1.grad[used].abs().sum() > 0
    unused = [e for e in range(5) if e not in used.tolist()]
    assert all(w1.grad[e].abs().sum() == 0 for e in unused)


def test_experts_bad_shapes():
    w1, b1, w2, b2 = expert_weights()
    with pytest.raises(InputError, match="expert weights do not fit"):
        TorchMoE().experts(
            randn(2, 31), torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 2), w1, b1, w2, b2, 7.0
        )
    with pytest.raises(InputError, match="must both be"):
        TorchMoE().experts(
            randn(2, 32), torch.zeros(3, 2, dtype=torch.long), torch.ones(2, 2), w1, b1, w2, b2, 7.0
        )


def test_mxfp4_dequantize_matches_oracle():
    x = np.random.default_rng(3).standard_normal((3, 8, 64)).astype(np.float32)
    blocks, scales = encode(x)
    out = dequantize_mxfp4(torch.from_numpy(blocks), torch.from_numpy(scales), torch.float32)
    np.testing.assert_array_equal(out.numpy(), oracle.mxfp4_decode(blocks, scales))


def test_experts_with_packed_mxfp4_weights():
    w1, b1, w2, b2 = expert_weights(I=32)
    packed = []
    for w in (w1, w2):
        blocks, scales = encode(w.numpy())
        packed.append(
            MXFP4Weight(torch.from_numpy(blocks), torch.from_numpy(scales), torch.float32)
        )
    x = randn(6, 32)
    indices, weights = TorchMoE().route(randn(6, 5), 2)
    out = TorchMoE().experts(x, indices, weights, packed[0], b1, packed[1], b2, 7.0)
    dense = [np64(p.dense()) for p in packed]
    ref = oracle.experts(
        np64(x), indices.numpy(), weights.numpy(), dense[0], np64(b1), dense[1], np64(b2), 7.0
    )
    assert rel_err(np64(out), ref) < TOL[torch.float32]


def test_load_balancing_loss():
    E = 4
    balanced = torch.zeros(8, E)  # uniform router, every expert used equally
    indices = torch.arange(16).reshape(8, 2) % E
    assert load_balancing_loss(balanced, indices, E).item() == pytest.approx(1.0)
    skewed = torch.zeros(8, E)
    skewed[:, 0] = 10.0
    collapsed = torch.zeros(8, 2, dtype=torch.long)
    assert load_balancing_loss(skewed, collapsed, E).item() > 3.0


# ----------------------------------------------------------------------------- sampler


def sampler():
    from mind4_torch.sampler import TorchSampler

    return TorchSampler(device="cpu")


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=0.7, top_k=5),
        SamplingParams(temperature=1.3, top_p=0.6),
        SamplingParams(temperature=0.9, top_k=8, top_p=0.8),
        SamplingParams(temperature=2.0, top_k=1),
        SamplingParams(temperature=0.0),
    ],
)
def test_sampler_probabilities_match_oracle(params):
    logits = randn(4, 40, scale=2.0)
    probs = sampler().probabilities(logits, params)
    ref = oracle.sampling_probabilities(
        np64(logits), params.temperature, params.top_k, params.top_p
    )
    np.testing.assert_allclose(probs.numpy(), ref, rtol=1e-6, atol=1e-7)


def test_sampler_ties_lowest_index_first():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    s = sampler()
    assert s.sample(logits, SamplingParams(temperature=0), None).tolist() == [1]
    probs = s.probabilities(logits, SamplingParams(temperature=1.0, top_k=2))
    ref = oracle.sampling_probabilities(logits.double().numpy(), 1.0, 2, 1.0)
    np.testing.assert_allclose(probs.numpy(), ref, atol=1e-7)
    assert probs[0, 3] == 0 and probs[0, 1] > 0 and probs[0, 2] > 0


def test_sampler_seeded_reproducible_and_follows_distribution():
    s = sampler()
    logits = randn(1, 6, scale=1.5).expand(4000, 6).contiguous()
    params = SamplingParams(temperature=0.8, top_p=0.9)
    a = s.sample(logits, params, s.generator(7))
    b = s.sample(logits, params, s.generator(7))
    c = s.sample(logits, params, s.generator(8))
    assert a.dtype == np.int64 and a.shape == (4000,)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    expected = oracle.sampling_probabilities(np64(logits[:1]), 0.8, 0, 0.9)[0]
    freq = np.bincount(a, minlength=6) / len(a)
    assert np.all(freq[expected == 0] == 0)  # never draws a filtered token
    np.testing.assert_allclose(freq, expected, atol=0.04)


def test_sampler_greedy_returns_numpy_int64():
    logits = randn(3, 11)
    out = sampler().sample(logits, SamplingParams(temperature=0), sampler().generator(None))
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, logits.argmax(-1).numpy())


def test_sampler_bad_input():
    s = sampler()
    with pytest.raises(InputError, match="shape \\(B, V\\)"):
        s.sample(torch.randn(2, 3, 4), SamplingParams(temperature=0), None)
    with pytest.raises(InputError, match="NaN"):
        s.sample(
            torch.tensor([[0.0, float("nan")]]), SamplingParams(temperature=1.0), s.generator(0)
        )
    from mind4_core.errors import SamplingError

    with pytest.raises(SamplingError):
        s.generator("seven")
