"""Capture for the torch backend: the lab's instruments see inside the running model.

The core finds this module by convention (``<package>.capture``, see
:mod:`mind4_core.lab`) and calls :func:`capture` with a runtime and a
:class:`mind4_core.lab.Capture` record. While the context is open:

- every MLP block's routing component is wrapped in a :class:`RoutingObserver`
  that passes ``route`` through and reports the experts and gate weights;
- the attention component of each requested layer is wrapped in an
  :class:`AttentionObserver` that passes the call through, then reads the
  probabilities *that component* computed by probing it (below);
- forward hooks on the embedding, each block's attention and each block report
  the residual stream, and a pre-hook on the model reports each pass's offsets.

Nothing of the model's code is copied: the observers call the very components
the model calls. On exit every wrapper and hook is removed, so with no capture
open the model runs exactly as before (no wrapper, no hook, no branch).

Probing attention probabilities: the attention call computes ``out = probs · v``.
Calling the same component with the same ``q``, ``k``, sinks, window and offset,
but with ``v`` holding unit vectors (key ``c·D + j`` carries ``e_j``), returns
``probs[..., c·D : (c+1)·D]`` in ``out``; ``ceil(S / D)`` calls read all of
them. They come out in the model's dtype (exact for float32; bfloat16 rounds
them to about 3 significant digits).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mind4_core.lab import Capture, LabError

from .model import Transformer

KINDS = frozenset({"routing", "attention", "residual"})
_OPEN: weakref.WeakSet = weakref.WeakSet()  # models with a capture open


def _model(runtime: Any) -> Transformer | None:
    model = getattr(runtime, "model", runtime)
    return model if isinstance(model, Transformer) else None


def capture_kinds(runtime: Any) -> frozenset[str]:
    """Everything, for a runtime (or model) built on :class:`mind4_torch.model.Transformer`.

    A tensor-parallel rank (``world_size > 1``, the ``torch-tp`` backend) holds only its
    share of the heads and of the vocabulary, so it captures routing only (the router
    is replicated: every rank routes every token alike)."""
    if _model(runtime) is None:
        return frozenset()
    return frozenset({"routing"}) if getattr(runtime, "world_size", 1) > 1 else KINDS


def _host(x: torch.Tensor) -> np.ndarray:
    x = x.detach()
    return (x.float() if x.is_floating_point() else x.long()).cpu().numpy()


def attention_probabilities(
    attention, q, k, sinks, *, sm_scale: float, window: int | None, offset
) -> torch.Tensor:
    """``(B, Hq, T, S)`` float32 attention weights of ``attention`` on these inputs (see above)."""
    B, T, Hq, D = q.shape
    S = k.shape[1]
    eye = torch.eye(D, dtype=k.dtype, device=k.device)  # (D, D)
    pieces = []
    for start in range(0, S, D):
        n = min(D, S - start)
        v = torch.zeros_like(k)  # (B, S, Hkv, D)
        v[:, start : start + n] = eye[:n].view(1, n, 1, D)  # key start+j carries e_j
        o = attention(q, k, v, sinks, sm_scale=sm_scale, window=window, offset=offset)
        pieces.append(o[..., :n].float())  # (B, T, Hq, n)
    return torch.cat(pieces, dim=-1).permute(0, 2, 1, 3)  # (B, Hq, T, S)


class AttentionObserver:
    """An attention component that reports its probabilities to a capture record."""

    def __init__(self, inner, layer: int, record: Capture):
        self.inner, self.layer, self.record = inner, layer, record

    def __call__(self, q, k, v, sinks, *, sm_scale, window, offset):
        out = self.inner(q, k, v, sinks, sm_scale=sm_scale, window=window, offset=offset)
        probs = attention_probabilities(
            self.inner, q, k, sinks, sm_scale=sm_scale, window=window, offset=offset
        )  # (B, Hq, T, S)
        key_offset = offset.cpu().numpy() if isinstance(offset, torch.Tensor) else offset
        self.record.add_attention(self.layer, _host(probs), key_offset)
        return out

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class RoutingObserver:
    """A MoE routing component that reports each token's experts and gate weights."""

    def __init__(self, inner, layer: int, record: Capture):
        self.inner, self.layer, self.record = inner, layer, record

    def route(self, router_logits, k):
        indices, weights = self.inner.route(router_logits, k)  # (N, k), (N, k)
        self.record.add_routing(self.layer, _host(indices), _host(weights))
        return indices, weights

    def __getattr__(self, name: str):  # experts (when the component has it), anything else
        return getattr(self.inner, name)


def _offsets(offset: Any, batch: int) -> np.ndarray:
    if isinstance(offset, torch.Tensor):
        offset = offset.cpu().numpy()
    return np.broadcast_to(np.asarray(offset, dtype=np.int64).reshape(-1), (batch,))


@torch.inference_mode()
def unembed(model: Transformer, x: np.ndarray) -> np.ndarray:
    """``(N, H)`` residuals -> ``(N, V)`` float32 logits: the model's final norm and unembedding."""
    weight = model.unembedding.weight
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t.to(device=weight.device, dtype=model.embedding.weight.dtype)
    return _host(model.unembedding(model.norm(t)))


@contextlib.contextmanager
def capture(runtime: Any, record: Capture) -> Iterator[None]:
    """Install observers and hooks on the runtime's model for the ``with`` block."""
    model = _model(runtime)
    if model is None:
        raise LabError(f"{type(runtime).__name__} is not a mind4-torch model; it cannot capture")
    if model in _OPEN:
        raise LabError("a capture is already open on this model; close it before opening another")
    swapped: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
    handles = []

    def swap(owner, attr: str, wrapper) -> None:
        swapped.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, wrapper)

    def begin(module, args, kwargs):
        tokens = args[0] if args else kwargs["tokens"]
        offset = args[2] if len(args) > 2 else kwargs.get("offset", 0)
        record.begin_forward(tokens.shape[0], tokens.shape[1], _offsets(offset, tokens.shape[0]))

    def residual(name: str):
        def hook(module, args, output):
            record.add_residual(name, _host(output))

        return hook

    _OPEN.add(model)
    try:
        handles.append(model.register_forward_pre_hook(begin, with_kwargs=True))
        if record.wants("residual"):
            handles.append(model.embedding.register_forward_hook(residual("embedding")))
            record.unembed = lambda x: unembed(model, x)
        for n, block in enumerate(model.block):
            if record.wants("routing"):
                swap(block.mlp, "moe", RoutingObserver(block.mlp.moe, n, record))
            if record.wants("attention") and n in record.attention_layers:
                swap(block.attn, "attention", AttentionObserver(block.attn.attention, n, record))
            if record.wants("residual"):
                handles.append(block.attn.register_forward_hook(residual(f"block.{n}.attn")))
                handles.append(block.register_forward_hook(residual(f"block.{n}.mlp")))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for owner, attr, original in reversed(swapped):
            setattr(owner, attr, original)
        _OPEN.discard(model)
