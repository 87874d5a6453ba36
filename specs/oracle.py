"""The reference: every Mind 4 component in NumPy float64, written to be read.

This module is the mathematics of ``/work/shared/REFERENCE.md`` and of the
docstrings in :mod:`mind4_core.protocols`, and nothing else: no caches, no
fusion, no dtype tricks. Every function takes and returns ``np.ndarray`` and
computes in float64. The conformance specs compare each backend to it with
``‖out − ref‖ / ‖ref‖ ≤ tolerance``.

Shape letters: ``B`` batch, ``T`` query tokens, ``S`` key positions, ``Hq``
query heads, ``Hkv`` key/value heads, ``D`` head dim, ``H`` hidden size, ``N``
tokens (flattened), ``E`` experts, ``k`` experts per token, ``I`` intermediate
size, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# ----------------------------------------------------------------------------
# small helpers


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x) / Σ exp(x)`` along ``axis`` (``-inf`` entries get probability 0)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ weightᵀ + bias``: ``x (..., in)``, ``weight (out, in)`` -> ``(..., out)``."""
    y = np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T
    return y if bias is None else y + np.asarray(bias, np.float64)


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``‖out − ref‖ / ‖ref‖`` (Frobenius norms, float64); how specs compare."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shape mismatch: got {out.shape}, reference has {ref.shape}")
    denom = np.linalg.norm(ref)
    diff = np.linalg.norm(out - ref)
    return float(diff / denom) if denom > 0 else float(diff)


# ----------------------------------------------------------------------------
# RMSNorm


def rmsnorm(x: np.ndarray, scale: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``x * rsqrt(mean(x²) + eps) * scale`` over the last axis."""
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * np.asarray(scale, np.float64)


# ----------------------------------------------------------------------------
# RoPE with YaRN scaling (half-split layout)


def rope_inv_freq(
    head_dim: int,
    theta: float,
    scaling_factor: float = 1.0,
    ntk_alpha: float = 1.0,
    ntk_beta: float = 32.0,
    initial_context_length: int = 4096,
) -> tuple[np.ndarray, float]:
    """Inverse frequencies ``(D/2,)`` and the YaRN concentration (a scalar).

    Plain RoPE (``scaling_factor == 1``): ``inv_freq_i = 1 / theta^(2i/D)``,
    concentration 1. YaRN (``f > 1``) blends, per frequency, the interpolated
    ``1/(f·freq)`` and the original ``1/freq`` with a linear ramp between the
    dimensions ``low`` and ``high`` that correspond to ``ntk_beta`` and
    ``ntk_alpha`` rotations over the original context ``L0``.
    """
    half = head_dim // 2
    i = np.arange(half, dtype=np.float64)
    freq = theta ** (2.0 * i / head_dim)  # (D/2,)
    if scaling_factor <= 1.0:
        return 1.0 / freq, 1.0

    f, L0 = scaling_factor, initial_context_length
    concentration = 0.1 * math.log(f) + 1.0
    low = half * math.log(L0 / (ntk_beta * 2 * math.pi)) / math.log(theta)
    high = half * math.log(L0 / (ntk_alpha * 2 * math.pi)) / math.log(theta)
    low, high = max(low, 0.0), min(high, head_dim - 1.0)
    if high == low:  # a degenerate ramp: avoid 0/0 the way transformers does
        high += 0.001
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)  # (D/2,) 0 -> original, 1 -> scaled
    inv_freq = (1.0 / (f * freq)) * ramp + (1.0 / freq) * (1.0 - ramp)
    return inv_freq, concentration


def rope_tables(
    positions: np.ndarray,
    head_dim: int,
    theta: float,
    scaling_factor: float = 1.0,
    ntk_alpha: float = 1.0,
    ntk_beta: float = 32.0,
    initial_context_length: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` of shape ``positions.shape + (D/2,)``, both times the concentration."""
    inv_freq, concentration = rope_inv_freq(
        head_dim, theta, scaling_factor, ntk_alpha, ntk_beta, initial_context_length
    )
    angles = np.asarray(positions, np.float64)[..., None] * inv_freq  # (..., D/2)
    return np.cos(angles) * concentration, np.sin(angles) * concentration


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate the pairs ``(x[i], x[i + D/2])`` of ``x (..., T, heads, D)``.

    ``cos, sin`` are ``(..., T, D/2)`` (one row per position, shared by heads).
    Half-split layout: the first half of the head dim pairs with the second
    half, not adjacent elements.
    """
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, heads, D/2) each
    cos, sin = cos[..., None, :], sin[..., None, :]  # broadcast over heads
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


# ----------------------------------------------------------------------------
# attention: causal GQA with per-head sinks, sliding window and cache offset


def attention_mask(
    T: int, S: int, offset: np.ndarray | int, window: int | None, batch: int = 1
) -> np.ndarray:
    """``(B, T, S)`` booleans: query ``t`` (position ``offset[b] + t``) sees key ``s``."""
    offset = np.broadcast_to(np.asarray(offset, np.int64), (batch,))
    q_pos = offset[:, None] + np.arange(T)  # (B, T)
    k_pos = np.arange(S)  # (S,)
    visible = k_pos[None, None, :] <= q_pos[:, :, None]  # causal
    if window:  # a positive int: the last `window` positions, the query's own included
        visible &= k_pos[None, None, :] > q_pos[:, :, None] - window
    return visible


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    sinks: np.ndarray,
    *,
    sm_scale: float,
    window: int | None,
    offset: np.ndarray | int,
) -> np.ndarray:
    """``q (B, T, Hq, D)``, ``k, v (B, S, Hkv, D)``, ``sinks (Hq,)`` -> ``(B, T, Hq, D)``."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = np.repeat(k, group, axis=2)  # (B, S, Hq, D): query head h reads kv head h // group
    v = np.repeat(v, group, axis=2)

    scores = np.einsum("bthd,bshd->bhts", q, k) * sm_scale  # (B, Hq, T, S)
    visible = attention_mask(T, S, offset, window, batch=B)[:, None]  # (B, 1, T, S)
    scores = np.where(visible, scores, -np.inf)

    # the sink: one extra logit per head joins every row's softmax, then is dropped
    sink_col = np.broadcast_to(np.asarray(sinks, np.float64)[None, :, None, None], (B, Hq, T, 1))
    probs = softmax(np.concatenate([scores, sink_col], axis=-1))[..., :-1]  # (B, Hq, T, S)
    return np.einsum("bhts,bshd->bthd", probs, v)


# ----------------------------------------------------------------------------
# mixture of experts


def route(router_logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, E)`` -> ``indices (N, k)`` (largest logit first), ``weights (N, k)``.

    The gate weights are a softmax over the k selected logits only.
    """
    logits = np.asarray(router_logits, np.float64)
    indices = np.argsort(-logits, axis=-1, kind="stable")[:, :k]  # (N, k)
    top = np.take_along_axis(logits, indices, axis=-1)  # (N, k)
    return indices, softmax(top, axis=-1)


def swiglu(h: np.ndarray, limit: float) -> np.ndarray:
    """Clamped SwiGLU of interleaved ``h (..., 2I)`` -> ``(..., I)``."""
    glu, lin = h[..., 0::2], h[..., 1::2]
    glu = np.minimum(glu, limit)
    lin = np.clip(lin, -limit, limit)
    return glu * sigmoid(1.702 * glu) * (lin + 1.0)


def experts(
    x: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    mlp1_weight: np.ndarray,
    mlp1_bias: np.ndarray,
    mlp2_weight: np.ndarray,
    mlp2_bias: np.ndarray,
    swiglu_limit: float,
) -> np.ndarray:
    """``Σ_k weights[:, k] · expert_{indices[:, k]}(x)``: ``x (N, H)`` -> ``(N, H)``.

    ``mlp1_weight (E, 2I, H)``, ``mlp1_bias (E, 2I)``, ``mlp2_weight (E, H, I)``,
    ``mlp2_bias (E, H)``.
    """
    x = np.asarray(x, np.float64)
    W1 = np.asarray(mlp1_weight, np.float64)[indices]  # (N, k, 2I, H)
    b1 = np.asarray(mlp1_bias, np.float64)[indices]  # (N, k, 2I)
    W2 = np.asarray(mlp2_weight, np.float64)[indices]  # (N, k, H, I)
    b2 = np.asarray(mlp2_bias, np.float64)[indices]  # (N, k, H)
    h = np.einsum("nkoh,nh->nko", W1, x) + b1  # (N, k, 2I)
    a = swiglu(h, swiglu_limit)  # (N, k, I)
    y = np.einsum("nkhi,nki->nkh", W2, a) + b2  # (N, k, H)
    return np.einsum("nk,nkh->nh", np.asarray(weights, np.float64), y)


def moe(x: np.ndarray, w: Mapping[str, np.ndarray], prefix: str, config) -> np.ndarray:
    """The MoE block on normalised ``x (N, H)``, weights under ``prefix`` (``block.n.mlp.``)."""
    router_logits = linear(x, w[prefix + "gate.weight"], w[prefix + "gate.bias"])  # (N, E)
    indices, gates = route(router_logits, config.experts_per_token)
    return experts(
        x,
        indices,
        gates,
        w[prefix + "mlp1_weight"],
        w[prefix + "mlp1_bias"],
        w[prefix + "mlp2_weight"],
        w[prefix + "mlp2_bias"],
        config.swiglu_limit,
    )


# ----------------------------------------------------------------------------
# MXFP4: FP4 E2M1 values in blocks of 32 sharing an E8M0 scale

FP4_VALUES = np.array(
    [+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
)
#: largest magnitude an FP4 E2M1 value holds (1.5 · 2²)
FP4_MAX = 6.0


def mxfp4_decode(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``blocks uint8 (..., rows, G, 16)``, ``scales uint8 (..., rows, G)`` -> ``(..., rows, 32·G)``.

    Each byte holds two codes, the low nibble being the even element; a block
    of 32 values is multiplied by ``2^(scale − 127)``.
    """
    blocks = np.asarray(blocks, np.uint8)
    low, high = blocks & 0x0F, blocks >> 4
    codes = np.stack([low, high], axis=-1).reshape(*blocks.shape[:-1], 32)  # (..., rows, G, 32)
    scale = np.exp2(np.asarray(scales, np.float64) - 127.0)[..., None]  # (..., rows, G, 1)
    values = FP4_VALUES[codes] * scale
    return values.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def mxfp4_encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``x (..., rows, cols)`` (cols a multiple of 32) to ``(blocks, scales)``.

    A block's scale is the smallest power of two that brings its largest
    magnitude within FP4's range (``amax / scale <= 6``, so nothing saturates);
    each value divided by it rounds to the nearest FP4 value, a tie going to
    the even code. An all-zero block gets the smallest scale (code 0).
    """
    x = np.asarray(x, np.float64)
    *lead, rows, cols = x.shape
    if cols % 32:
        raise ValueError(f"MXFP4 needs the last dimension to be a multiple of 32, got {cols}")
    xb = x.reshape(*lead, rows, cols // 32, 32)  # (..., rows, G, 32)

    amax = np.max(np.abs(xb), axis=-1)  # (..., rows, G)
    with np.errstate(divide="ignore"):
        exponent = np.ceil(np.log2(amax / FP4_MAX))
    exponent = np.clip(np.where(amax > 0, exponent, -127), -127, 127)
    scales = (exponent + 127).astype(np.uint8)

    scaled = xb / np.exp2(exponent)[..., None]  # (..., rows, G, 32)
    magnitude = np.abs(scaled)[..., None]  # (..., rows, G, 32, 1)
    midpoints = (FP4_VALUES[0:7] + FP4_VALUES[1:8]) / 2  # between neighbouring magnitudes
    # round to nearest; a tie goes to the even code (the even mantissa)
    tie_goes_up = np.arange(7) % 2 == 1
    code = np.sum((magnitude > midpoints) | ((magnitude == midpoints) & tie_goes_up), axis=-1)
    code = code + 8 * ((scaled < 0) & (code > 0))  # sign bit; zeros stay +0
    codes = code.astype(np.uint8).reshape(*lead, rows, cols // 32, 16, 2)
    blocks = codes[..., 0] | (codes[..., 1] << 4)  # low nibble: even element
    return blocks.astype(np.uint8), scales


# ----------------------------------------------------------------------------
# the whole model


def forward(
    weights: Mapping[str, np.ndarray], config, tokens: np.ndarray, trace: dict | None = None
) -> np.ndarray:
    """Logits ``(B, T, V)`` of ``tokens (B, T)`` (or ``(T,)`` -> ``(T, V)``), from position 0.

    ``weights`` maps canonical gpt-oss tensor names to float arrays (MXFP4
    experts already decoded, bf16 already widened); ``config`` is a
    :class:`mind4_core.config.ModelConfig`. A ``trace`` dict, if given,
    receives ``"router_logits"``: one ``(B, T, E)`` array per layer.
    """
    tokens = np.asarray(tokens, np.int64)
    if tokens.ndim == 1:
        return forward(weights, config, tokens[None], trace)[0]
    w = weights
    B, T = tokens.shape
    Hq, Hkv, D = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    eps = config.rms_norm_eps

    cos, sin = rope_tables(
        np.arange(T),
        D,
        config.rope_theta,
        config.rope_scaling_factor,
        config.rope_ntk_alpha,
        config.rope_ntk_beta,
        config.initial_context_length,
    )  # (T, D/2) each

    x = np.asarray(w["embedding.weight"], np.float64)[tokens]  # (B, T, H)
    for n in range(config.num_hidden_layers):
        a = f"block.{n}.attn."
        h = rmsnorm(x, w[a + "norm.scale"], eps)
        qkv = linear(h, w[a + "qkv.weight"], w[a + "qkv.bias"])  # (B, T, (Hq + 2Hkv)·D)
        q = qkv[..., : Hq * D].reshape(B, T, Hq, D)
        k = qkv[..., Hq * D : (Hq + Hkv) * D].reshape(B, T, Hkv, D)
        v = qkv[..., (Hq + Hkv) * D :].reshape(B, T, Hkv, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = attention(
            q,
            k,
            v,
            w[a + "sinks"],
            sm_scale=1.0 / math.sqrt(D),
            window=config.window_of_layer(n),
            offset=0,
        )  # (B, T, Hq, D)
        x = x + linear(o.reshape(B, T, Hq * D), w[a + "out.weight"], w[a + "out.bias"])

        m = f"block.{n}.mlp."
        h = rmsnorm(x, w[m + "norm.scale"], eps).reshape(B * T, -1)  # (N, H)
        x = x + moe(h, w, m, config).reshape(B, T, -1)
        if trace is not None:
            router_logits = linear(h, w[m + "gate.weight"], w[m + "gate.bias"])
            trace.setdefault("router_logits", []).append(router_logits.reshape(B, T, -1))

    x = rmsnorm(x, w["norm.scale"], eps)
    return linear(x, w["unembedding.weight"])  # (B, T, V)


def greedy_generate(
    weights: Mapping[str, np.ndarray], config, prompt: list[int], max_new_tokens: int
) -> list[int]:
    """Tokens chosen by argmax, one full forward pass per new token."""
    tokens = list(prompt)
    for _ in range(max_new_tokens):
        logits = forward(weights, config, np.array(tokens))[-1]  # (V,)
        tokens.append(int(np.argmax(logits)))
    return tokens[len(prompt) :]


# ----------------------------------------------------------------------------
# sampling: the distribution a sampler must draw from


def sampling_probabilities(
    logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> np.ndarray:
    """The distribution ``(B, V)`` (or ``(V,)``) that sampling from ``logits`` follows.

    - temperature 0: one-hot at the argmax (the lowest index on ties);
    - else ``p = softmax(logits / temperature)``;
    - top-k (``k > 0``): keep the k most probable tokens (lower index first on ties),
      and renormalise;
    - top-p (``< 1``): in descending order of probability, keep each token whose
      preceding cumulative mass is ``< top_p`` (the token that crosses ``top_p``
      is kept, so at least one is), and renormalise.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim == 1:
        return sampling_probabilities(logits[None], temperature, top_k, top_p)[0]
    B, V = logits.shape
    if temperature == 0:
        return np.eye(V)[np.argmax(logits, axis=-1)]

    p = softmax(logits / temperature)  # (B, V)
    order = np.argsort(-p, axis=-1, kind="stable")  # most probable first
    rank = np.argsort(order, axis=-1)  # rank[b, v]: place of token v in that order
    keep = np.ones_like(p, dtype=bool)
    if top_k > 0:
        keep &= rank < top_k
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        p_sorted = np.take_along_axis(p, order, axis=-1)
        mass = np.cumsum(p_sorted, axis=-1)
        mass_before = np.concatenate([np.zeros((B, 1)), mass[:, :-1]], axis=-1)  # (B, V) sorted
        keep_sorted = mass_before < top_p
        keep &= np.take_along_axis(keep_sorted, rank, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    return p
