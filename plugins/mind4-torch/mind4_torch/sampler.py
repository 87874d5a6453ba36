"""Token sampling on torch tensors (the ``torch`` sampler component;
:class:`mind4_core.protocols.Sampler`).

    temperature 0  -> argmax (lowest index on ties)
    otherwise      p = softmax(logits / temperature)
                   top-k: keep the k most probable (lower index first on ties), renormalise
                   top-p: in descending order keep each token whose preceding mass < top_p,
                          renormalise
                   draw from p with a seeded torch.Generator

Probabilities are computed in float64 (float32 on MPS, which has no float64), so
the kept set matches the float64 oracle except at exact float64 ties of mass.
"""

from __future__ import annotations

import numpy as np
import torch

from mind4_core.config import SamplingParams
from mind4_core.errors import SamplingError

from .errors import InputError


def resolve_sampler_device(device) -> torch.device:
    if device is None or device == "auto":
        from .runtime import resolve_device

        return resolve_device("auto")
    return torch.device(device)


class TorchSampler:
    """Seeded temperature / top-k / top-p sampling; ``sample`` returns NumPy int64."""

    def __init__(self, device=None, dtype=None):
        self.device = resolve_sampler_device(device)

    def generator(self, seed: int | None) -> torch.Generator:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise SamplingError(
                f"invalid sampling field 'seed': got {seed!r}; expected an integer or null"
            )
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()  # fresh entropy
        else:
            gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
        return gen

    def _logits(self, logits) -> torch.Tensor:
        logits = torch.as_tensor(logits)
        if logits.dim() == 1:
            logits = logits.unsqueeze(0)
        if logits.dim() != 2 or logits.shape[-1] == 0:
            raise InputError(f"sampler: logits must have shape (B, V), got {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise InputError(f"sampler: logits must be floating point, got {logits.dtype}")
        if torch.isnan(logits).any():
            raise InputError("sampler: logits contain NaN; the model produced invalid values")
        return logits

    def probabilities(self, logits, params: SamplingParams) -> torch.Tensor:
        """The ``(B, V)`` distribution :meth:`sample` draws from (one-hot when greedy)."""
        logits = self._logits(logits)
        if params.greedy:
            out = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
            return out.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
        return self._probabilities(logits, params).float()

    @staticmethod
    def _probabilities(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        wide = torch.float32 if logits.device.type == "mps" else torch.float64
        p = torch.softmax(logits.to(wide) / params.temperature, dim=-1)  # (B, V)
        V = p.shape[-1]
        top_k = params.top_k if 0 < params.top_k < V else 0
        if not top_k and params.top_p >= 1.0:
            return p
        p_sorted, order = torch.sort(p, dim=-1, descending=True, stable=True)  # most probable first
        if top_k:
            p_sorted[:, top_k:] = 0.0
            p_sorted /= p_sorted.sum(dim=-1, keepdim=True)
        if params.top_p < 1.0:
            mass = torch.cumsum(p_sorted, dim=-1)
            mass_before = torch.cat([torch.zeros_like(mass[:, :1]), mass[:, :-1]], dim=-1)
            p_sorted = torch.where(mass_before < params.top_p, p_sorted, 0.0)
            p_sorted /= p_sorted.sum(dim=-1, keepdim=True)
        return torch.zeros_like(p).scatter_(-1, order, p_sorted)

    def sample(
        self, logits, params: SamplingParams, generator: torch.Generator | None
    ) -> np.ndarray:
        """``logits (B, V)`` -> ``(B,)`` NumPy int64 token ids."""
        logits = self._logits(logits)
        if params.greedy:
            tokens = logits.argmax(dim=-1)
        else:
            p = self._probabilities(logits, params)
            if generator is not None and generator.device != p.device:
                p = p.to(generator.device)
            tokens = torch.multinomial(p, 1, generator=generator).squeeze(-1)
        return tokens.cpu().numpy().astype(np.int64)
