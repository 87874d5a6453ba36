"""RMSNorm, fused with the residual-stream update that precedes it.

``y = x · rsqrt(mean(x²) + eps) · scale`` in float32 (the oracle's
:func:`rmsnorm`). In the model every norm follows a residual update, so one
kernel reads the update, writes the new residual and the normalised row in a
single pass over the hidden size (one program per token row):

====================  ===========================================================
mode                  residual update before the norm
====================  ===========================================================
``plain``             none (``x`` is only read)
``add``               ``x += delta``                       (after attention)
``add_rows``          ``x += Σ_j delta[row·K + j]``        (after the MoE: its K
                      gate-weighted expert outputs)
``embed``             ``x = embedding[token]``             (before layer 0)
====================  ===========================================================

The residual ``x`` is kept in float32 by the runtime; the normalised output
takes the dtype of ``out`` (the model's matmul dtype).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PLAIN, ADD, ADD_ROWS, EMBED = 0, 1, 2, 3


@triton.jit
def _rmsnorm_kernel(
    X,
    Delta,
    Tokens,
    Scale,
    Out,
    stride_x,
    stride_d,
    stride_o,
    H,
    eps,
    MODE: tl.constexpr,
    K: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    ok = cols < H
    x_ptrs = X + row * stride_x + cols
    if MODE == 3:  # embed: the residual starts as the token's embedding row
        token = tl.load(Tokens + row).to(tl.int64)
        x = tl.load(Delta + token * stride_d + cols, mask=ok, other=0.0).to(tl.float32)
    else:
        x = tl.load(x_ptrs, mask=ok, other=0.0).to(tl.float32)
    if MODE == 1:
        x += tl.load(Delta + row * stride_d + cols, mask=ok, other=0.0).to(tl.float32)
    if MODE == 2:
        for j in tl.static_range(K):
            x += tl.load(Delta + (row * K + j) * stride_d + cols, mask=ok, other=0.0).to(tl.float32)
    if MODE != 0:
        tl.store(x_ptrs, x.to(X.dtype.element_ty), mask=ok)

    inv_rms = tl.rsqrt(tl.sum(x * x, axis=0) / H + eps)
    scale = tl.load(Scale + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(Out + row * stride_o + cols, (x * inv_rms * scale).to(Out.dtype.element_ty), mask=ok)


def _launch(mode, x, delta, tokens, scale, out, eps, k=1):
    rows, H = out.shape
    BLOCK_H = triton.next_power_of_2(H)
    num_warps = 4 if BLOCK_H <= 2048 else 8
    _rmsnorm_kernel[(rows,)](
        x,
        delta,
        tokens,
        scale,
        out,
        x.stride(0),
        delta.stride(0),
        out.stride(0),
        H,
        float(eps),
        MODE=mode,
        K=k,
        BLOCK_H=BLOCK_H,
        num_warps=num_warps,
    )
    return out


def rmsnorm(x: torch.Tensor, scale: torch.Tensor, eps: float, out_dtype=None) -> torch.Tensor:
    """``x (N, H)`` -> normalised ``(N, H)`` in ``out_dtype`` (default: x's)."""
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype or x.dtype)
    return _launch(PLAIN, x, x, x, scale, out, eps)


def add_rmsnorm(
    x: torch.Tensor, delta: torch.Tensor, scale: torch.Tensor, eps: float, out: torch.Tensor
) -> torch.Tensor:
    """``x += delta`` (in place), then ``out = rmsnorm(x)``. ``x, delta, out (N, H)``."""
    return _launch(ADD, x, delta, x, scale, out, eps)


def add_rows_rmsnorm(
    x: torch.Tensor, rows: torch.Tensor, k: int, scale: torch.Tensor, eps: float, out: torch.Tensor
) -> torch.Tensor:
    """``x[n] += Σ_j rows[n·k + j]`` (in place), then ``out = rmsnorm(x)``.
    ``x, out (N, H)``, ``rows (N·k, H)``."""
    return _launch(ADD_ROWS, x, rows, x, scale, out, eps, k=k)


def embed_rmsnorm(
    tokens: torch.Tensor,
    embedding: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor,
    eps: float,
    out: torch.Tensor,
) -> torch.Tensor:
    """``x = embedding[tokens]`` (written), then ``out = rmsnorm(x)``. ``tokens (N,)``."""
    return _launch(EMBED, x, embedding, tokens, scale, out, eps)
