"""Flash attention for gpt-oss: causal GQA with per-head sinks, a sliding window
and a per-row cache offset, for prefill and for decode (split over the keys).

The mathematics is :func:`mind4_specs.oracle.attention`. How the work is cut:

- one program owns one key/value head of one batch row and a block of
  ``BLOCK_M`` *rows*, where a row is a (query token, query head of that kv
  group) pair: row ``r`` is token ``r // G``, head ``kv_head * G + r % G``.
  K and V are read once for all ``G = Hq / Hkv`` query heads that share them,
  so GQA never materialises repeated K/V;
- the program walks key blocks ``[lo, hi)`` where ``hi`` is the last visible
  position + 1 (causal) and ``lo`` the window start (sliding layers), with an
  online softmax in base 2 (scores pre-multiplied by ``sm_scale · log2 e``);
- the sink is one more logit per query head: the running maximum starts at it
  and the running sum at ``1`` (= ``exp2(sink − sink)``), so it joins the
  softmax without ever contributing to the output;
- decode (few rows, long context) splits the keys across ``NUM_SPLITS``
  programs that write partial ``(max, sum, acc)``; a second kernel merges them
  with the sink. Key positions are always masked against each row's own
  offset, so a split with no visible key writes a neutral partial.

Offsets live on the device (``int32 (B,)``) so a CUDA graph can replay the
same launch at a growing offset.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
#: keys per decode split are a multiple of this
SPLIT_GRANULE = 64


@triton.jit
def _attn_fwd_kernel(
    Q,
    K,
    V,
    Sinks,
    Offsets,
    Out,  # Out: (B, T, Hq, D), or unused when NUM_SPLITS > 1
    PartM,
    PartL,
    PartAcc,  # split partials: (B*Hkv, num_m, NUM_SPLITS, BLOCK_M[, BLOCK_D]) fp32
    stride_qb,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_ob,
    stride_ot,
    stride_oh,
    T,
    S,
    Hkv,
    qk_scale,
    window,
    split_len,
    G: tl.constexpr,
    D: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_bh = tl.program_id(0)  # b * Hkv + kv head
    pid_m = tl.program_id(1)  # block of rows
    pid_s = tl.program_id(2)  # key split (0 when NUM_SPLITS == 1)
    b = pid_bh // Hkv
    kvh = pid_bh % Hkv

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    t = rows // G  # query token of each row
    head = kvh * G + rows % G  # query head of each row
    row_ok = t < T
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D

    offset = tl.load(Offsets + b)
    pos = offset + t  # (BLOCK_M,) absolute query positions

    # keys this program may need: [lo, hi)
    first_t = (pid_m * BLOCK_M) // G
    last_t = tl.minimum(((pid_m + 1) * BLOCK_M - 1) // G, T - 1)
    hi = tl.minimum(offset + last_t + 1, S)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(offset + first_t - window + 1, 0)
    if NUM_SPLITS > 1:
        lo = tl.maximum(lo, pid_s * split_len)
        hi = tl.minimum(hi, (pid_s + 1) * split_len)
    lo = (lo // BLOCK_N) * BLOCK_N  # aligned start; keys below the window are masked

    q_ptrs = Q + b * stride_qb + t[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)

    if NUM_SPLITS == 1:
        # the sink starts the running softmax: max = sink, sum = exp2(sink - sink) = 1
        m_i = tl.load(Sinks + head, mask=row_ok, other=0.0).to(tl.float32) * 1.4426950408889634
        l_i = tl.full((BLOCK_M,), 1.0, tl.float32)
    else:
        m_i = tl.full((BLOCK_M,), -1.0e30, tl.float32)  # finite: exp2(-inf - -inf) would be NaN
        l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)

    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    for start in range(lo, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions
        col_ok = cols < hi
        k = tl.load(
            k_base + cols[:, None] * stride_ks + d[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        s = (
            tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        )  # (BLOCK_M, BLOCK_N), log2 units
        visible = col_ok[None, :] & (cols[None, :] <= pos[:, None])
        if HAS_WINDOW:
            visible = visible & (cols[None, :] > pos[:, None] - window)
        s = tl.where(visible, s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])  # masked entries: exp2(-inf) = 0
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_base + cols[:, None] * stride_vs + d[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    if NUM_SPLITS == 1:
        out = acc / l_i[:, None]
        o_ptrs = (
            Out + b * stride_ob + t[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :]
        )
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    else:
        num_m = tl.num_programs(1)
        part = ((pid_bh * num_m + pid_m) * NUM_SPLITS + pid_s) * BLOCK_M + tl.arange(0, BLOCK_M)
        tl.store(PartM + part, m_i)
        tl.store(PartL + part, l_i)
        tl.store(PartAcc + part[:, None] * BLOCK_D + d[None, :], acc)


@triton.jit
def _attn_combine_kernel(
    PartM,
    PartL,
    PartAcc,
    Sinks,
    Out,
    stride_ob,
    stride_ot,
    stride_oh,
    T,
    Hkv,
    G: tl.constexpr,
    D: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
):
    """Merge the split partials of one (row block, kv head) with the sink."""
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = pid_bh // Hkv
    kvh = pid_bh % Hkv
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    t = rows // G
    head = kvh * G + rows % G
    row_ok = t < T
    d = tl.arange(0, BLOCK_D)

    m = tl.load(Sinks + head, mask=row_ok, other=0.0).to(tl.float32) * 1.4426950408889634
    l_sum = tl.full((BLOCK_M,), 1.0, tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    base = (pid_bh * tl.num_programs(1) + pid_m) * NUM_SPLITS
    for s in range(NUM_SPLITS):
        part = (base + s) * BLOCK_M + tl.arange(0, BLOCK_M)
        m_s = tl.load(PartM + part)
        l_s = tl.load(PartL + part)
        acc_s = tl.load(PartAcc + part[:, None] * BLOCK_D + d[None, :])
        m_new = tl.maximum(m, m_s)
        alpha = tl.exp2(m - m_new)
        beta = tl.exp2(m_s - m_new)
        l_sum = l_sum * alpha + l_s * beta
        acc = acc * alpha[:, None] + acc_s * beta[:, None]
        m = m_new

    out = acc / l_sum[:, None]
    o_ptrs = Out + b * stride_ob + t[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & (d < D)[None, :])


def dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs multiply in full float32 (``ieee``), not tf32: float32 is the
    precision people choose to compare against a reference."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def choose_splits(B: int, Hkv: int, num_m: int, S: int, device: torch.device) -> int:
    """Key splits for a launch of ``B*Hkv*num_m`` programs over ``S`` keys: enough
    programs to fill the GPU twice, each with at least 256 keys."""
    programs = B * Hkv * num_m
    want = max(1, (2 * _num_sms(device)) // programs)
    by_keys = max(1, S // 256)
    return int(min(want, by_keys, 64))


def offsets_tensor(offset, B: int, device: torch.device) -> torch.Tensor:
    """``offset`` (an int, a sequence, or a tensor) as a device ``int32 (B,)``."""
    if isinstance(offset, torch.Tensor):
        off = offset.to(device=device, dtype=torch.int32)
    else:
        off = torch.as_tensor(offset, dtype=torch.int32).to(device)
    if off.ndim == 0:
        off = off.expand(B)
    return off.contiguous()


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sinks: torch.Tensor,
    *,
    sm_scale: float,
    window: int | None,
    offset,
    num_splits: int | None = None,
    out: torch.Tensor | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """``q (B, T, Hq, D)``, ``k, v (B, S, Hkv, D)`` (any strides with a unit last
    stride), ``sinks (Hq,)`` -> ``(B, T, Hq, D)``; see the module docstring.

    ``offset`` is an int, a host sequence or a device tensor of shape ``(B,)``.
    ``num_splits`` forces the number of key splits (``None``: chosen for decode
    shapes, 1 for prefill)."""
    B, T, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    G = Hq // Hkv
    for x in (q, k, v):
        assert x.stride(-1) == 1, "attention needs a unit stride on the head dim"
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    offsets = offsets_tensor(offset, B, q.device)

    rows = T * G
    BLOCK_D = max(16, triton.next_power_of_2(D))
    if block_m is None:
        block_m = 128 if rows >= 128 else max(16, triton.next_power_of_2(rows))
        block_m = min(block_m, 64) if BLOCK_D > 64 else block_m
    BLOCK_M = block_m
    BLOCK_N = block_n or 64
    num_m = triton.cdiv(rows, BLOCK_M)
    has_window = window is not None and window > 0
    if num_splits is None:
        # a windowed layer sees at most window + T - 1 keys however long the cache: split
        # by those (a 128-key window needs no split, hence no combine launch)
        keys = min(S, window + T) if has_window else S
        num_splits = choose_splits(B, Hkv, num_m, keys, q.device) if rows <= BLOCK_M else 1
    split_len = triton.cdiv(triton.cdiv(S, num_splits), SPLIT_GRANULE) * SPLIT_GRANULE
    split_len = max(split_len, BLOCK_N)
    qk_scale = float(sm_scale) * LOG2E
    common = dict(G=G, D=D, BLOCK_D=BLOCK_D, BLOCK_M=BLOCK_M)

    if num_splits > 1:
        shape = (B * Hkv, num_m, num_splits, BLOCK_M)
        part_m = torch.empty(shape, device=q.device, dtype=torch.float32)
        part_l = torch.empty(shape, device=q.device, dtype=torch.float32)
        part_acc = torch.empty((*shape, BLOCK_D), device=q.device, dtype=torch.float32)
    else:
        part_m = part_l = part_acc = out  # unused
    grid = (B * Hkv, num_m, num_splits)
    _attn_fwd_kernel[grid](
        q,
        k,
        v,
        sinks,
        offsets,
        out,
        part_m,
        part_l,
        part_acc,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        T,
        S,
        Hkv,
        qk_scale,
        int(window or 0),
        split_len,
        BLOCK_N=BLOCK_N,
        NUM_SPLITS=num_splits,
        HAS_WINDOW=has_window,
        DOT_PRECISION=dot_precision(q.dtype),
        num_warps=4 if BLOCK_M <= 64 else 8,
        **common,
    )
    if num_splits > 1:
        _attn_combine_kernel[(B * Hkv, num_m)](
            part_m,
            part_l,
            part_acc,
            sinks,
            out,
            out.stride(0),
            out.stride(1),
            out.stride(2),
            T,
            Hkv,
            NUM_SPLITS=num_splits,
            num_warps=4,
            **common,
        )
    return out


def default_sm_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
