"""The oracle checked against hand-computed cases and invariants.

If the oracle were wrong every backend would be measured against the wrong
function, so each piece is pinned here by something independent of it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mind4_specs import oracle

from mind4_core.config import ModelConfig


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------
# RMSNorm


def test_rmsnorm_hand_computed():
    x = np.array([3.0, 4.0])
    out = oracle.rmsnorm(x, np.array([1.0, 2.0]), eps=0.0)
    r = math.sqrt((9 + 16) / 2)
    np.testing.assert_allclose(out, [3 / r, 2 * 4 / r])


def test_rmsnorm_output_has_unit_rms_and_eps_matters_for_tiny_inputs():
    x = rng().standard_normal((5, 16)) * 7
    out = oracle.rmsnorm(x, np.ones(16), eps=1e-5)
    np.testing.assert_allclose(np.sqrt(np.mean(out**2, -1)), 1.0, rtol=1e-6)
    tiny = np.full(4, 1e-4)
    assert np.all(oracle.rmsnorm(tiny, np.ones(4), eps=1e-5) < 0.1)


# ----------------------------------------------------------------------------
# RoPE


def test_plain_rope_frequencies_and_tables():
    inv_freq, conc = oracle.rope_inv_freq(4, theta=100.0)
    np.testing.assert_allclose(inv_freq, [1.0, 0.1])
    assert conc == 1.0
    cos, sin = oracle.rope_tables(np.array([0, 2]), 4, theta=100.0)
    np.testing.assert_allclose(cos, [[1, 1], [math.cos(2), math.cos(0.2)]])
    np.testing.assert_allclose(sin, [[0, 0], [math.sin(2), math.sin(0.2)]])


def test_rope_is_half_split_not_interleaved():
    # D = 4: pairs are (x0, x2) and (x1, x3)
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)  # (T, heads, D)
    c0, s0, c1, s1 = math.cos(0.5), math.sin(0.5), math.cos(0.05), math.sin(0.05)
    cos, sin = np.array([[c0, c1]]), np.array([[s0, s1]])
    out = oracle.apply_rope(x, cos, sin).ravel()
    expected = [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1]
    np.testing.assert_allclose(out, expected)


def test_rope_scores_depend_only_on_relative_position():
    r = rng(1)
    q, k = r.standard_normal((1, 1, 8)), r.standard_normal((1, 1, 8))

    def score(m, n):
        cm, sm = oracle.rope_tables(np.array([m]), 8, theta=1000.0)
        cn, sn = oracle.rope_tables(np.array([n]), 8, theta=1000.0)
        return float(np.sum(oracle.apply_rope(q, cm, sm) * oracle.apply_rope(k, cn, sn)))

    assert score(7, 3) == pytest.approx(score(14, 10), rel=1e-10)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)


def test_yarn_frequencies_follow_the_ramp():
    D, theta, f = 64, 150000.0, 32.0
    inv_freq, conc = oracle.rope_inv_freq(
        D, theta, scaling_factor=f, ntk_alpha=1.0, ntk_beta=32.0, initial_context_length=4096
    )
    assert conc == pytest.approx(0.1 * math.log(32) + 1)
    plain, _ = oracle.rope_inv_freq(D, theta)
    low = (D / 2) * math.log(4096 / (32 * 2 * math.pi)) / math.log(theta)
    high = (D / 2) * math.log(4096 / (1 * 2 * math.pi)) / math.log(theta)
    i = np.arange(D // 2)
    # high frequencies (i <= low) keep their value; low frequencies (i >= high) are divided by f
    np.testing.assert_allclose(inv_freq[i <= low], plain[i <= low])
    np.testing.assert_allclose(inv_freq[i >= high], plain[i >= high] / f)
    middle = (i > low) & (i < high)
    assert middle.any()
    ramp = (i[middle] - low) / (high - low)
    np.testing.assert_allclose(inv_freq[middle], plain[middle] * (1 - ramp + ramp / f))


def test_yarn_concentration_scales_cos_and_sin():
    cos, sin = oracle.rope_tables(
        np.array([0, 5]), 8, 1e4, scaling_factor=4.0, initial_context_length=64
    )
    conc = 0.1 * math.log(4) + 1
    np.testing.assert_allclose(cos[0], conc)
    np.testing.assert_allclose(cos**2 + sin**2, conc**2)


def test_yarn_small_model_clamps_low_and_high():
    # tiny L0 makes `low` negative and `high` small: the clamp keeps the ramp finite
    inv_freq, _ = oracle.rope_inv_freq(8, 1e4, scaling_factor=2.0, initial_context_length=16)
    assert np.all(np.isfinite(inv_freq)) and np.all(inv_freq > 0)


# ----------------------------------------------------------------------------
# attention


def _rand_attn(seed=0, B=2, T=5, S=None, Hq=4, Hkv=2, D=8):
    r = rng(seed)
    S = T if S is None else S
    return (
        r.standard_normal((B, T, Hq, D)),
        r.standard_normal((B, S, Hkv, D)),
        r.standard_normal((B, S, Hkv, D)),
        r.standard_normal(Hq),
    )


def test_attention_single_key_mixes_value_with_the_sink():
    q = np.ones((1, 1, 1, 2))
    k = np.zeros((1, 1, 1, 2))  # score 0
    v = np.array([[[[2.0, -4.0]]]])
    sinks = np.array([math.log(3.0)])  # sink weight 3 against the key's weight 1
    out = oracle.attention(q, k, v, sinks, sm_scale=1.0, window=None, offset=0)
    np.testing.assert_allclose(out.ravel(), [0.5, -1.0])


def test_attention_without_sinks_is_plain_causal_softmax():
    q, k, v, _ = _rand_attn(Hq=2, Hkv=2)
    out = oracle.attention(q, k, v, np.full(2, -np.inf), sm_scale=0.3, window=None, offset=0)
    B, T, H, D = q.shape
    for b in range(B):
        for h in range(H):
            for t in range(T):
                s = q[b, t, h] @ k[b, : t + 1, h].T * 0.3
                p = np.exp(s - s.max())
                p /= p.sum()
                np.testing.assert_allclose(out[b, t, h], p @ v[b, : t + 1, h])


def test_attention_gqa_equals_mha_with_repeated_kv():
    q, k, v, sinks = _rand_attn(Hq=6, Hkv=2)
    gqa = oracle.attention(q, k, v, sinks, sm_scale=0.4, window=None, offset=0)
    k3, v3 = np.repeat(k, 3, axis=2), np.repeat(v, 3, axis=2)
    np.testing.assert_allclose(
        gqa, oracle.attention(q, k3, v3, sinks, sm_scale=0.4, window=None, offset=0)
    )
    # head 1 uses kv head 0, head 3 uses kv head 1
    only_kv1 = v.copy()
    only_kv1[:, :, 0] = 0
    out = oracle.attention(q, k, only_kv1, sinks, sm_scale=0.4, window=None, offset=0)
    assert np.all(out[:, :, :3] == 0) and np.all(out[:, :, 3:] != 0)


def test_attention_mask_window_and_offset():
    m = oracle.attention_mask(T=2, S=6, offset=3, window=2)[0]
    # query positions 3 and 4 see keys {2, 3} and {3, 4}
    assert m.astype(int).tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0]]
    m = oracle.attention_mask(T=1, S=4, offset=np.array([0, 2]), window=None, batch=2)
    assert m[:, 0].astype(int).tolist() == [[1, 0, 0, 0], [1, 1, 1, 0]]


@pytest.mark.parametrize("window", [None, 3])
def test_attention_with_offset_equals_the_tail_of_a_full_pass(window):
    q, k, v, sinks = _rand_attn(seed=3, T=7)
    full = oracle.attention(q, k, v, sinks, sm_scale=0.35, window=window, offset=0)
    tail = oracle.attention(q[:, 4:], k, v, sinks, sm_scale=0.35, window=window, offset=4)
    np.testing.assert_allclose(tail, full[:, 4:])
    # a longer, partly unwritten cache changes nothing: keys past the query are masked
    pad = np.concatenate([k, 100 * np.ones_like(k[:, :3])], axis=1)
    padv = np.concatenate([v, 100 * np.ones_like(v[:, :3])], axis=1)
    np.testing.assert_allclose(
        oracle.attention(q[:, 4:], pad, padv, sinks, sm_scale=0.35, window=window, offset=4),
        full[:, 4:],
    )


def test_attention_per_row_offsets():
    q, k, v, sinks = _rand_attn(seed=4, B=2, T=1, S=6)
    out = oracle.attention(q, k, v, sinks, sm_scale=0.3, window=None, offset=np.array([1, 4]))
    for b, off in enumerate([1, 4]):
        one = oracle.attention(
            q[b : b + 1], k[b : b + 1], v[b : b + 1], sinks, sm_scale=0.3, window=None, offset=off
        )
        np.testing.assert_allclose(out[b], one[0])


def test_attention_window_larger_than_sequence_is_full_attention():
    q, k, v, sinks = _rand_attn(seed=5, T=4)
    np.testing.assert_allclose(
        oracle.attention(q, k, v, sinks, sm_scale=0.3, window=4, offset=0),
        oracle.attention(q, k, v, sinks, sm_scale=0.3, window=None, offset=0),
    )
    assert not np.allclose(
        oracle.attention(q, k, v, sinks, sm_scale=0.3, window=3, offset=0),
        oracle.attention(q, k, v, sinks, sm_scale=0.3, window=None, offset=0),
    )


# ----------------------------------------------------------------------------
# routing and experts


def test_route_hand_computed():
    logits = np.array([[0.0, 3.0, 1.0, 2.0]])
    idx, w = oracle.route(logits, 2)
    assert idx.tolist() == [[1, 3]]
    e = math.exp(1.0)
    np.testing.assert_allclose(w, [[e / (e + 1), 1 / (e + 1)]])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 6))
def test_route_weights_are_a_softmax_over_the_selected(seed, k):
    logits = rng(seed).standard_normal((5, 6)) * 3
    idx, w = oracle.route(logits, k)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    top = np.take_along_axis(logits, idx, -1)
    assert np.all(np.diff(top, axis=-1) <= 0)  # descending
    assert np.all(top[:, -1:] >= np.sort(logits, -1)[:, -k:][:, :1])


def test_swiglu_hand_computed_and_clamped():
    limit = 7.0
    h = np.array([1.0, 2.0, 10.0, -9.0, -1.0, 9.0])  # pairs (glu, lin)
    out = oracle.swiglu(h, limit)
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    expected = [
        1.0 * s(1.702) * (2.0 + 1),
        7.0 * s(1.702 * 7) * (-7.0 + 1),  # glu capped above, lin clamped below
        -1.0 * s(-1.702) * (7.0 + 1),  # lin clamped above
    ]
    np.testing.assert_allclose(out, expected)


def test_experts_equal_a_token_by_token_loop():
    r = rng(7)
    N, H, F, E, K = 4, 8, 6, 5, 2
    x = r.standard_normal((N, H))
    W1, b1 = r.standard_normal((E, 2 * F, H)), r.standard_normal((E, 2 * F))
    W2, b2 = r.standard_normal((E, H, F)), r.standard_normal((E, H))
    idx, w = oracle.route(r.standard_normal((N, E)), K)
    out = oracle.experts(x, idx, w, W1, b1, W2, b2, 7.0)
    for n in range(N):
        acc = np.zeros(H)
        for j in range(K):
            e = idx[n, j]
            a = oracle.swiglu(W1[e] @ x[n] + b1[e], 7.0)
            acc += w[n, j] * (W2[e] @ a + b2[e])
        np.testing.assert_allclose(out[n], acc)


# ----------------------------------------------------------------------------
# MXFP4


def test_mxfp4_decode_hand_built_block():
    blocks = np.zeros((1, 1, 16), np.uint8)
    blocks[0, 0, 0] = 0x21  # element 0: code 1 (+0.5), element 1: code 2 (+1.0)
    blocks[0, 0, 1] = 0xF7  # element 2: code 7 (+6), element 3: code 15 (-6)
    scales = np.array([[128]], np.uint8)  # x 2
    out = oracle.mxfp4_decode(blocks, scales)
    assert out.shape == (1, 32)
    np.testing.assert_array_equal(out[0, :4], [1.0, 2.0, 12.0, -12.0])
    assert np.all(out[0, 4:] == 0)


def test_mxfp4_encode_is_exact_on_representable_values():
    r = rng(8)
    codes = r.integers(0, 16, size=(3, 2, 64)).astype(np.uint8)
    codes[..., 0] = 7  # each block holds +6 so its amax pins the scale
    codes[..., 32] = 15
    exps = r.integers(-5, 5, size=(3, 2, 2))
    x = oracle.FP4_VALUES[codes] * np.exp2(np.repeat(exps, 32, axis=-1))
    blocks, scales = oracle.mxfp4_encode(x)
    assert blocks.shape == (3, 2, 2, 16) and scales.shape == (3, 2, 2)
    np.testing.assert_array_equal(oracle.mxfp4_decode(blocks, scales), x)


def test_mxfp4_encode_error_bound_and_idempotence():
    x = rng(9).standard_normal((4, 96)) * 3
    blocks, scales = oracle.mxfp4_encode(x)
    y = oracle.mxfp4_decode(blocks, scales)
    step = np.repeat(np.exp2(scales.astype(float) - 127), 32, axis=-1)  # scale per value
    # the FP4 grid spacing is at most 2·scale (between 4 and 6) and nothing saturates
    assert np.all(np.abs(x - y) <= step)
    assert np.all(np.abs(x).reshape(4, 3, 32).max(-1) / step[:, ::32] > 3)  # the scale is tight
    assert oracle.relative_error(y, x) < 0.15
    b2, s2 = oracle.mxfp4_encode(y)
    np.testing.assert_array_equal(oracle.mxfp4_decode(b2, s2), y)


def test_mxfp4_encode_rounds_ties_to_even_and_zero_block():
    x = np.zeros((1, 64))
    x[0, :4] = [4.0, 0.25, 0.75, 5.0]  # amax 5 -> scale 1
    blocks, scales = oracle.mxfp4_encode(x)
    y = oracle.mxfp4_decode(blocks, scales)
    np.testing.assert_array_equal(y[0, :4], [4.0, 0.0, 1.0, 4.0])
    assert scales[0, 1] == 0 and np.all(y[0, 32:] == 0)


# ----------------------------------------------------------------------------
# the full model


TINY = ModelConfig(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=8,
    vocab_size=32,
    num_experts=4,
    experts_per_token=2,
    sliding_window=3,
    initial_context_length=16,
    rope_scaling_factor=2.0,
)


def random_weights(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    r = rng(seed)
    H, V, E, F = config.hidden_size, config.vocab_size, config.num_experts, config.intermediate_size
    Hq, D = config.num_attention_heads, config.head_dim

    def n(*shape, scale=0.3):
        return r.standard_normal(shape) * scale

    w = {
        "embedding.weight": n(V, H, scale=1.0),
        "norm.scale": 1 + n(H, scale=0.1),
        "unembedding.weight": n(V, H),
    }
    for i in range(config.num_hidden_layers):
        a, m = f"block.{i}.attn.", f"block.{i}.mlp."
        w.update(
            {
                a + "norm.scale": 1 + n(H, scale=0.1),
                a + "qkv.weight": n(config.qkv_dim, H),
                a + "qkv.bias": n(config.qkv_dim),
                a + "sinks": n(Hq, scale=1.0),
                a + "out.weight": n(H, Hq * D),
                a + "out.bias": n(H),
                m + "norm.scale": 1 + n(H, scale=0.1),
                m + "gate.weight": n(E, H),
                m + "gate.bias": n(E),
                m + "mlp1_weight": n(E, 2 * F, H),
                m + "mlp1_bias": n(E, 2 * F),
                m + "mlp2_weight": n(E, H, F),
                m + "mlp2_bias": n(E, H),
            }
        )
    return w


def test_forward_shapes_and_causality():
    w = random_weights(TINY)
    tokens = rng(1).integers(0, TINY.vocab_size, (2, 6))
    logits = oracle.forward(w, TINY, tokens)
    assert logits.shape == (2, 6, TINY.vocab_size)
    changed = tokens.copy()
    changed[:, 4] = (changed[:, 4] + 1) % TINY.vocab_size
    other = oracle.forward(w, TINY, changed)
    np.testing.assert_allclose(other[:, :4], logits[:, :4])  # the past ignores the future
    assert not np.allclose(other[:, 4:], logits[:, 4:])
    np.testing.assert_allclose(oracle.forward(w, TINY, tokens[1]), logits[1])


def test_forward_one_layer_by_hand():
    """One layer written out again in plain loops, with MHA and no scaling."""
    cfg = ModelConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        head_dim=4, intermediate_size=4, vocab_size=10, num_experts=3, experts_per_token=1,
        sliding_window=2, rope_theta=10.0,
    )  # fmt: skip
    w = random_weights(cfg, seed=2)
    tokens = np.array([3, 1, 4, 1])
    x = w["embedding.weight"][tokens]
    T = len(tokens)

    def norm(v, s):
        return v / np.sqrt(np.mean(v**2) + 1e-5) * s

    def rot(vec, pos):  # half-split RoPE on one head vector (D = 4)
        out = vec.copy()
        for i in range(2):
            ang = pos * 10.0 ** (-2 * i / 4)
            a, b = vec[i], vec[i + 2]
            out[i], out[i + 2] = (
                a * math.cos(ang) - b * math.sin(ang),
                b * math.cos(ang) + a * math.sin(ang),
            )
        return out

    qkv = [
        w["block.0.attn.qkv.weight"] @ norm(x[t], w["block.0.attn.norm.scale"])
        + w["block.0.attn.qkv.bias"]
        for t in range(T)
    ]
    attn_out = []
    for t in range(T):
        heads = []
        for h in range(2):
            q = rot(qkv[t][h * 4 : h * 4 + 4], t)
            keys = [s for s in range(T) if t - 2 < s <= t]  # window 2 on layer 0
            scores = [q @ rot(qkv[s][8 + h * 4 : 12 + h * 4], s) / 2.0 for s in keys]
            z = np.exp(scores + [w["block.0.attn.sinks"][h]])
            z /= z.sum()
            heads.append(sum(z[j] * qkv[s][16 + h * 4 : 20 + h * 4] for j, s in enumerate(keys)))
        attn_out.append(
            w["block.0.attn.out.weight"] @ np.concatenate(heads) + w["block.0.attn.out.bias"]
        )
    x = x + np.array(attn_out)
    for t in range(T):
        h = norm(x[t], w["block.0.mlp.norm.scale"])
        e = int(
            np.argmax(w["block.0.mlp.gate.weight"] @ h + w["block.0.mlp.gate.bias"])
        )  # k = 1: gate 1
        u = w["block.0.mlp.mlp1_weight"][e] @ h + w["block.0.mlp.mlp1_bias"][e]
        x[t] = (
            x[t]
            + w["block.0.mlp.mlp2_weight"][e] @ oracle.swiglu(u, 7.0)
            + w["block.0.mlp.mlp2_bias"][e]
        )
    logits = np.array([w["unembedding.weight"] @ norm(x[t], w["norm.scale"]) for t in range(T)])
    np.testing.assert_allclose(oracle.forward(w, cfg, tokens), logits, rtol=1e-10, atol=1e-10)


def test_greedy_generate_extends_with_argmax():
    w = random_weights(TINY, seed=3)
    out = oracle.greedy_generate(w, TINY, [1, 2, 3], 3)
    assert len(out) == 3
    first = int(np.argmax(oracle.forward(w, TINY, np.array([1, 2, 3]))[-1]))
    assert out[0] == first


# ----------------------------------------------------------------------------
# sampling distributions


def test_temperature_zero_is_one_hot_argmax_lowest_index_on_ties():
    p = oracle.sampling_probabilities(np.array([[1.0, 3.0, 3.0, 0.0]]), temperature=0)
    assert p.tolist() == [[0, 1, 0, 0]]


def test_temperature_scales_logits():
    logits = np.array([0.0, 1.0, 2.0])
    p = oracle.sampling_probabilities(logits, temperature=2.0)
    np.testing.assert_allclose(p, oracle.softmax(logits / 2))
    # lower temperature is sharper
    assert (
        oracle.sampling_probabilities(logits, 0.5)[2]
        > oracle.sampling_probabilities(logits, 1.0)[2]
        > p[2]
    )


def test_top_k_keeps_k_and_renormalises():
    logits = np.log(np.array([0.1, 0.4, 0.2, 0.3]))
    p = oracle.sampling_probabilities(logits, top_k=2)
    np.testing.assert_allclose(p, [0, 4 / 7, 0, 3 / 7])


def test_top_p_keeps_the_crossing_token():
    logits = np.log(np.array([0.2, 0.5, 0.3]))
    np.testing.assert_allclose(oracle.sampling_probabilities(logits, top_p=0.6), [0, 0.625, 0.375])
    np.testing.assert_allclose(
        oracle.sampling_probabilities(logits, top_p=0.5), [0, 1, 0]
    )  # 0.5 !< 0.5
    np.testing.assert_allclose(oracle.sampling_probabilities(logits, top_p=0.3), [0, 1, 0])
    np.testing.assert_allclose(oracle.sampling_probabilities(logits, top_p=0.81), [0.2, 0.5, 0.3])


def test_top_k_then_top_p_uses_the_renormalised_mass():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # after top-k 2: (4/7, 3/7); 4/7 >= 0.55, so top-p keeps only the first
    np.testing.assert_allclose(
        oracle.sampling_probabilities(logits, top_k=2, top_p=0.55), [1, 0, 0, 0]
    )
    np.testing.assert_allclose(
        oracle.sampling_probabilities(logits, top_k=2, top_p=0.6), [4 / 7, 3 / 7, 0, 0]
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    temperature=st.floats(0.05, 5.0),
    top_k=st.integers(0, 12),
    top_p=st.floats(0.01, 1.0),
)
def test_sampling_probabilities_are_a_distribution_over_a_prefix(seed, temperature, top_k, top_p):
    logits = rng(seed).standard_normal((3, 10)) * 2
    p = oracle.sampling_probabilities(logits, temperature, top_k, top_p)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert np.all(p >= 0)
    for row, lg in zip(p, logits, strict=True):
        kept = np.flatnonzero(row)
        assert len(kept) >= 1 and (top_k == 0 or len(kept) <= top_k)
        # whatever is kept is the most probable tokens
        assert lg[kept].min() >= np.delete(lg, kept).max(initial=-np.inf)
        # kept tokens keep their ratios
        ratio = row[kept] / np.exp(lg[kept] / temperature)
        np.testing.assert_allclose(ratio, ratio[0])
