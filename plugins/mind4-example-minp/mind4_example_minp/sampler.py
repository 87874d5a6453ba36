"""A min-p sampler for torch logits.

Min-p keeps the tokens whose probability is at least ``min_p`` times the
probability of the most likely token: a cut that adapts to how confident the
model is. It runs after the standard steps (temperature, top-k, top-p), so
with ``min_p = 0`` this sampler is exactly the one the Sampler protocol
describes, and it passes the conformance specs.

The threshold travels in :class:`MinPParams`, a :class:`SamplingParams` with
one more field; plain ``SamplingParams`` mean ``min_p = 0``.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from mind4_core.config import SamplingParams
from mind4_core.errors import SamplingError


@attrs.frozen(kw_only=True)
class MinPParams(SamplingParams):
    """Sampling parameters with a min-p threshold in [0, 1] (0 = off)."""

    min_p: float = 0.0

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if (
            isinstance(self.min_p, bool)
            or not isinstance(self.min_p, (int, float))
            or not 0 <= self.min_p <= 1
        ):
            raise SamplingError(
                f"invalid sampling field 'min_p': got {self.min_p!r}; expected a number in [0, 1] (0 = off)"
            )


class MinPSampler:
    """The Sampler protocol (``generator``, ``sample``, ``probabilities``) plus min-p."""

    def __init__(self, device: str = "cpu", dtype: str | None = None):
        self.device = torch.device("cpu" if device in (None, "auto") else device)

    def generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        return g

    def probabilities(self, logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        """The ``(B, V)`` float32 distribution that :meth:`sample` draws from."""
        logits = logits.reshape(-1, logits.shape[-1]).double()  # (B, V)
        if params.temperature == 0:  # greedy: one-hot at the argmax (first index on ties)
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()

        p = torch.softmax(logits / params.temperature, dim=-1)
        p_sorted, order = torch.sort(p, dim=-1, descending=True, stable=True)  # (B, V)
        keep = torch.ones_like(p_sorted, dtype=torch.bool)
        if params.top_k > 0:  # the k most probable
            keep[:, params.top_k :] = False
            p_sorted = renormalise(p_sorted, keep)
        if params.top_p < 1:  # each token whose preceding mass is < top_p
            mass_before = torch.cumsum(p_sorted, dim=-1) - p_sorted
            keep &= mass_before < params.top_p
            p_sorted = renormalise(p_sorted, keep)
        min_p = getattr(params, "min_p", 0.0)
        if min_p > 0:  # at least min_p times the most probable token
            keep &= p_sorted >= min_p * p_sorted[:, :1]
            p_sorted = renormalise(p_sorted, keep)
        return torch.zeros_like(p).scatter(-1, order, p_sorted).float()

    def sample(
        self, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator
    ) -> np.ndarray:
        """One token per row of ``logits (B, V)``, as NumPy int64 ``(B,)``."""
        if params.temperature == 0:
            tokens = logits.reshape(-1, logits.shape[-1]).argmax(-1)
        else:
            p = self.probabilities(logits, params)
            tokens = torch.multinomial(p, 1, generator=generator)[:, 0]
        return tokens.cpu().numpy().astype(np.int64)


def renormalise(p: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero the dropped tokens and rescale each row to sum to 1."""
    p = torch.where(keep, p, 0.0)
    return p / p.sum(dim=-1, keepdim=True)
