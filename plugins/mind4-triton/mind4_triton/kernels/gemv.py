"""Matrix-vector products of batch-1 decode: ``y = x @ wᵀ + b`` for one row ``x``.

At one row the dense layers are pure weight streaming (2 bytes per weight, 2
FLOPs): cuBLAS reaches 40-50 % of the copy bandwidth on the 5120 × 2880 and
2880 × 4096 matrices of gpt-oss-20b (docs/triton-notes.md, run 1), because it
launches too few blocks to keep every SM's loads in flight. This kernel gives
each program ``BLOCK_N`` rows and walks K in ``BLOCK_K`` columns, accumulating
``w · x`` elementwise in float32 and reducing once at the end.

:func:`linear` uses it only for shapes listed in :data:`TUNED` (filled from
measurements: ``python -m mind4_triton.bench --kernels``); everything else is
``F.linear`` (cuBLAS).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


class GemvConfig(NamedTuple):
    block_n: int
    block_k: int
    num_warps: int = 4


#: ``(out_features, in_features) -> config`` where this kernel beat cuBLAS on an H100
TUNED: dict[tuple[int, int], GemvConfig] = {
    # gpt-oss-20b/120b on an H100, timed from DRAM (bench runs 4-9, 2026-11-25; run 9's picks)
    (5120, 2880): GemvConfig(2, 512, 2),  # qkv: 2.2 TB/s (cuBLAS 2.05)
    (2880, 4096): GemvConfig(1, 1024, 2),  # attention out: 2.0 TB/s (cuBLAS 1.55)
    (201088, 2880): GemvConfig(2, 1024, 4),  # unembedding: 3.1 TB/s (cuBLAS 2.83)
}


@triton.jit
def _gemv_kernel(X, W, B, Y, N, K, stride_w, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    cols = tl.arange(0, BLOCK_K)
    w_ptrs = W + rows[:, None].to(tl.int64) * stride_w + cols[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        col_ok = k0 + cols < K
        x = tl.load(X + k0 + cols, mask=col_ok, other=0.0).to(tl.float32)  # (BLOCK_K,)
        w = tl.load(w_ptrs + k0, mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        acc += w.to(tl.float32) * x[None, :]
    y = tl.sum(acc, axis=1)  # (BLOCK_N,)
    if HAS_BIAS:
        y += tl.load(B + rows, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(Y + rows, y.to(Y.dtype.element_ty), mask=row_ok)


def gemv(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    cfg: GemvConfig,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``x (1, K) @ w (N, K)ᵀ + b (N,)`` -> ``(1, N)`` in ``out_dtype`` (default x's
    dtype), by the Triton kernel; float32 accumulation."""
    M, K = x.shape
    N = w.shape[0]
    if M != 1 or w.shape[1] != K or w.stride(1) != 1:
        raise ValueError(f"gemv needs x (1, K) and a row-major w (N, K); got {x.shape}, {w.shape}")
    x = x.contiguous()
    y = torch.empty((1, N), device=x.device, dtype=out_dtype or x.dtype)
    _gemv_kernel[(triton.cdiv(N, cfg.block_n),)](
        x, w, b if b is not None else w, y, N, K, w.stride(0),
        HAS_BIAS=b is not None, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return y


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` that takes the Triton GEMV for one row where it was measured faster."""
    cfg = TUNED.get(tuple(w.shape)) if x.shape[0] == 1 else None
    if cfg is None:
        return F.linear(x, w, b)
    return gemv(x, w, b, cfg)
