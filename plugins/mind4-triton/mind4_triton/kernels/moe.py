"""Fused mixture-of-experts: routing, token grouping, MXFP4 expert matmuls.

The mathematics is the oracle's :func:`route` and :func:`experts`. Five steps,
each a kernel, none of which needs the host (so decode can be a CUDA graph):

1. **route** — router logits (``x @ gateᵀ + bias``, fused here, or given),
   the top-k logits in descending order (lowest index first on ties) and a
   softmax over those k only -> ``indices (N, k) int32``, ``weights (N, k)``.
2. **align** — a counting sort of the ``N·k`` (token, slot) *pairs* by expert,
   each expert's list padded to a multiple of ``BLOCK_M``: ``sorted_pairs``
   (padding holds the sentinel ``N·k``), ``block_expert`` (the expert of each
   block of ``BLOCK_M`` sorted rows) and ``num_blocks``. Launch sizes depend
   only on ``N``; blocks past ``num_blocks`` exit at once.
3. **mlp1 + SwiGLU** — per block of rows of one expert and a tile of the
   intermediate size: gather the token rows of ``x``, multiply by the expert's
   ``mlp1`` rows ``2j`` (glu) and ``2j+1`` (linear) **decoding MXFP4 in
   registers** (the packed weight is what crosses memory), add the bias and
   apply the clamped SwiGLU -> ``act`` in sorted-row order.
4. **mlp2** — ``act @ mlp2[e]ᵀ + b2[e]``, times the pair's gate weight,
   scattered to ``y[pair]`` (float32).
5. **combine** — ``Σ_j y[n·k + j]`` (the runtime fuses this into the next
   residual add + RMSNorm, :func:`~mind4_triton.kernels.rmsnorm.add_rows_rmsnorm`).

Expert weights are either dense ``(E, rows, cols)`` tensors or
:class:`MXFP4Weight` ``(blocks uint8 (E, rows, cols/32, 16), scales uint8
(E, rows, cols/32))`` exactly as stored in a checkpoint.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import triton
import triton.language as tl

from .attention import dot_precision
from .gemv import GemvConfig, gemv


class MXFP4Weight(NamedTuple):
    """An expert weight kept packed: ``blocks (E, rows, cols/32, 16)`` uint8,
    ``scales (E, rows, cols/32)`` uint8 (E8M0, bias 127). ``small_scales``: every scale
    is at most 2 (E8M0 ``<= 128``, true of any trained checkpoint), which lets the tile
    kernels fold two multiplies of the decode into one (:func:`_mxfp4_words_tile`);
    :meth:`of` finds out."""

    blocks: torch.Tensor
    scales: torch.Tensor
    small_scales: bool = False

    @classmethod
    def of(cls, blocks: torch.Tensor, scales: torch.Tensor) -> MXFP4Weight:
        """The weight with ``small_scales`` measured (one read of the scales)."""
        return cls(blocks, scales, bool(scales.numel()) and int(scales.max()) <= 128)

    @property
    def shape(self) -> tuple[int, int, int]:
        E, rows, groups, _ = self.blocks.shape
        return (E, rows, groups * 32)


# ----------------------------------------------------------------------------- 1. routing


@triton.jit
def _topk_softmax(logits, cols, K: tl.constexpr, BLOCK_K: tl.constexpr):
    """``logits (R, BLOCK_E)`` float32 (-inf where no expert) -> the top-``K``
    indices ``(R, BLOCK_K)`` int32 in descending order (lowest index on ties)
    and their softmax weights (0 in the padding columns)."""
    slot = tl.arange(0, BLOCK_K)[None, :]
    indices = tl.zeros((logits.shape[0], BLOCK_K), tl.int32)
    top = tl.full((logits.shape[0], BLOCK_K), float("-inf"), tl.float32)
    for j in tl.static_range(K):
        best = tl.max(logits, axis=1)  # (R,)
        at = tl.min(tl.where(logits == best[:, None], cols[None, :], 1 << 30), axis=1)
        indices = tl.where(slot == j, at[:, None], indices)
        top = tl.where(slot == j, best[:, None], top)
        logits = tl.where(cols[None, :] == at[:, None], float("-inf"), logits)
    e = tl.exp(top - tl.max(top, axis=1)[:, None])
    return indices, e / tl.sum(e, axis=1)[:, None]


@triton.jit
def _route_kernel(
    Logits,
    Indices,
    Weights,
    N,
    E,
    stride_l,
    K: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_E)
    ok = (rows < N)[:, None] & (cols < E)[None, :]
    logits = tl.load(
        Logits + rows[:, None] * stride_l + cols[None, :], mask=ok, other=float("-inf")
    )
    indices, weights = _topk_softmax(logits.to(tl.float32), cols, K, BLOCK_K)
    out = rows[:, None] * K + tl.arange(0, BLOCK_K)[None, :]
    out_ok = (rows < N)[:, None] & (tl.arange(0, BLOCK_K) < K)[None, :]
    tl.store(Indices + out, indices, mask=out_ok)
    tl.store(Weights + out, weights, mask=out_ok)


@triton.jit
def _gate_route_kernel(
    X,
    Wg,
    Bg,
    Indices,
    Weights,
    N,
    E,
    H,
    stride_x,
    stride_w,
    K: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_H: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Router logits ``x @ gateᵀ + bias`` for ``BLOCK_R`` tokens, then top-k + softmax."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_E)
    hh = tl.arange(0, BLOCK_H)
    acc = tl.zeros((BLOCK_R, BLOCK_E), tl.float32)
    for h0 in range(0, H, BLOCK_H):
        h_ok = (h0 + hh) < H
        x = tl.load(
            X + rows[:, None].to(tl.int64) * stride_x + (h0 + hh)[None, :],
            mask=(rows < N)[:, None] & h_ok[None, :],
            other=0.0,
        )
        w = tl.load(
            Wg + cols[:, None] * stride_w + (h0 + hh)[None, :],
            mask=(cols < E)[:, None] & h_ok[None, :],
            other=0.0,
        )
        acc = tl.dot(x, tl.trans(w), acc, input_precision=DOT_PRECISION)
    acc += tl.load(Bg + cols, mask=cols < E, other=0.0).to(tl.float32)[None, :]
    acc = tl.where((cols < E)[None, :], acc, float("-inf"))
    indices, weights = _topk_softmax(acc, cols, K, BLOCK_K)
    out = rows[:, None] * K + tl.arange(0, BLOCK_K)[None, :]
    out_ok = (rows < N)[:, None] & (tl.arange(0, BLOCK_K) < K)[None, :]
    tl.store(Indices + out, indices, mask=out_ok)
    tl.store(Weights + out, weights, mask=out_ok)


def route(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``router_logits (N, E)`` -> ``indices (N, k) int32``, ``weights (N, k) float32``."""
    N, E = router_logits.shape
    indices = torch.empty((N, k), device=router_logits.device, dtype=torch.int32)
    weights = torch.empty((N, k), device=router_logits.device, dtype=torch.float32)
    BLOCK_R = 16
    _route_kernel[(triton.cdiv(N, BLOCK_R),)](
        router_logits,
        indices,
        weights,
        N,
        E,
        router_logits.stride(0),
        K=k,
        BLOCK_R=BLOCK_R,
        BLOCK_E=triton.next_power_of_2(E),
        BLOCK_K=triton.next_power_of_2(k),
    )
    return indices, weights


def gate_route(
    x: torch.Tensor,
    gate_weight: torch.Tensor,
    gate_bias: torch.Tensor,
    k: int,
    indices: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits of ``x (N, H)`` with ``gate (E, H)`` + bias, then :func:`route`."""
    N, H = x.shape
    E = gate_weight.shape[0]
    if N == 1 and indices is None and weights is None:
        # one token: the fused kernel would be one program walking all of H (~17 µs on an
        # H100); a GEMV over E programs, then the top-k, take two short launches
        logits = gemv(x, gate_weight, gate_bias, GemvConfig(1, 512, 4), out_dtype=torch.float32)
        return route(logits, k)
    if indices is None:
        indices = torch.empty((N, k), device=x.device, dtype=torch.int32)
    if weights is None:
        weights = torch.empty((N, k), device=x.device, dtype=torch.float32)
    # enough programs to fill the GPU: at N = 2048, 64-row tiles gave 32 programs (18 µs)
    BLOCK_R = 16 if N <= 4096 else 64
    _gate_route_kernel[(triton.cdiv(N, BLOCK_R),)](
        x,
        gate_weight,
        gate_bias,
        indices,
        weights,
        N,
        E,
        H,
        x.stride(0),
        gate_weight.stride(0),
        K=k,
        BLOCK_R=BLOCK_R,
        BLOCK_E=max(16, triton.next_power_of_2(E)),
        BLOCK_K=triton.next_power_of_2(k),
        BLOCK_H=256,  # each program walks H: few long steps (64-wide: 45 steps, 18 µs)
        DOT_PRECISION=dot_precision(x.dtype),
        num_warps=4,
    )
    return indices, weights


# ----------------------------------------------------------------------------- 2. align


def align_sizes(n_pairs: int, n_experts: int, block_m: int) -> tuple[int, int]:
    """``(max_blocks, max_padded_rows)`` for ``n_pairs`` pairs: each non-empty
    expert pads its list by fewer than ``block_m`` rows."""
    max_blocks = triton.cdiv(n_pairs, block_m) + min(n_experts, n_pairs)
    return max_blocks, max_blocks * block_m


@triton.jit
def _align_kernel(
    Indices,
    SortedPairs,
    BlockExpert,
    NumBlocks,
    NK,
    MAX_BLOCKS,
    MAX_PADDED,
    BLOCK_M: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    """One program: a counting sort of the pairs by expert (stable in pair order)."""
    experts = tl.arange(0, BLOCK_E)
    lane = tl.arange(0, BLOCK)

    counts = tl.zeros((BLOCK_E,), tl.int32)
    for s in range(0, NK, BLOCK):
        e = tl.load(Indices + s + lane, mask=s + lane < NK, other=-1)
        counts += tl.sum((e[:, None] == experts[None, :]).to(tl.int32), axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    tl.store(NumBlocks, tl.sum(padded, axis=0) // BLOCK_M)

    # block b belongs to the expert whose padded range holds row b * BLOCK_M
    for s in range(0, MAX_BLOCKS, BLOCK):
        blk = s + lane
        owner = tl.sum((ends[None, :] <= (blk * BLOCK_M)[:, None]).to(tl.int32), axis=1)
        tl.store(BlockExpert + blk, owner, mask=blk < MAX_BLOCKS)

    for s in range(0, MAX_PADDED, BLOCK):
        tl.store(
            SortedPairs + s + lane, tl.full((BLOCK,), 0, tl.int32) + NK, mask=s + lane < MAX_PADDED
        )
    tl.debug_barrier()  # the padding fill lands before the scatter below

    seen = tl.zeros((BLOCK_E,), tl.int32)
    for s in range(0, NK, BLOCK):
        pair = s + lane
        e = tl.load(Indices + pair, mask=pair < NK, other=-1)
        one_hot = (e[:, None] == experts[None, :]).to(tl.int32)  # (BLOCK, BLOCK_E)
        rank = (
            tl.cumsum(one_hot, axis=0) - one_hot
        )  # earlier pairs of the same expert in this chunk
        dest = tl.sum(one_hot * (starts + seen)[None, :] + one_hot * rank, axis=1)
        tl.store(SortedPairs + dest, pair, mask=pair < NK)
        seen += tl.sum(one_hot, axis=0)


class Alignment(NamedTuple):
    sorted_pairs: torch.Tensor  # (max_padded,) int32, sentinel N·k in padding
    block_expert: torch.Tensor  # (max_blocks,) int32
    num_blocks: torch.Tensor  # (1,) int32
    block_m: int


@triton.jit
def _align_count_kernel(Indices, ChunkCounts, NK, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr):
    """Wide align, phase 1: per chunk of ``BLOCK`` pairs, how many go to each expert."""
    pid = tl.program_id(0)
    pair = pid * BLOCK + tl.arange(0, BLOCK)
    experts = tl.arange(0, BLOCK_E)
    e = tl.load(Indices + pair, mask=pair < NK, other=-1)
    counts = tl.sum((e[:, None] == experts[None, :]).to(tl.int32), axis=0)
    tl.store(ChunkCounts + pid * BLOCK_E + experts, counts)


@triton.jit
def _align_plan_kernel(
    ChunkCounts,
    ChunkBase,
    SortedPairs,
    BlockExpert,
    NumBlocks,
    NK,
    NUM_CHUNKS,
    MAX_BLOCKS,
    MAX_PADDED,
    BLOCK_M: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Wide align, phase 2 (one program): each expert's padded range, the blocks'
    experts, the sentinel fill, and where each chunk's pairs of each expert start."""
    experts = tl.arange(0, BLOCK_E)
    chunks = tl.arange(0, BLOCK_C)
    per_chunk = tl.load(
        ChunkCounts + chunks[:, None] * BLOCK_E + experts[None, :],
        mask=(chunks < NUM_CHUNKS)[:, None],
        other=0,
    )  # (BLOCK_C, BLOCK_E)
    counts = tl.sum(per_chunk, axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    tl.store(NumBlocks, tl.sum(padded, axis=0) // BLOCK_M)
    before = tl.cumsum(per_chunk, axis=0) - per_chunk  # this expert's pairs in earlier chunks
    tl.store(
        ChunkBase + chunks[:, None] * BLOCK_E + experts[None, :],
        starts[None, :] + before,
        mask=(chunks < NUM_CHUNKS)[:, None],
    )
    lane = tl.arange(0, BLOCK)
    for s in range(0, MAX_BLOCKS, BLOCK):
        blk = s + lane
        owner = tl.sum((ends[None, :] <= (blk * BLOCK_M)[:, None]).to(tl.int32), axis=1)
        tl.store(BlockExpert + blk, owner, mask=blk < MAX_BLOCKS)
    for s in range(0, MAX_PADDED, BLOCK):
        tl.store(
            SortedPairs + s + lane, tl.full((BLOCK,), 0, tl.int32) + NK, mask=s + lane < MAX_PADDED
        )


@triton.jit
def _align_scatter_kernel(
    Indices, ChunkBase, SortedPairs, NK, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr
):
    """Wide align, phase 3: each chunk writes its pairs at its base + their rank
    among the chunk's pairs of the same expert (stable in pair order)."""
    pid = tl.program_id(0)
    pair = pid * BLOCK + tl.arange(0, BLOCK)
    experts = tl.arange(0, BLOCK_E)
    e = tl.load(Indices + pair, mask=pair < NK, other=-1)
    one_hot = (e[:, None] == experts[None, :]).to(tl.int32)  # (BLOCK, BLOCK_E)
    rank = tl.cumsum(one_hot, axis=0) - one_hot
    base = tl.load(ChunkBase + pid * BLOCK_E + experts)
    dest = tl.sum(one_hot * (base[None, :] + rank), axis=1)
    tl.store(SortedPairs + dest, pair, mask=pair < NK)


#: above this many pairs, align runs as three launches over chunks in parallel
#: (one program over 8192 pairs took 64 µs on an H100; prefill calls it once per layer)
WIDE_ALIGN_PAIRS = 1024


def align(indices: torch.Tensor, n_experts: int, block_m: int) -> Alignment:
    """Group the pairs of ``indices (N, k)`` by expert in blocks of ``block_m`` rows."""
    nk = indices.numel()
    max_blocks, max_padded = align_sizes(nk, n_experts, block_m)
    dev = indices.device
    sorted_pairs = torch.empty(max_padded, device=dev, dtype=torch.int32)
    block_expert = torch.empty(max_blocks, device=dev, dtype=torch.int32)
    num_blocks = torch.empty(1, device=dev, dtype=torch.int32)
    BLOCK, BLOCK_E = 256, triton.next_power_of_2(n_experts)
    if nk <= WIDE_ALIGN_PAIRS:
        _align_kernel[(1,)](
            indices, sorted_pairs, block_expert, num_blocks, nk, max_blocks, max_padded,
            BLOCK_M=block_m, BLOCK=BLOCK, BLOCK_E=BLOCK_E, num_warps=4,
        )  # fmt: skip
        return Alignment(sorted_pairs, block_expert, num_blocks, block_m)
    chunks = triton.cdiv(nk, BLOCK)
    chunk_counts = torch.empty((chunks, BLOCK_E), device=dev, dtype=torch.int32)
    chunk_base = torch.empty((chunks, BLOCK_E), device=dev, dtype=torch.int32)
    _align_count_kernel[(chunks,)](indices, chunk_counts, nk, BLOCK=BLOCK, BLOCK_E=BLOCK_E)
    _align_plan_kernel[(1,)](
        chunk_counts, chunk_base, sorted_pairs, block_expert, num_blocks,
        nk, chunks, max_blocks, max_padded,
        BLOCK_M=block_m, BLOCK=BLOCK, BLOCK_E=BLOCK_E, BLOCK_C=triton.next_power_of_2(chunks),
        num_warps=8,
    )  # fmt: skip
    _align_scatter_kernel[(chunks,)](
        indices, chunk_base, sorted_pairs, nk, BLOCK=BLOCK, BLOCK_E=BLOCK_E
    )
    return Alignment(sorted_pairs, block_expert, num_blocks, block_m)


# ----------------------------------------------------------------------------- 3-4. experts


#: float32 bits ``1 000 0000 111 0…0``: the sign and the three exponent/mantissa bits an
#: E2M1 code lands on after ``(code << 28) >> 6`` (as int32: 0x81C00000)
_F32_CODE_MASK = tl.constexpr(-2118123520)
#: activations are multiplied by 2^64 before meeting float32-coded weights (value · 2^-126),
#: so the products (value · x · 2^-62) stay normal numbers; group sums are scaled back by 2^62
_X_SCALE = tl.constexpr(1.8446744073709552e19)
_GROUP_UNSCALE = tl.constexpr(4.611686018427388e18)
#: 2^126: float32-coded weights (value · 2^-126) back to their values
_CODE_UNSCALE = tl.constexpr(8.507059173023462e37)


@triton.jit
def _word_code(words, Q: tl.constexpr):
    """E2M1 code ``Q`` (bits ``4Q .. 4Q+3``) of each int32 in ``words`` as the float32 bits
    of ``value · 2^-126``: ``((word << (28 - 4Q)) >> 6) & 0x81C00000`` — the left shift
    drops the higher codes and puts the code's sign at bit 31, the arithmetic right shift
    moves ``eem`` to bits 22..24, the mask drops the lower codes and the copies of the sign
    (code 1 becomes a subnormal). Three integer operations, no conversion."""
    return ((words << (28 - 4 * Q)) >> 6) & _F32_CODE_MASK


@triton.jit
def _mxfp4_tile(
    packed, scales, BN: tl.constexpr, BK: tl.constexpr, F32_CODES: tl.constexpr = False
):
    """Decode ``packed uint8 (BN, BK/2)`` + ``scales uint8 (BN, BK/32)`` to
    float32 ``(BN, BK)``.

    Each byte holds two FP4 E2M1 codes, the low nibble the even element. The E8M0
    scale byte ``s`` is the float32 ``2^(s-127)``: exponent field ``s``, i.e. ``s << 23``.
    A code ``s eem`` becomes float32 bits in one of two ways (both exact):

    - ``F32_CODES``: ``((code << 28) >> 6) & 0x81C00000`` (arithmetic shift; the mask
      drops the copies of the sign bit) puts the sign at bit 31 and ``eem`` at bits
      22..24: ``value · 2^-126``, code 1 a subnormal; times ``2^126``. Three integer
      operations and a multiply per weight.
    - otherwise: magnitude codes 2..7 (``e >= 1``) are ``2^(e-1)·(1 + m/2)``, i.e.
      exponent field ``e + 126`` and mantissa bit ``m`` — ``(em << 22) + (126 << 23)``;
      code 1 is 0.5 (``126 << 23``); code 0 is zero; the sign is bit 3 -> 31.
    """
    codes = tl.join(packed & 0xF, packed >> 4).reshape(BN, BK).to(tl.int32)  # (BN, BK)
    if F32_CODES:
        values = _word_code(codes, 0).to(tl.float32, bitcast=True) * _CODE_UNSCALE
    else:
        em = codes & 7
        magnitude = tl.where(em >= 2, (em << 22) + (126 << 23), tl.where(em == 1, 126 << 23, 0))
        values = (magnitude | ((codes & 8) << 28)).to(tl.float32, bitcast=True)
    scale = (scales.to(tl.int32) << 23).to(tl.float32, bitcast=True)  # (BN, BK/32)
    values = values.reshape(BN, BK // 32, 32) * scale[:, :, None]
    return values.reshape(BN, BK)


@triton.jit
def _mxfp4_words_tile(
    words, scales, BN: tl.constexpr, BK: tl.constexpr, SMALL_SCALES: tl.constexpr
):
    """Decode ``words int32 (BN, BK/8)`` — each the eight E2M1 codes of four packed bytes,
    element 0 in bits 0..3 — and E8M0 ``scales uint8 (BN, BK/32)`` to float32 ``(BN, BK)``.

    Code ``q`` of a word becomes float32 bits ``value · 2^-126`` as in :func:`_mxfp4_tile`,
    but straight from the word: ``((word << (28 - 4q)) >> 6) & 0x81C00000`` — the shift
    drops the higher codes, the mask the lower ones — three integer operations per weight
    and no byte unpacking. ``SMALL_SCALES`` (every scale ``s <= 128``): one multiply by
    ``2^126 · 2^(s-127) = 2^(s-1)``, a normal float32; otherwise two."""
    # the eight codes joined as (BN, BK/8, 2, 2, 2), indexed by the bits (a, b, c) of
    # q = 4a + 2b + c: element order once reshaped
    even = tl.join(
        tl.join(_word_code(words, 0), _word_code(words, 4)),
        tl.join(_word_code(words, 2), _word_code(words, 6)),
    )
    odd = tl.join(
        tl.join(_word_code(words, 1), _word_code(words, 5)),
        tl.join(_word_code(words, 3), _word_code(words, 7)),
    )
    codes = tl.join(even, odd)
    values = codes.reshape(BN, BK // 32, 32).to(tl.float32, bitcast=True)
    if SMALL_SCALES:
        scale = ((scales.to(tl.int32) + 126) << 23).to(tl.float32, bitcast=True)
    else:
        values = values * _CODE_UNSCALE
        scale = (scales.to(tl.int32) << 23).to(tl.float32, bitcast=True)
    return (values * scale[:, :, None]).reshape(BN, BK)


@triton.jit
def _fp4_group_dot(x_even, x_odd, packed):
    """``x (M, 32) @ w (N, 32)ᵀ`` for one MXFP4 scale group, **without** its scale,
    times ``2^-14``, in float32. ``x_even``/``x_odd`` are the even/odd columns of x
    in float16 ``(M, 16)``; ``packed (N, 16)`` uint8 holds w's codes.

    An E2M1 code ``s eem`` placed as float16 bits ``s 0000 em 000000000``
    (``(em << 9) | (s << 15)``) is exactly ``value · 2^-14`` — codes 2..7 are
    normal numbers with exponent field ``e``, code 1 is the subnormal ``2^-15``
    — so decoding costs three integer operations per weight and no float math.
    The low nibble (even element) multiplies ``x_even``, the high one ``x_odd``.
    """
    p = packed.to(tl.uint16)
    lo = (((p & 0x07) << 9) | ((p & 0x08) << 12)).to(tl.float16, bitcast=True)
    hi = (((p & 0x70) << 5) | ((p & 0x80) << 8)).to(tl.float16, bitcast=True)
    return tl.dot(x_even, tl.trans(lo)) + tl.dot(x_odd, tl.trans(hi))


@triton.jit
def _group_scale(scales):
    """E8M0 ``scales`` (uint8) -> float32 ``2^(s - 127)`` (exponent field ``s``).
    Callers multiply by ``2^14`` first to undo the ``2^-14`` of the float16 codes
    (folding it into the scale would overflow for ``s > 240``)."""
    return (scales.to(tl.int32) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _fp4_gemv_group(packed, scales, x_even, x_odd, F32_CODES: tl.constexpr):
    """``w @ x`` for one K tile of an MXFP4 matrix with no matrix instruction (the
    batch-1 GEMV): ``packed (BN, G, 16)`` uint8 (G scale groups of 16 bytes),
    ``scales (BN, G)``, ``x_even``/``x_odd (G, 16)`` the even/odd elements of x that the
    low/high nibbles multiply -> float32 ``(BN,)``. Groups stay a tensor axis, so the
    per-group sums need no reshape.

    Two decodings (both exact):

    - ``F32_CODES``: a code ``s eem`` shifted to bits 28..31 of an int32 and shifted
      back arithmetically by 6 leaves ``s`` at bit 31 and ``eem`` at bits 22..24
      (the copies of ``s`` that the shift smears over bits 25..30 are masked off):
      exactly ``value · 2^-126`` as float32 bits, code 1 a subnormal — three integer
      operations per weight and no conversion. ``x_even``/``x_odd`` must arrive
      multiplied by ``2^64`` (``_X_SCALE``) so that the products stay normal numbers.
    - otherwise: float16 bits as in :func:`_fp4_group_dot` (``value · 2^-14``), widened
      to float32.
    """
    if F32_CODES:
        p = packed.to(tl.int32)
        lo = _word_code(p, 0).to(tl.float32, bitcast=True)
        hi = _word_code(p, 1).to(tl.float32, bitcast=True)
        unscale = _GROUP_UNSCALE
    else:
        p = packed.to(tl.uint16)
        lo = (((p & 0x07) << 9) | ((p & 0x08) << 12)).to(tl.float16, bitcast=True)
        hi = (((p & 0x70) << 5) | ((p & 0x80) << 8)).to(tl.float16, bitcast=True)
        lo, hi = lo.to(tl.float32), hi.to(tl.float32)
        unscale = 16384.0
    prod = lo * x_even[None, :, :] + hi * x_odd[None, :, :]  # (BN, G, 16)
    per_group = tl.sum(prod, axis=2) * unscale  # (BN, G)
    return tl.sum(per_group * _group_scale(scales), axis=1)


@triton.jit
def _fp4_gemv_words(words, scales, x8):
    """:func:`_fp4_gemv_group` from int32 words: ``words (BN, G, 4)`` (each the eight codes
    of four packed bytes, element 0 in bits 0..3, decoded as in :func:`_mxfp4_words_tile`),
    ``scales (BN, G)``, ``x8 (G, 4, 8)`` the K tile of x times ``2^64`` -> float32 ``(BN,)``.
    Code ``q = 4a + 2b + c`` of word ``w`` multiplies ``x8[g, w, q]``: three splits of x's
    last axis give the eight ``(G, 4)`` planes in the order the codes come out."""
    xa = x8.reshape(x8.shape[0], 4, 2, 2, 2)
    x_c0, x_c1 = tl.split(xa)  # (G, 4, 2[a], 2[b]) for c = 0, 1
    x_b0c0, x_b1c0 = tl.split(x_c0)
    x_b0c1, x_b1c1 = tl.split(x_c1)
    x0, x4 = tl.split(x_b0c0)
    x2, x6 = tl.split(x_b1c0)
    x1, x5 = tl.split(x_b0c1)
    x3, x7 = tl.split(x_b1c1)
    prod = _word_code(words, 0).to(tl.float32, bitcast=True) * x0[None]
    prod += _word_code(words, 1).to(tl.float32, bitcast=True) * x1[None]
    prod += _word_code(words, 2).to(tl.float32, bitcast=True) * x2[None]
    prod += _word_code(words, 3).to(tl.float32, bitcast=True) * x3[None]
    prod += _word_code(words, 4).to(tl.float32, bitcast=True) * x4[None]
    prod += _word_code(words, 5).to(tl.float32, bitcast=True) * x5[None]
    prod += _word_code(words, 6).to(tl.float32, bitcast=True) * x6[None]
    prod += _word_code(words, 7).to(tl.float32, bitcast=True) * x7[None]
    per_group = tl.sum(prod, axis=2) * _GROUP_UNSCALE  # (BN, G)
    return tl.sum(per_group * _group_scale(scales), axis=1)


@triton.jit
def _dequant_kernel(
    Blocks, Scales, Out, R, C,
    BR: tl.constexpr, BC: tl.constexpr, F32_CODES: tl.constexpr, WORDS: tl.constexpr,
    SMALL_SCALES: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cs = tl.program_id(1) * (BC // 32) + tl.arange(0, BC // 32)
    ok = (rows < R)[:, None]
    scales = tl.load(Scales + rows[:, None] * (C // 32) + cs[None, :], mask=ok)
    if WORDS:
        cw = tl.program_id(1) * (BC // 8) + tl.arange(0, BC // 8)
        words = tl.load(
            Blocks.to(tl.pointer_type(tl.int32)) + rows[:, None] * (C // 8) + cw[None, :], mask=ok
        )
        values = _mxfp4_words_tile(words, scales, BR, BC, SMALL_SCALES)
    else:
        cb = tl.program_id(1) * (BC // 2) + tl.arange(0, BC // 2)
        packed = tl.load(Blocks + rows[:, None] * (C // 2) + cb[None, :], mask=ok)
        values = _mxfp4_tile(packed, scales, BR, BC, F32_CODES)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    tl.store(Out + rows[:, None] * C + cols[None, :], values, mask=ok)


def dequantize(w: MXFP4Weight, f32_codes: bool = False, words: bool = False) -> torch.Tensor:
    """The float32 matrix ``(..., rows, cols)`` of an MXFP4 weight (for tests and tools);
    ``f32_codes``/``words`` pick the decoding the tile kernels use (:func:`_mxfp4_tile`,
    :func:`_mxfp4_words_tile`, the latter with ``w.small_scales``)."""
    *lead, rows, groups, _ = w.blocks.shape
    R, C = int(np.prod(lead, dtype=np.int64)) * rows, groups * 32
    out = torch.empty((R, C), device=w.blocks.device, dtype=torch.float32)
    BC = 32 if C % 64 else 64
    _dequant_kernel[(triton.cdiv(R, 16), C // BC)](
        w.blocks.contiguous(), w.scales.contiguous(), out, R, C,
        BR=16, BC=BC, F32_CODES=f32_codes, WORDS=words, SMALL_SCALES=words and w.small_scales,
    )  # fmt: skip
    return out.view(*lead, rows, C)


@triton.jit
def _weight_tile_dot(
    x,
    acc,
    W,
    S,
    e,
    w_rows,
    row_ok,
    k0,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    KDIM,
    MXFP4: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    F32_CODES: tl.constexpr,
    WORDS: tl.constexpr,
    SMALL_SCALES: tl.constexpr,
    UNMASKED: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """One K step of a tile kernel: ``acc (BM, BN) + x (BM, BK) @ w[w_rows, k0:k0+BK]ᵀ``.

    The weight tile of expert ``e`` is dense (the stored dtype) or MXFP4, decoded to
    float32 in registers: from int32 words (``WORDS``, :func:`_mxfp4_words_tile`) or bytes
    (:func:`_mxfp4_tile`). ``UNMASKED``: the tile lies inside the matrix (no masks)."""
    w_row_ptrs = W + e * stride_we + w_rows[:, None] * stride_wr
    ks = k0 // 32 + tl.arange(0, BK // 32)
    s_ptrs = S + e * stride_se + w_rows[:, None] * stride_sr + ks[None, :]
    s_ok = row_ok[:, None] & (ks < KDIM // 32)[None, :]
    if MXFP4 and WORDS:
        kw = k0 // 8 + tl.arange(0, BK // 8)
        w_ptrs = w_row_ptrs.to(tl.pointer_type(tl.int32)) + kw[None, :]
        if UNMASKED:
            words, scales = tl.load(w_ptrs), tl.load(s_ptrs)
        else:
            words = tl.load(w_ptrs, mask=row_ok[:, None] & (kw < KDIM // 8)[None, :], other=0)
            scales = tl.load(s_ptrs, mask=s_ok, other=0)
        w = _mxfp4_words_tile(words, scales, BN, BK, SMALL_SCALES)
    elif MXFP4:
        kb = k0 // 2 + tl.arange(0, BK // 2)
        packed = tl.load(
            w_row_ptrs + kb[None, :], mask=row_ok[:, None] & (kb < KDIM // 2)[None, :], other=0
        )
        w = _mxfp4_tile(packed, tl.load(s_ptrs, mask=s_ok, other=0), BN, BK, F32_CODES)
    else:
        kk = k0 + tl.arange(0, BK)
        w = tl.load(
            w_row_ptrs + kk[None, :], mask=row_ok[:, None] & (kk < KDIM)[None, :], other=0.0
        )
    return tl.dot(x, tl.trans(w.to(x.dtype)), acc, input_precision=DOT_PRECISION)


@triton.jit
def _moe_mlp1_kernel(
    X,
    SortedPairs,
    BlockExpert,
    NumBlocks,
    W,
    S,
    Bias,
    Act,
    stride_x,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_act,
    NK,
    H,
    I,
    limit,
    TOPK: tl.constexpr,
    MXFP4: tl.constexpr,
    FP16_GROUPS: tl.constexpr,
    F32_CODES: tl.constexpr,
    WORDS: tl.constexpr,
    SMALL_SCALES: tl.constexpr,
    EVEN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """``act[r, j] = swiglu(x[token(r)] @ mlp1[e]ᵀ + b1[e])`` for the sorted rows
    ``r`` of one block (expert ``e``) and activation columns ``j`` of one tile."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    if pid_m >= tl.load(NumBlocks):
        return
    e = tl.load(BlockExpert + pid_m).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(SortedPairs + rows)
    row_ok = pair < NK
    token = (pair // TOPK).to(tl.int64)
    if EVEN:  # padding rows read token 0 (their results are never stored): no masks
        token = tl.where(row_ok, token, 0)
    j = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # activation columns
    j_ok = j < I
    kk = tl.arange(0, BLOCK_K)

    acc_glu = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc_lin = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    if FP16_GROUPS:  # MXFP4 weights, 16-bit activations: one scale group per step
        c = tl.arange(0, 16)
        x_ptrs = X + token[:, None] * stride_x + 2 * c[None, :]  # even columns of each row
        w_glu = W + e * stride_we + (2 * j)[:, None] * stride_wr + c[None, :]
        s_glu = S + e * stride_se + (2 * j) * stride_sr
        for k0 in range(0, H, 32):
            x_even = tl.load(x_ptrs + k0, mask=row_ok[:, None], other=0.0).to(tl.float16)
            x_odd = tl.load(x_ptrs + k0 + 1, mask=row_ok[:, None], other=0.0).to(tl.float16)
            packed = tl.load(w_glu + k0 // 2, mask=j_ok[:, None], other=0)
            scale = _group_scale(tl.load(s_glu + k0 // 32, mask=j_ok, other=0))
            acc_glu += _fp4_group_dot(x_even, x_odd, packed) * 16384.0 * scale[None, :]
            packed = tl.load(w_glu + stride_wr + k0 // 2, mask=j_ok[:, None], other=0)
            scale = _group_scale(tl.load(s_glu + stride_sr + k0 // 32, mask=j_ok, other=0))
            acc_lin += _fp4_group_dot(x_even, x_odd, packed) * 16384.0 * scale[None, :]
    else:
        # glu and linear rows (2j, 2j+1: adjacent in the weight) as one tile of 2·BN rows: one
        # decode, one shared-memory store, one matrix product per K step (run 19)
        jj = pid_n * 2 * BLOCK_N + tl.arange(0, 2 * BLOCK_N)
        acc2 = tl.zeros((BLOCK_M, 2 * BLOCK_N), tl.float32)
        for k0 in range(0, H, BLOCK_K):
            x_ptrs = X + token[:, None] * stride_x + (k0 + kk)[None, :]
            if EVEN:
                x = tl.load(x_ptrs)  # (BLOCK_M, BLOCK_K)
            else:
                x = tl.load(x_ptrs, mask=row_ok[:, None] & ((k0 + kk) < H)[None, :], other=0.0)
            acc2 = _weight_tile_dot(
                x, acc2, W, S, e, jj, jj < 2 * I, k0, stride_we, stride_wr, stride_se, stride_sr,
                H, MXFP4, 2 * BLOCK_N, BLOCK_K, F32_CODES, WORDS, SMALL_SCALES, EVEN,
                DOT_PRECISION,
            )  # fmt: skip
        acc_glu, acc_lin = tl.split(acc2.reshape(BLOCK_M, BLOCK_N, 2))

    bias = Bias + e * stride_be
    glu = acc_glu + tl.load(bias + 2 * j, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    lin = acc_lin + tl.load(bias + 2 * j + 1, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    glu = tl.minimum(glu, limit)
    lin = tl.minimum(tl.maximum(lin, -limit), limit)
    act = glu * tl.sigmoid(1.702 * glu) * (lin + 1.0)
    tl.store(
        Act + rows[:, None].to(tl.int64) * stride_act + j[None, :],
        act.to(Act.dtype.element_ty),
        mask=row_ok[:, None] & j_ok[None, :],
    )


@triton.jit
def _moe_mlp2_kernel(
    Act,
    SortedPairs,
    BlockExpert,
    NumBlocks,
    W,
    S,
    Bias,
    Gates,
    Y,
    stride_act,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_y,
    NK,
    H,
    I,
    MXFP4: tl.constexpr,
    FP16_GROUPS: tl.constexpr,
    F32_CODES: tl.constexpr,
    WORDS: tl.constexpr,
    SMALL_SCALES: tl.constexpr,
    EVEN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """``y[pair(r)] = gate(pair) · (act[r] @ mlp2[e]ᵀ + b2[e])`` for one block and
    output tile."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    if pid_m >= tl.load(NumBlocks):
        return
    e = tl.load(BlockExpert + pid_m).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(SortedPairs + rows)
    row_ok = pair < NK
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < H
    kk = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    if FP16_GROUPS:
        c = tl.arange(0, 16)
        a_ptrs = Act + rows[:, None].to(tl.int64) * stride_act + 2 * c[None, :]
        w_ptrs = W + e * stride_we + n[:, None] * stride_wr + c[None, :]
        s_ptrs = S + e * stride_se + n * stride_sr
        for k0 in range(0, I, 32):
            a_even = tl.load(a_ptrs + k0, mask=row_ok[:, None], other=0.0).to(tl.float16)
            a_odd = tl.load(a_ptrs + k0 + 1, mask=row_ok[:, None], other=0.0).to(tl.float16)
            packed = tl.load(w_ptrs + k0 // 2, mask=n_ok[:, None], other=0)
            scale = _group_scale(tl.load(s_ptrs + k0 // 32, mask=n_ok, other=0))
            acc += _fp4_group_dot(a_even, a_odd, packed) * 16384.0 * scale[None, :]
    else:
        for k0 in range(0, I, BLOCK_K):
            a_ptrs = Act + rows[:, None].to(tl.int64) * stride_act + (k0 + kk)[None, :]
            if EVEN:  # padding rows of act exist (never stored, never read back): no masks
                a = tl.load(a_ptrs)
            else:
                a = tl.load(a_ptrs, mask=row_ok[:, None] & ((k0 + kk) < I)[None, :], other=0.0)
            acc = _weight_tile_dot(
                a, acc, W, S, e, n, n_ok, k0, stride_we, stride_wr, stride_se, stride_sr, I,
                MXFP4, BLOCK_N, BLOCK_K, F32_CODES, WORDS, SMALL_SCALES, EVEN, DOT_PRECISION,
            )  # fmt: skip

    y = acc + tl.load(Bias + e * stride_be + n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    y = y * tl.load(Gates + pair, mask=row_ok, other=0.0)[:, None]
    tl.store(
        Y + pair[:, None].to(tl.int64) * stride_y + n[None, :],
        y.to(Y.dtype.element_ty),
        mask=row_ok[:, None] & n_ok[None, :],
    )


@triton.jit
def _gemv_x(
    x_ptr, k0, K, g, byte, MASK_K: tl.constexpr, F32_CODES: tl.constexpr,
    WORDS: tl.constexpr = False,
):  # fmt: skip
    """The even and odd elements of one K tile of the vector x, ``(G, 16)`` float32 each
    (times ``2^64`` for float32 codes); ``WORDS``: the whole tile ``(G, 4, 8)`` times
    ``2^64`` (twice, to fit the callers)."""
    if WORDS:
        q8 = tl.arange(0, 4)[None, :, None] * 8 + tl.arange(0, 8)[None, None, :]
        ptrs8 = x_ptr + k0 + g[:, None, None] * 32 + q8
        if MASK_K:
            x8 = tl.load(ptrs8, mask=(k0 // 32 + g < K // 32)[:, None, None], other=0.0)
        else:
            x8 = tl.load(ptrs8)
        x8 = x8.to(tl.float32) * _X_SCALE
        x_even, x_odd = x8, x8
    else:
        # one contiguous (G, 16, 2) load, split into the even and odd elements in registers
        # (two stride-2 loads kept a third of the warps waiting on L1 — Nsight, run 6)
        ptrs = x_ptr + k0 + (2 * byte)[:, :, None] + tl.arange(0, 2)[None, None, :]
        if MASK_K:
            ok = (k0 // 32 + g < K // 32)[:, None, None]  # K is a multiple of 32
            x = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32)
        else:
            x = tl.load(ptrs).to(tl.float32)
        x_even, x_odd = tl.split(x)
        if F32_CODES:
            x_even, x_odd = x_even * _X_SCALE, x_odd * _X_SCALE
    return x_even, x_odd


@triton.jit
def _gemv_tile(
    w_ptrs,
    s_ptrs,
    k0,
    K,
    rows_ok,
    g,
    x_even,
    x_odd,
    MASK_K: tl.constexpr,
    MASK_ROWS: tl.constexpr,
    F32_CODES: tl.constexpr,
    WORDS: tl.constexpr = False,
):
    """One K tile of ``w @ x`` for the rows at ``w_ptrs (BN, G, 16)`` / ``s_ptrs (BN, G)``;
    masks only where the tile can overhang (the last K tile, a partial row tile).
    ``WORDS``: ``w_ptrs (BN, G, 4)`` point at int32 words and ``x_even`` is the whole
    ``(G, 4, 8)`` tile (:func:`_fp4_gemv_words`)."""
    K_PER_ELEMENT: tl.constexpr = 8 if WORDS else 2  # weights per int32 word / per byte
    w_ptrs = w_ptrs + k0 // K_PER_ELEMENT
    if MASK_K or MASK_ROWS:
        g_ok = k0 // 32 + g < K // 32
        w = tl.load(w_ptrs, mask=rows_ok[:, None, None] & g_ok[None, :, None], other=0)
        scales = tl.load(s_ptrs + k0 // 32, mask=rows_ok[:, None] & g_ok[None, :], other=0)
    else:
        w = tl.load(w_ptrs)
        scales = tl.load(s_ptrs + k0 // 32)
    if WORDS:
        out = _fp4_gemv_words(w, scales, x_even)
    else:
        out = _fp4_gemv_group(w, scales, x_even, x_odd, F32_CODES)
    return out


@triton.jit
def _moe_mlp1_gemv_kernel(
    X,
    Indices,
    W,
    S,
    Bias,
    Act,
    stride_x,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_act,
    H,
    I,
    limit,
    TOPK: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    F32_CODES: tl.constexpr,
    ROWS_EVEN: tl.constexpr,
    WORDS: tl.constexpr,
):
    """Few-token mlp1 + SwiGLU with MXFP4 weights: one program per (pair, tile of
    activation columns), ``act[pair, j]`` in pair order. No grouping step: the
    pair's expert is read from ``Indices`` (at batch 1 every pair has its own
    expert, so nothing would be shared anyway). The K loop runs unmasked over whole
    tiles and masked over the last partial one (``ROWS_EVEN``: ``I % BLOCK_N == 0``)."""
    pid_n = tl.program_id(0)
    pair = tl.program_id(1)
    e = tl.load(Indices + pair).to(tl.int64)
    token = (pair // TOPK).to(tl.int64)
    j = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # activation columns
    j_ok = j < I
    g = tl.arange(0, BLOCK_K // 32)  # scale groups of a K tile
    byte = g[:, None] * 16 + tl.arange(0, 16)[None, :]  # (G, 16) packed bytes of a K tile
    x_row = X + token * stride_x
    if WORDS:  # (BN, G, 4) int32 words; the next weight row is stride_wr / 4 words on
        word = g[:, None] * 4 + tl.arange(0, 4)[None, :]
        rows = W + e * stride_we + (2 * j)[:, None, None] * stride_wr
        w_glu = rows.to(tl.pointer_type(tl.int32)) + word[None, :, :]
        w_lin = w_glu + stride_wr // 4
    else:
        w_glu = W + e * stride_we + (2 * j)[:, None, None] * stride_wr + byte[None, :, :]
        w_lin = w_glu + stride_wr
    s_glu = S + e * stride_se + (2 * j)[:, None] * stride_sr + g[None, :]
    MASK_ROWS: tl.constexpr = not ROWS_EVEN

    acc_glu = tl.zeros((BLOCK_N,), tl.float32)
    acc_lin = tl.zeros((BLOCK_N,), tl.float32)
    k_full = H - H % BLOCK_K
    for k0 in range(0, k_full, BLOCK_K):
        xe, xo = _gemv_x(x_row, k0, H, g, byte, False, F32_CODES, WORDS)
        acc_glu += _gemv_tile(
            w_glu, s_glu, k0, H, j_ok, g, xe, xo, False, MASK_ROWS, F32_CODES, WORDS
        )
        acc_lin += _gemv_tile(
            w_lin, s_glu + stride_sr, k0, H, j_ok, g, xe, xo, False, MASK_ROWS, F32_CODES, WORDS
        )
    if k_full < H:
        xe, xo = _gemv_x(x_row, k_full, H, g, byte, True, F32_CODES, WORDS)
        acc_glu += _gemv_tile(
            w_glu, s_glu, k_full, H, j_ok, g, xe, xo, True, True, F32_CODES, WORDS
        )
        acc_lin += _gemv_tile(
            w_lin, s_glu + stride_sr, k_full, H, j_ok, g, xe, xo, True, True, F32_CODES, WORDS
        )

    bias = Bias + e * stride_be
    glu = acc_glu + tl.load(bias + 2 * j, mask=j_ok, other=0.0).to(tl.float32)
    lin = acc_lin + tl.load(bias + 2 * j + 1, mask=j_ok, other=0.0).to(tl.float32)
    glu = tl.minimum(glu, limit)
    lin = tl.minimum(tl.maximum(lin, -limit), limit)
    act = glu * tl.sigmoid(1.702 * glu) * (lin + 1.0)
    tl.store(Act + pair.to(tl.int64) * stride_act + j, act.to(Act.dtype.element_ty), mask=j_ok)


@triton.jit
def _moe_mlp2_gemv_kernel(
    Act,
    Indices,
    W,
    S,
    Bias,
    Gates,
    Y,
    stride_act,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_y,
    H,
    I,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    F32_CODES: tl.constexpr,
    ROWS_EVEN: tl.constexpr,
    WORDS: tl.constexpr,
):
    """Few-token mlp2 with MXFP4 weights: ``y[pair, n] = gate · (act[pair] @ mlp2[e]ᵀ + b2[e])``
    (``ROWS_EVEN``: ``H % BLOCK_N == 0``)."""
    pid_n = tl.program_id(0)
    pair = tl.program_id(1)
    e = tl.load(Indices + pair).to(tl.int64)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < H
    g = tl.arange(0, BLOCK_K // 32)
    byte = g[:, None] * 16 + tl.arange(0, 16)[None, :]  # (G, 16)
    a_row = Act + pair.to(tl.int64) * stride_act
    if WORDS:
        word = g[:, None] * 4 + tl.arange(0, 4)[None, :]
        rows = W + e * stride_we + n[:, None, None] * stride_wr
        w_ptrs = rows.to(tl.pointer_type(tl.int32)) + word[None, :, :]
    else:
        w_ptrs = W + e * stride_we + n[:, None, None] * stride_wr + byte[None, :, :]
    s_ptrs = S + e * stride_se + n[:, None] * stride_sr + g[None, :]
    MASK_ROWS: tl.constexpr = not ROWS_EVEN

    acc = tl.zeros((BLOCK_N,), tl.float32)
    k_full = I - I % BLOCK_K
    for k0 in range(0, k_full, BLOCK_K):
        ae, ao = _gemv_x(a_row, k0, I, g, byte, False, F32_CODES, WORDS)
        acc += _gemv_tile(
            w_ptrs, s_ptrs, k0, I, n_ok, g, ae, ao, False, MASK_ROWS, F32_CODES, WORDS
        )
    if k_full < I:
        ae, ao = _gemv_x(a_row, k_full, I, g, byte, True, F32_CODES, WORDS)
        acc += _gemv_tile(w_ptrs, s_ptrs, k_full, I, n_ok, g, ae, ao, True, True, F32_CODES, WORDS)

    y = acc + tl.load(Bias + e * stride_be + n, mask=n_ok, other=0.0).to(tl.float32)
    y = y * tl.load(Gates + pair)
    tl.store(Y + pair.to(tl.int64) * stride_y + n, y.to(Y.dtype.element_ty), mask=n_ok)


class ExpertConfig(NamedTuple):
    """Tile sizes of the two expert kernels.

    ``fp16_groups``: with MXFP4 weights and 16-bit activations, walk K one 32-wide
    scale group at a time with weights decoded straight to float16 bits
    (:func:`_fp4_group_dot`); ``block_k*`` then do not apply.
    ``gemv``: with MXFP4 weights, one program per (pair, column tile) and no matrix
    instruction and no grouping step (:func:`_moe_mlp1_gemv_kernel`) — for a handful
    of pairs, where a ``tl.dot`` tile of 16 rows would be 15/16 padding; ``block_m``
    does not apply. Dense weights fall back to ``TUNED["decode"]``. ``f32_codes``: MXFP4
    codes are decoded by shifts straight to float32 bits (:func:`_mxfp4_tile`,
    :func:`_fp4_gemv_group`). ``words``: MXFP4 codes are read as int32 words and decoded
    by shifts (:func:`_mxfp4_words_tile`, :func:`_fp4_gemv_words`; ``f32_codes`` then does
    not apply). The tile kernel of mlp1 multiplies a column tile's glu and linear rows as
    one tile of ``2·block_n1`` weight rows.
    """

    block_m: int
    block_n1: int
    block_k1: int
    block_n2: int
    block_k2: int
    num_warps: int = 4
    num_stages: int = 3
    fp16_groups: bool = False
    gemv: bool = False
    f32_codes: bool = False
    words: bool = False


#: configurations chosen by measurement on an H100 (docs/triton-notes.md);
#: ``mind4_triton.bench --kernels`` times the variants and may replace them for its run
TUNED = {
    "gemv": ExpertConfig(1, 4, 512, 4, 512, num_warps=1, num_stages=3, gemv=True, words=True),
    "decode": ExpertConfig(16, 32, 32, 64, 32, num_warps=4, num_stages=3, fp16_groups=True),
    "prefill": ExpertConfig(64, 64, 64, 64, 64, num_warps=4, num_stages=3, words=True),
}

#: up to this many (token, expert) pairs take the ``gemv`` configuration (batch 1 of top-4)
GEMV_MAX_PAIRS = 4


def expert_config(n_pairs: int) -> ExpertConfig:
    """Tiles for batch-1 decode (GEMV), small batches (bandwidth-bound) and prefill
    (compute-bound)."""
    if n_pairs <= GEMV_MAX_PAIRS:
        return TUNED["gemv"]
    return TUNED["decode" if n_pairs <= 64 else "prefill"]


def _weight_args(w):
    """Pointers and strides of a dense or MXFP4 expert weight."""
    if isinstance(w, MXFP4Weight):
        E, rows, groups, _ = w.blocks.shape
        blocks = w.blocks.view(E, rows, groups * 16)
        return (
            blocks,
            w.scales,
            blocks.stride(0),
            blocks.stride(1),
            w.scales.stride(0),
            w.scales.stride(1),
            True,
        )
    assert w.stride(-1) == 1
    return w, w, w.stride(0), w.stride(1), 0, 0, False


def expert_mlp1(x, alignment: Alignment, topk: int, w1, b1, limit: float, act, cfg: ExpertConfig):
    """Step 3: ``act (max_padded, I)`` from ``x (N, H)``."""
    N, H = x.shape
    I = w1.shape[1] // 2
    W, S, swe, swr, sse, ssr, mx = _weight_args(w1)
    grid = (triton.cdiv(I, cfg.block_n1), alignment.block_expert.numel())
    _moe_mlp1_kernel[grid](
        x,
        alignment.sorted_pairs,
        alignment.block_expert,
        alignment.num_blocks,
        W,
        S,
        b1,
        act,
        x.stride(0),
        swe,
        swr,
        sse,
        ssr,
        b1.stride(0),
        act.stride(0),
        N * topk,
        H,
        I,
        float(limit),
        TOPK=topk,
        MXFP4=mx,
        FP16_GROUPS=mx and cfg.fp16_groups and x.dtype != torch.float32,
        F32_CODES=cfg.f32_codes,
        WORDS=cfg.words,
        SMALL_SCALES=mx and w1.small_scales,
        EVEN=H % cfg.block_k1 == 0 and I % cfg.block_n1 == 0,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n1,
        BLOCK_K=cfg.block_k1,
        DOT_PRECISION=dot_precision(x.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return act


def expert_mlp2(act, alignment: Alignment, n_pairs: int, w2, b2, gates, y, cfg: ExpertConfig):
    """Step 4: ``y (N·k, H)`` (its dtype; float32 accumulation), gate-weighted, from ``act``."""
    H = w2.shape[1]
    I = act.shape[1]
    W, S, swe, swr, sse, ssr, mx = _weight_args(w2)
    grid = (triton.cdiv(H, cfg.block_n2), alignment.block_expert.numel())
    _moe_mlp2_kernel[grid](
        act,
        alignment.sorted_pairs,
        alignment.block_expert,
        alignment.num_blocks,
        W,
        S,
        b2,
        gates,
        y,
        act.stride(0),
        swe,
        swr,
        sse,
        ssr,
        b2.stride(0),
        y.stride(0),
        n_pairs,
        H,
        I,
        MXFP4=mx,
        FP16_GROUPS=mx and cfg.fp16_groups and act.dtype != torch.float32,
        F32_CODES=cfg.f32_codes,
        WORDS=cfg.words,
        SMALL_SCALES=mx and w2.small_scales,
        EVEN=I % cfg.block_k2 == 0 and H % cfg.block_n2 == 0,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n2,
        BLOCK_K=cfg.block_k2,
        DOT_PRECISION=dot_precision(act.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return y


def expert_rows(
    x: torch.Tensor,
    indices: torch.Tensor,
    gates: torch.Tensor,
    mlp1_weight,
    mlp1_bias: torch.Tensor,
    mlp2_weight,
    mlp2_bias: torch.Tensor,
    swiglu_limit: float,
    cfg: ExpertConfig,
) -> torch.Tensor:
    """Steps 2-4: ``y (N·k, H)`` in x's dtype (float32 accumulation), row ``n·k + j`` =
    ``gates[n, j] · expert_{indices[n, j]}(x[n])``. No host synchronisation (graph-safe)."""
    N, H = x.shape
    k = indices.shape[1]
    E, I = mlp1_weight.shape[0], mlp1_weight.shape[1] // 2
    indices = indices.to(torch.int32).contiguous()
    gates = gates.to(torch.float32).contiguous().view(-1)
    y = torch.empty((N * k, H), device=x.device, dtype=x.dtype)
    mx = isinstance(mlp1_weight, MXFP4Weight) and isinstance(mlp2_weight, MXFP4Weight)
    if cfg.gemv and mx:
        act = torch.empty((N * k, I), device=x.device, dtype=x.dtype)
        W, S, swe, swr, sse, ssr, _ = _weight_args(mlp1_weight)
        _moe_mlp1_gemv_kernel[(triton.cdiv(I, cfg.block_n1), N * k)](
            x, indices, W, S, mlp1_bias, act,
            x.stride(0), swe, swr, sse, ssr, mlp1_bias.stride(0), act.stride(0),
            H, I, float(swiglu_limit),
            TOPK=k, BLOCK_N=cfg.block_n1, BLOCK_K=cfg.block_k1, F32_CODES=cfg.f32_codes,
            ROWS_EVEN=I % cfg.block_n1 == 0, WORDS=cfg.words,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )  # fmt: skip
        W, S, swe, swr, sse, ssr, _ = _weight_args(mlp2_weight)
        _moe_mlp2_gemv_kernel[(triton.cdiv(H, cfg.block_n2), N * k)](
            act, indices, W, S, mlp2_bias, gates, y,
            act.stride(0), swe, swr, sse, ssr, mlp2_bias.stride(0), y.stride(0),
            H, I,
            BLOCK_N=cfg.block_n2, BLOCK_K=cfg.block_k2, F32_CODES=cfg.f32_codes,
            ROWS_EVEN=H % cfg.block_n2 == 0, WORDS=cfg.words,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )  # fmt: skip
        return y
    if cfg.gemv:
        cfg = TUNED["decode"]
    alignment = align(indices, E, cfg.block_m)
    act = torch.empty((alignment.sorted_pairs.numel(), I), device=x.device, dtype=x.dtype)
    expert_mlp1(x, alignment, k, mlp1_weight, mlp1_bias, swiglu_limit, act, cfg)
    expert_mlp2(act, alignment, N * k, mlp2_weight, mlp2_bias, gates, y, cfg)
    return y


def experts(
    x: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    mlp1_weight,
    mlp1_bias: torch.Tensor,
    mlp2_weight,
    mlp2_bias: torch.Tensor,
    swiglu_limit: float,
    cfg: ExpertConfig | None = None,
) -> torch.Tensor:
    """``Σ_k weights[:, k] · expert_{indices[:, k]}(x)`` for ``x (N, H)`` -> ``(N, H)``
    in x's dtype. Weights are dense tensors or :class:`MXFP4Weight`."""
    N, H = x.shape
    k = indices.shape[1]
    cfg = cfg or expert_config(N * k)
    y = expert_rows(
        x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit, cfg
    )
    return y.view(N, k, H).float().sum(dim=1).to(x.dtype)
