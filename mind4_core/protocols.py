"""What each record's factory returns: the interfaces backends implement.

These are :class:`typing.Protocol` classes, documentation first. The exact
mathematics every implementation must match is the NumPy float64 oracle in
``mind4_specs.oracle``; the conformance specs compare against it.

Array conventions: ``B`` batch, ``T`` new tokens, ``S`` keys visible (cache
length), ``Hq`` query heads, ``Hkv`` key/value heads, ``D`` head dim, ``E``
experts, ``V`` vocabulary. "Array" means the backend's own array type (a
``torch.Tensor`` for torch and triton; NumPy for the core's own pieces).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .checkpoint import Checkpoint
    from .config import Config, ModelConfig, SamplingParams

Array = Any


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids. ``encode`` treats *all* text as ordinary text: a user
    typing ``<|start|>`` gets the literal characters, never the special token."""

    name: str
    n_vocab: int
    #: special token text -> id, e.g. ``{"<|start|>": 200006, ...}``
    special_tokens: Mapping[str, int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...


@runtime_checkable
class Attention(Protocol):
    """``out = attention(q, k, v, sinks, sm_scale=, window=, offset=)``.

    - ``q``: ``(B, T, Hq, D)``; ``k``, ``v``: ``(B, S, Hkv, D)``; ``sinks``: ``(Hq,)``
      float32; ``out``: ``(B, T, Hq, D)`` in q's dtype.
    - Query ``t`` of row ``b`` sits at absolute position ``offset[b] + t``
      (``offset`` is an int or a ``(B,)`` integer array); key ``s`` sits at
      position ``s``. Query at position ``p`` sees key ``s`` iff ``s <= p`` and,
      when ``window`` is a positive int, ``p - window < s``. ``S`` may exceed
      ``offset + T`` (a pre-allocated cache): keys past ``p`` are masked anyway.
    - GQA: query head ``h`` uses kv head ``h // (Hq // Hkv)``.
    - Sinks: per query head, one extra logit ``sinks[h]`` joins each row's
      softmax and is then dropped (it absorbs mass, contributes no value).
    - Softmax in float32 at least.
    """

    def __call__(
        self,
        q: Array,
        k: Array,
        v: Array,
        sinks: Array,
        *,
        sm_scale: float,
        window: int | None,
        offset: int | Array,
    ) -> Array: ...


@runtime_checkable
class MoERouting(Protocol):
    """Top-k routing and, with the ``"experts"`` feature, expert compute."""

    def route(self, router_logits: Array, k: int) -> tuple[Array, Array]:
        """``router_logits (N, E)`` -> ``(indices (N, k) int64, weights (N, k) float32)``.

        Indices are the k largest logits in descending order; weights are the
        softmax over those k logits only (they sum to 1 per row)."""
        ...

    def experts(
        self,
        x: Array,
        indices: Array,
        weights: Array,
        mlp1_weight: Array,
        mlp1_bias: Array,
        mlp2_weight: Array,
        mlp2_bias: Array,
        swiglu_limit: float,
    ) -> Array:
        """Optional (feature ``"experts"``). ``x (N, H)``; ``mlp1_weight (E, 2I, H)``,
        ``mlp1_bias (E, 2I)``, ``mlp2_weight (E, H, I)``, ``mlp2_bias (E, H)``.
        Per selected expert: ``h = x @ mlp1ᵀ + b1``; ``glu, lin = h[..., ::2], h[..., 1::2]``;
        ``glu = min(glu, limit)``; ``lin = clamp(lin, -limit, limit)``;
        ``a = glu * sigmoid(1.702 glu) * (lin + 1)``; ``y = a @ mlp2ᵀ + b2``;
        returns ``Σ_k weights[:, k] * y_k`` of shape ``(N, H)``."""
        ...


@runtime_checkable
class Sampler(Protocol):
    """Draws tokens from logits.

    Semantics (the oracle's): temperature 0 -> argmax (lowest index on ties).
    Otherwise ``p = softmax(logits / temperature)``; top-k (k > 0) keeps the k
    most probable tokens; top-p (< 1) then keeps, in descending order of
    probability, each token whose preceding cumulative mass is ``< top_p`` (so
    at least one token, and the token that crosses ``top_p`` is kept); the kept
    probabilities are renormalised.
    """

    def generator(self, seed: int | None) -> Any:
        """Seeded random state for :meth:`sample` (same seed -> same draws)."""
        ...

    def sample(self, logits: Array, params: SamplingParams, generator: Any) -> np.ndarray:
        """``logits (B, V)`` -> NumPy ``int64 (B,)`` token ids."""
        ...

    def probabilities(self, logits: Array, params: SamplingParams) -> Array:
        """Optional (feature ``"probabilities"``): the ``(B, V)`` distribution
        :meth:`sample` draws from (one-hot at temperature 0)."""
        ...


@runtime_checkable
class WeightLoader(Protocol):
    """Reads one checkpoint format into canonical tensor names."""

    name: str

    def probe(self, path: Any) -> str | None:
        """``None`` if this loader can read ``path``; else why it cannot."""
        ...

    def open(self, path: Any) -> Checkpoint:
        """Open, validate every tensor against the config, and return it."""
        ...


@runtime_checkable
class Runtime(Protocol):
    """A model on a device, made by a backend record's factory.

    The core's engine drives it: it tracks how many tokens each cache row
    holds and passes that as ``offset``; a cache is a pre-allocated buffer the
    runtime writes keys/values into at positions ``offset .. offset+T-1``.
    Shrinking a session (reuse of a shared prefix) is just a smaller offset.
    """

    model_config: ModelConfig
    device: str
    dtype: str

    def new_cache(self, batch_size: int, max_tokens: int) -> Any:
        """Allocate a KV cache for ``batch_size`` rows of ``max_tokens`` positions."""
        ...

    def forward(
        self,
        tokens: np.ndarray,
        cache: Any | None,
        offset: int | Sequence[int] = 0,
        *,
        last_only: bool = True,
    ) -> Array:
        """``tokens (B, T) int64`` -> logits ``(B, V)`` of the last position
        (``last_only``) or ``(B, T, V)``. With ``cache=None`` the forward pass is
        a full causal recompute from position 0 (``offset`` must be 0)."""
        ...

    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy a runtime array to a float32/int64 NumPy array on the host."""
        ...


class BackendFactory(Protocol):
    def __call__(
        self, *, checkpoint: Checkpoint, config: Config, components: Mapping[str, Any]
    ) -> Runtime: ...
