"""The Triton components as the core's protocols see them (attention, MoE routing,
sampler); each wraps a kernel module of :mod:`mind4_triton.kernels`."""

from __future__ import annotations

from typing import Any

import torch

from .errors import TritonInputError
from .kernels import attention as attention_kernels
from .kernels import moe as moe_kernels
from .kernels.sampling import TritonSampler

__all__ = ["TritonAttention", "TritonMoE", "TritonSampler"]


def _check_device(name: str, x: torch.Tensor, device: torch.device) -> None:
    if x.device.type != device.type:
        raise TritonInputError(
            f"{name} is on {x.device} but the Triton component runs on {device}; move it there"
        )


class TritonAttention:
    """:class:`mind4_core.protocols.Attention` with the flash kernel
    (:mod:`mind4_triton.kernels.attention`)."""

    def __init__(self, device: str = "cuda", dtype: str | None = None):
        self.device = torch.device(device)
        self.dtype = dtype

    def __call__(
        self, q, k, v, sinks, *, sm_scale: float, window: int | None, offset
    ) -> torch.Tensor:
        if q.dim() != 4 or k.dim() != 4 or v.shape != k.shape:
            raise TritonInputError(
                f"attention needs q (B, T, Hq, D) and k, v (B, S, Hkv, D); got q {tuple(q.shape)}, "
                f"k {tuple(k.shape)}, v {tuple(v.shape)}"
            )
        B, T, Hq, D = q.shape
        if k.shape[0] != B or k.shape[3] != D or Hq % k.shape[2]:
            raise TritonInputError(
                f"k {tuple(k.shape)} does not fit q {tuple(q.shape)}: batch and head dim must match "
                "and Hkv must divide Hq"
            )
        if tuple(sinks.shape) != (Hq,):
            raise TritonInputError(f"sinks must have shape ({Hq},), got {tuple(sinks.shape)}")
        for name, x in (("q", q), ("k", k), ("v", v), ("sinks", sinks)):
            _check_device(name, x, self.device)
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        if not isinstance(offset, torch.Tensor):
            offsets = torch.as_tensor(offset, dtype=torch.int64).reshape(-1)
            if int(offsets.min()) < 0:
                raise TritonInputError(f"offsets must be >= 0, got {offsets.tolist()}")
        return attention_kernels.attention(
            q, k, v, sinks.float(), sm_scale=sm_scale, window=window, offset=offset
        )


class TritonMoE:
    """:class:`mind4_core.protocols.MoERouting` with the ``experts`` feature: the
    routing kernel and the fused expert kernels (:mod:`mind4_triton.kernels.moe`).
    Expert weights may be dense tensors or :class:`~mind4_triton.kernels.moe.MXFP4Weight`."""

    def __init__(self, device: str = "cuda", dtype: str | None = None):
        self.device = torch.device(device)
        self.dtype = dtype

    def route(self, router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if router_logits.dim() != 2:
            raise TritonInputError(
                f"router logits must have shape (N, E), got {tuple(router_logits.shape)}"
            )
        if not 0 < k <= router_logits.shape[1]:
            raise TritonInputError(f"cannot route to k={k} of {router_logits.shape[1]} experts")
        _check_device("router_logits", router_logits, self.device)
        indices, weights = moe_kernels.route(router_logits.contiguous(), k)
        return indices.long(), weights

    def experts(
        self, x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit
    ) -> torch.Tensor:
        if x.dim() != 2 or indices.shape != weights.shape or indices.shape[0] != x.shape[0]:
            raise TritonInputError(
                f"experts needs x (N, H), indices and weights (N, k); got x {tuple(x.shape)}, "
                f"indices {tuple(indices.shape)}, weights {tuple(weights.shape)}"
            )
        E, I2, H = mlp1_weight.shape
        if H != x.shape[1] or tuple(mlp2_weight.shape) != (E, H, I2 // 2):
            raise TritonInputError(
                f"expert weights do not fit x (N, {x.shape[1]}): mlp1_weight {tuple(mlp1_weight.shape)}, "
                f"mlp2_weight {tuple(mlp2_weight.shape)}"
            )
        _check_device("x", x, self.device)

        def prepare(w: Any):
            return w if isinstance(w, moe_kernels.MXFP4Weight) else w.to(x.dtype).contiguous()

        return moe_kernels.experts(
            x.contiguous(),
            indices,
            weights,
            prepare(mlp1_weight),
            mlp1_bias.contiguous(),
            prepare(mlp2_weight),
            mlp2_bias.contiguous(),
            swiglu_limit,
        )
