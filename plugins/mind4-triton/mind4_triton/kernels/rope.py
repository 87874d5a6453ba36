"""RoPE with YaRN scaling, fused with the split of the QKV projection and the
KV-cache write.

The ``qkv`` linear gives one row of ``(Hq + 2·Hkv)·D`` values per token. One
program per token reads that row once and

- rotates the query heads (half-split pairs ``(x[i], x[i + D/2])``) into ``q``,
- rotates the key heads and stores them in the key cache at the token's
  absolute position ``offset[b] + t``,
- copies the value heads into the value cache at the same position.

``cos``/``sin`` come from a table built once in float64 (the oracle's
:func:`rope_tables`, concentration included) and stored in float32: reading
two rows of ``D/2`` floats is cheaper and more exact than evaluating
trigonometry in the kernel.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl


def rope_table(config, max_positions: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` float32 ``(max_positions, D/2)`` for a :class:`ModelConfig`."""
    from mind4_specs.oracle import rope_tables

    cos, sin = rope_tables(
        np.arange(max_positions),
        config.head_dim,
        config.rope_theta,
        config.rope_scaling_factor,
        config.rope_ntk_alpha,
        config.rope_ntk_beta,
        config.initial_context_length,
    )
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)  # noqa: E731
    return as_t(cos), as_t(sin)


@triton.jit
def _rotate_heads(x_ptrs, cos, sin, ok, HALF: tl.constexpr):
    """Load ``(heads, D)`` at ``x_ptrs`` (pointers to each head's first half) and
    return both rotated halves in float32."""
    x1 = tl.load(x_ptrs, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptrs + HALF, mask=ok, other=0.0).to(tl.float32)
    return x1 * cos - x2 * sin, x2 * cos + x1 * sin


@triton.jit
def _rope_qkv_kernel(
    QKV,
    Cos,
    Sin,
    Offsets,
    Qout,
    Kc,
    Vc,
    stride_qkv,
    stride_qt,  # qkv row stride; Qout token stride (heads contiguous inside)
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    T,
    Hq,
    Hkv,
    D: tl.constexpr,
    HALF: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HKV: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)  # b * T + t
    b = row // T
    t = row % T
    pos = tl.load(Offsets + b) + t
    i = tl.arange(0, BLOCK_HALF)
    i_ok = i < HALF
    cos = tl.load(Cos + pos * HALF + i, mask=i_ok, other=0.0)[None, :]  # (1, D/2)
    sin = tl.load(Sin + pos * HALF + i, mask=i_ok, other=0.0)[None, :]
    src = QKV + row.to(tl.int64) * stride_qkv

    # queries: (Hq, D) -> rotated into Qout[b, t]
    hq = tl.arange(0, BLOCK_HQ)
    ok = (hq < Hq)[:, None] & i_ok[None, :]
    q1, q2 = _rotate_heads(src + hq[:, None] * D + i[None, :], cos, sin, ok, HALF)
    dst = Qout + row.to(tl.int64) * stride_qt + hq[:, None] * D + i[None, :]
    tl.store(dst, q1.to(Qout.dtype.element_ty), mask=ok)
    tl.store(dst + HALF, q2.to(Qout.dtype.element_ty), mask=ok)

    # keys: (Hkv, D) -> rotated into the cache at position pos
    hk = tl.arange(0, BLOCK_HKV)
    ok = (hk < Hkv)[:, None] & i_ok[None, :]
    k1, k2 = _rotate_heads(src + (Hq + hk[:, None]) * D + i[None, :], cos, sin, ok, HALF)
    dst = Kc + b * stride_kb + pos * stride_ks + hk[:, None] * stride_kh + i[None, :]
    tl.store(dst, k1.to(Kc.dtype.element_ty), mask=ok)
    tl.store(dst + HALF, k2.to(Kc.dtype.element_ty), mask=ok)

    # values: copied as they are
    d = tl.arange(0, BLOCK_D)
    ok = (hk < Hkv)[:, None] & (d < D)[None, :]
    v = tl.load(src + (Hq + Hkv + hk[:, None]) * D + d[None, :], mask=ok, other=0.0)
    dst = Vc + b * stride_vb + pos * stride_vs + hk[:, None] * stride_vh + d[None, :]
    tl.store(dst, v.to(Vc.dtype.element_ty), mask=ok)


def rope_qkv(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    offsets: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    n_heads: int,
    n_kv_heads: int,
    q_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Split ``qkv (B, T, (Hq+2Hkv)·D)``, rotate q and k, write k and v into the
    caches ``(B, S, Hkv, D)`` (any strides, unit last) at ``offsets (B,) int32 + t``.
    Returns the rotated queries ``(B, T, Hq, D)``."""
    B, T, width = qkv.shape
    D = width // (n_heads + 2 * n_kv_heads)
    qkv2 = qkv.reshape(B * T, width)
    assert qkv2.stride(1) == 1
    if q_out is None:
        q_out = torch.empty((B, T, n_heads, D), device=qkv.device, dtype=qkv.dtype)
    half = D // 2
    _rope_qkv_kernel[(B * T,)](
        qkv2,
        cos,
        sin,
        offsets,
        q_out,
        k_cache,
        v_cache,
        qkv2.stride(0),
        n_heads * D,
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        T,
        n_heads,
        n_kv_heads,
        D=D,
        HALF=half,
        BLOCK_HALF=triton.next_power_of_2(half),
        BLOCK_HQ=triton.next_power_of_2(n_heads),
        BLOCK_HKV=triton.next_power_of_2(n_kv_heads),
        BLOCK_D=triton.next_power_of_2(D),
        num_warps=4,
    )
    return q_out
