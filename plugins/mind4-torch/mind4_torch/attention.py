"""Causal grouped-query attention with per-head sinks, a sliding window and a
cache offset (the ``torch`` attention component; :class:`mind4_core.protocols.Attention`).

    scores = q kᵀ · sm_scale                            (B, Hkv, G, T, S)
    scores[not visible] = -inf                          causal + window, from offsets
    probs  = softmax([scores, sink])[..., :S]           the sink absorbs mass, adds no value
    out    = probs v                                    (B, T, Hq, D)

Query head ``h`` reads kv head ``h // G`` with ``G = Hq / Hkv``: q is viewed as
``(B, Hkv, G·T, D)`` so one batched matmul per kv head serves its whole group
without copying k or v. Scores and softmax are float32.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .util import cast, float32

#: most float32 scores one chunk of queries may hold (bounds prefill memory)
MAX_SCORES = 1 << 24


def visibility(
    T: int, S: int, offset: int | torch.Tensor, window: int | None, device
) -> torch.Tensor:
    """``(B|1, T, S)`` booleans: query ``t`` of a row (position ``offset + t``) sees key ``s``."""
    steps = torch.arange(T, device=device)
    if isinstance(offset, torch.Tensor):
        q_pos = offset.to(device)[:, None] + steps  # (B, T)
    else:
        q_pos = (steps + offset).unsqueeze(0)  # (1, T)
    k_pos = torch.arange(S, device=device)  # (S,)
    visible = k_pos <= q_pos[..., None]  # (B|1, T, S) causal
    if window:
        visible &= k_pos > q_pos[..., None] - window
    return visible


def all_visible(T: int, S: int, offset: int | torch.Tensor, window: int | None) -> bool:
    """True when no key needs masking (one query that sees every key it is given):
    the decode step, once the caller has cut the cache to the visible range."""
    if T != 1 or isinstance(offset, torch.Tensor):
        return False
    return S - 1 <= offset and (not window or offset < window)


def check_inputs(q, k, v, sinks) -> None:
    def fail(message: str):
        raise InputError(f"attention: {message}")

    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            fail(
                f"{name} must be a 4-d torch.Tensor (B, T|S, heads, D), got {getattr(x, 'shape', type(x))}"
            )
    B, T, Hq, D = q.shape
    if k.shape != v.shape:
        fail(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if k.shape[0] != B or k.shape[3] != D:
        fail(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in batch or head dim")
    if Hq % k.shape[2]:
        fail(f"{k.shape[2]} kv heads must divide {Hq} query heads")
    if tuple(sinks.shape) != (Hq,):
        fail(f"sinks must have shape ({Hq},), got {tuple(sinks.shape)}")


def as_offset(offset, batch_size: int, device) -> int | torch.Tensor:
    """An int (every row alike) or a ``(B,)`` int64 tensor on ``device``."""
    if isinstance(offset, int):
        return offset
    offset = torch.as_tensor(offset, device=device)
    if offset.dim() == 0:
        return int(offset)
    if offset.shape != (batch_size,) or offset.is_floating_point():
        raise InputError(
            f"attention: offset must be an int or ({batch_size},) integers, got {tuple(offset.shape)} "
            f"{offset.dtype}"
        )
    return offset.long()


class TorchAttention:
    """``attention(q, k, v, sinks, *, sm_scale, window, offset) -> (B, T, Hq, D)``."""

    def __init__(self, device=None, dtype=None, max_scores: int = MAX_SCORES):
        self.max_scores = max_scores

    def __call__(
        self,
        q: torch.Tensor,  # (B, T, Hq, D)
        k: torch.Tensor,  # (B, S, Hkv, D)
        v: torch.Tensor,  # (B, S, Hkv, D)
        sinks: torch.Tensor,  # (Hq,)
        *,
        sm_scale: float,
        window: int | None,
        offset: int | torch.Tensor,
    ) -> torch.Tensor:
        check_inputs(q, k, v, sinks)
        B, T, Hq, _ = q.shape
        offset = as_offset(offset, B, q.device)
        S = k.shape[1]
        chunk = max(1, self.max_scores // max(1, B * Hq * S))
        if T <= chunk:
            return self.attend(q, k, v, sinks, sm_scale, window, offset)
        # long prefill: queries in chunks, so the scores never exceed max_scores floats
        return torch.cat(
            [
                self.attend(q[:, t : t + chunk], k, v, sinks, sm_scale, window, offset + t)
                for t in range(0, T, chunk)
            ],
            dim=1,
        )

    @staticmethod
    def attend(q, k, v, sinks, sm_scale, window, offset) -> torch.Tensor:
        B, T, Hq, D = q.shape
        S, Hkv = k.shape[1], k.shape[2]
        G = Hq // Hkv
        if T == 1:  # decode: (B, 1, Hq, D) is already (B, Hkv, G, D)
            qh = float32(q).reshape(B, Hkv, G, D)
        else:
            qh = float32(q).reshape(B, T, Hkv, G, D).permute(0, 2, 3, 1, 4)  # (B, Hkv, G, T, D)
            qh = qh.reshape(B, Hkv, G * T, D)  # (B, Hkv, G·T, D)
        kh = float32(k).permute(0, 2, 3, 1)  # (B, Hkv, D, S)
        vh = float32(v).permute(0, 2, 1, 3)  # (B, Hkv, S, D)

        scores = torch.matmul(qh, kh).view(B, Hkv, G, T, S)  # (B, Hkv, G, T, S)
        scores.mul_(sm_scale)
        if not all_visible(T, S, offset, window):
            visible = visibility(T, S, offset, window, q.device)  # (B|1, T, S)
            scores.masked_fill_(~visible[:, None, None], float("-inf"))
        sink = float32(sinks).view(1, Hkv, G, 1, 1).expand(B, Hkv, G, T, 1)
        probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[
            ..., :S
        ]  # (B, Hkv, G, T, S)

        o = torch.matmul(probs.reshape(B, Hkv, G * T, S), vh)  # (B, Hkv, G·T, D)
        if T > 1:
            o = o.view(B, Hkv, G, T, D).permute(0, 3, 1, 2, 4)  # (B, T, Hkv, G, D)
        return cast(o.reshape(B, T, Hq, D), q.dtype)
