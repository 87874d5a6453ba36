"""Mixture-of-experts routing and expert compute (the ``torch`` moe_routing component;
:class:`mind4_core.protocols.MoERouting` with the ``"experts"`` feature).

    indices, weights = top-k(router_logits), softmax over those k    (N, k), (N, k)
    h   = x @ mlp1[e]ᵀ + b1[e]                                       (n_e, 2I) interleaved
    a   = clamp(glu) · sigmoid(1.702 clamp(glu)) · (clamp(lin) + 1)   (n_e, I)
    out = Σ_k weights_k · (a @ mlp2[e]ᵀ + b2[e])                     (N, H)

Only the selected experts' weights are read: a single token (decode) walks its
k experts directly; a batch of tokens is grouped by expert so each expert runs
one matmul over the tokens routed to it. Expert weights may be dense tensors or
:class:`MXFP4Weight` (kept packed, dequantised per selected expert).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mind4_core.mxfp4 import FP4_VALUES

from .errors import InputError
from .util import float32


def route(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, E)`` -> ``indices (N, k)`` int64, largest first; ``weights (N, k)`` float32."""
    if router_logits.dim() != 2:
        raise InputError(f"router logits must have shape (N, E), got {tuple(router_logits.shape)}")
    if not 0 < k <= router_logits.shape[1]:
        raise InputError(f"cannot route to k={k} of {router_logits.shape[1]} experts")
    top, indices = torch.topk(float32(router_logits), k, dim=-1, sorted=True)  # (N, k)
    return indices, torch.softmax(top, dim=-1)


def swiglu(h: torch.Tensor, limit: float) -> torch.Tensor:
    """Clamped SwiGLU of interleaved ``h (..., 2I)`` -> ``(..., I)``."""
    glu = h[..., 0::2].clamp(max=limit)
    lin = h[..., 1::2].clamp(-limit, limit)
    g = glu * torch.sigmoid(1.702 * glu)
    return torch.addcmul(g, g, lin)  # g * (lin + 1)


def experts(
    x: torch.Tensor,  # (N, H)
    indices: torch.Tensor,  # (N, k)
    weights: torch.Tensor,  # (N, k)
    mlp1_weight,  # (E, 2I, H) tensor or MXFP4Weight
    mlp1_bias: torch.Tensor,  # (E, 2I)
    mlp2_weight,  # (E, H, I) tensor or MXFP4Weight
    mlp2_bias: torch.Tensor,  # (E, H)
    swiglu_limit: float,
) -> torch.Tensor:
    """``Σ_k weights[:, k] · expert_{indices[:, k]}(x)`` -> ``(N, H)`` in x's dtype."""
    check_experts(x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias)
    N, k = indices.shape

    def expert(e: int, xe: torch.Tensor) -> torch.Tensor:  # (n, H) -> (n, H)
        h = F.linear(xe, mlp1_weight[e], mlp1_bias[e])  # (n, 2I)
        return F.linear(swiglu(h, swiglu_limit), mlp2_weight[e], mlp2_bias[e])  # (n, H)

    if N == 1 and not torch.is_grad_enabled():  # decode: one token, its k experts only
        return one_token(
            x,
            indices.tolist()[0],
            weights.tolist()[0],
            mlp1_weight,
            mlp1_bias,
            mlp2_weight,
            mlp2_bias,
            swiglu_limit,
        )

    # group the N·k (token, expert) pairs by expert
    flat = indices.reshape(-1)  # (N k,)
    order = torch.argsort(flat, stable=True)  # pairs sorted by expert
    counts = torch.bincount(flat, minlength=len(mlp1_bias)).tolist()  # (E,)
    token = order // k  # (N k,) which token each sorted pair belongs to
    gate = weights.reshape(-1)[order].to(x.dtype)  # (N k,)
    out = torch.zeros_like(x)
    start = 0
    for e, n in enumerate(counts):
        if n:
            rows = token[start : start + n]  # (n,)
            y = expert(e, x[rows]) * gate[start : start + n, None]  # (n, H)
            out.index_add_(0, rows, y)
            start += n
    return out


def one_token(
    x, chosen: list[int], gates: list[float], w1, b1, w2, b2, limit: float
) -> torch.Tensor:
    """``x (1, H)`` through its experts ``chosen`` with weights ``gates`` -> ``(1, H)``.

    One matrix-vector product per expert matrix, reading only the chosen experts.
    (The decode fast path, :class:`mind4_torch.decode.Experts`, batches pairs of
    experts instead, so that two threads share the products on CPU.)"""
    h = torch.cat([F.linear(x, w1[e], b1[e]) for e in chosen])  # (k, 2I)
    a = swiglu(h, limit)  # (k, I)
    out = F.linear(a[:1], w2[chosen[0]], b2[chosen[0]]).mul_(gates[0])  # (1, H)
    for j in range(1, len(chosen)):
        out.add_(F.linear(a[j : j + 1], w2[chosen[j]], b2[chosen[j]]), alpha=gates[j])
    return out


def check_experts(x, indices, weights, w1, b1, w2, b2) -> None:
    def fail(message: str):
        raise InputError(f"experts: {message}")

    if x.dim() != 2:
        fail(f"x must have shape (N, H), got {tuple(x.shape)}")
    N, H = x.shape
    if indices.dim() != 2 or indices.shape[0] != N or tuple(weights.shape) != tuple(indices.shape):
        fail(
            f"indices {tuple(indices.shape)} and weights {tuple(weights.shape)} must both be ({N}, k)"
        )
    E, I2 = b1.shape
    if (
        tuple(w1.shape) != (E, I2, H)
        or tuple(w2.shape) != (E, H, I2 // 2)
        or tuple(b2.shape) != (E, H)
    ):
        fail(
            f"expert weights do not fit x (N, {H}): mlp1_weight {tuple(w1.shape)}, mlp1_bias "
            f"{tuple(b1.shape)}, mlp2_weight {tuple(w2.shape)}, mlp2_bias {tuple(b2.shape)}"
        )


def load_balancing_loss(
    router_logits: torch.Tensor, indices: torch.Tensor, num_experts: int
) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``E · Σ_e f_e · P_e`` (1.0 when balanced).

    ``f_e``: fraction of the N·k routing slots given to expert e (not differentiable);
    ``P_e``: mean router probability of e over all experts' softmax (carries the gradient).
    """
    probs = torch.softmax(router_logits.float(), dim=-1)  # (N, E)
    counts = torch.bincount(indices.reshape(-1), minlength=num_experts).float()  # (E,)
    fraction = counts / indices.numel()
    return num_experts * torch.sum(fraction * probs.mean(dim=0))


class TorchMoE:
    """Top-k routing and expert compute on torch tensors."""

    def __init__(self, device=None, dtype=None):
        pass

    def route(self, router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return route(router_logits, k)

    def experts(
        self, x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit
    ):
        return experts(
            x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit
        )


# ----------------------------------------------------------------------------- MXFP4


def dequantize_mxfp4(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``blocks uint8 (..., rows, G, 16)``, ``scales uint8 (..., rows, G)`` -> ``(..., rows, 32 G)``."""
    lut = torch.from_numpy(FP4_VALUES).to(blocks.device)  # FP4 E2M1 code -> value
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1)  # (..., rows, G, 16, 2): even, odd
    values = lut[codes.long()].flatten(-2)  # (..., rows, G, 32)
    exponent = scales.to(torch.int32) - 127  # (..., rows, G)
    values = torch.ldexp(values, exponent.unsqueeze(-1).float())
    return values.flatten(-2).to(dtype)  # (..., rows, 32 G)


class MXFP4Weight:
    """Expert weights kept in MXFP4; ``w[e]`` dequantises expert ``e`` only.

    ``shape`` is the logical ``(E, rows, cols)``; ``blocks (E, rows, cols/32, 16)``
    and ``scales (E, rows, cols/32)`` stay uint8 on the device.
    """

    def __init__(self, blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype):
        self.blocks, self.scales, self.dtype = blocks, scales, dtype
        self.shape = torch.Size((*blocks.shape[:-2], blocks.shape[-2] * 32))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, e: int) -> torch.Tensor:  # (rows, cols)
        return dequantize_mxfp4(self.blocks[e], self.scales[e], self.dtype)

    def dense(self) -> torch.Tensor:  # (E, rows, cols)
        return torch.stack([self[e] for e in range(len(self))])

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    def __repr__(self) -> str:
        return f"MXFP4Weight(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"
