"""The gpt-oss architecture in PyTorch, readable top to bottom.

    tokens (B, T)
      -> embedding                                   (B, T, H)
      -> num_hidden_layers x TransformerBlock:
           x = x + attn(rmsnorm(x))                  GQA attention with sinks (+ KV cache)
           x = x + mlp(rmsnorm(x))                   top-k mixture of experts
      -> rmsnorm -> unembedding                      (B, T, V)

Parameter names are the canonical checkpoint names (``block.0.attn.qkv.weight``,
``block.0.mlp.mlp1_weight``, ...), so ``model.state_dict()`` maps 1:1 onto a
checkpoint. The attention and expert mathematics live in components
(:mod:`mind4_torch.attention`, :mod:`mind4_torch.moe`) that the model calls, so
the core can swap in another implementation (``--attention triton``).

Shape letters: ``B`` batch, ``T`` new tokens, ``S`` cached keys, ``H`` hidden,
``Hq``/``Hkv`` query/key-value heads, ``D`` head dim, ``E`` experts, ``k``
experts per token, ``I`` intermediate size, ``V`` vocabulary, ``N = B*T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mind4_core.config import ModelConfig  # the config: field names as in gpt-oss

from .attention import TorchAttention
from .errors import ContextOverflowError, InputError
from .moe import TorchMoE, load_balancing_loss
from .moe import experts as moe_experts
from .util import cast, float32

__all__ = [
    "AttentionBlock",
    "Embedding",
    "KVCache",
    "Linear",
    "MLPBlock",
    "ModelConfig",
    "Offsets",
    "RMSNorm",
    "RotaryEmbedding",
    "Transformer",
    "TransformerBlock",
]

# The fields of ModelConfig this file reads:
#   hidden_size H, num_hidden_layers, num_attention_heads Hq, num_key_value_heads Hkv,
#   head_dim D, intermediate_size I, vocab_size V, num_experts E, experts_per_token k,
#   sliding_window (even layers), rope_theta, rope_scaling_factor, rope_ntk_alpha,
#   rope_ntk_beta, initial_context_length, max_context_length, swiglu_limit, rms_norm_eps.


class Structure:
    """A counter bumped whenever an attribute of a block or of the model is reassigned
    (a swapped component, a wrapped linear): the decode fast path re-checks then."""

    version = 0


class Tracked(nn.Module):
    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        Structure.version += 1


class Linear(nn.Module):
    """``y = x Wᵀ + b`` with ``W (out, in)``: ``nn.Linear`` without its random init.

    Parameters start empty (``Transformer.init_weights`` or a checkpoint fills them),
    which also keeps building a model on the meta device free of torch's decompositions.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return F.linear(x, self.weight, self.bias)


class Embedding(nn.Module):
    """Rows of ``weight (V, H)`` by token id (``nn.Embedding`` without its random init)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, H)
        return F.embedding(tokens, self.weight)


class RMSNorm(nn.Module):
    """``x * rsqrt(mean(x²) + eps) * scale``, computed in float32 whatever x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim, dtype=torch.float32, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., H)
        t = F.rms_norm(float32(x), (x.shape[-1],), self.scale, self.eps)
        return cast(t, x.dtype)


def yarn_inv_freq(config: ModelConfig) -> tuple[np.ndarray, float]:
    """Inverse frequencies ``(D/2,)`` (float64) and the YaRN concentration."""
    D, theta, f = config.head_dim, config.rope_theta, config.rope_scaling_factor
    i = np.arange(D // 2, dtype=np.float64)
    freq = theta ** (2.0 * i / D)  # (D/2,)
    if f <= 1.0:
        return 1.0 / freq, 1.0
    concentration = 0.1 * math.log(f) + 1.0
    L0 = config.initial_context_length
    low = (D / 2) * math.log(L0 / (config.rope_ntk_beta * 2 * math.pi)) / math.log(theta)
    high = (D / 2) * math.log(L0 / (config.rope_ntk_alpha * 2 * math.pi)) / math.log(theta)
    low, high = max(low, 0.0), min(high, D - 1.0)
    if high == low:
        high += 0.001  # a degenerate ramp, as transformers handles it
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)  # 0: original frequency, 1: interpolated
    inv_freq = (1.0 / (f * freq)) * ramp + (1.0 / freq) * (1.0 - ramp)
    return inv_freq, concentration


class RotaryEmbedding(nn.Module):
    """YaRN-scaled RoPE in the half-split layout: ``x[i]`` rotates with ``x[i + D/2]``.

    ``forward(positions)`` looks up ``cos, sin`` for the positions once per model
    call; :meth:`rotate` applies them to q and k heads of every layer. Tables are
    pre-computed (and grown on demand) on the device of the positions.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        inv_freq, concentration = yarn_inv_freq(config)
        self.inv_freq = inv_freq  # (D/2,) float64, on the host
        self.concentration = concentration
        self.cos_table: torch.Tensor | None = None  # (P, D) float32
        self.sin_table: torch.Tensor | None = None  # (P, D) float32

    def _build(self, length: int, device: torch.device) -> None:
        angles = np.arange(length, dtype=np.float64)[:, None] * self.inv_freq  # (P, D/2)
        cos = np.cos(angles) * self.concentration
        sin = np.sin(angles) * self.concentration
        # Rotation as one multiply-add: x * [cos, cos] + [x2, x1] * [-sin, sin]
        self.cos_table = torch.tensor(
            np.concatenate([cos, cos], -1), dtype=torch.float32, device=device
        )
        self.sin_table = torch.tensor(
            np.concatenate([-sin, sin], -1), dtype=torch.float32, device=device
        )

    def forward(self, positions: torch.Tensor, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions (B|1, T)``, all ``< end`` -> ``cos, sin``: ``(B|1, T, 1, D)`` float32."""
        needed = max(end, 1)
        table = self.cos_table
        if table is None or table.shape[0] < needed or table.device != positions.device:
            self._build(
                max(needed, 256, 2 * (0 if table is None else table.shape[0])), positions.device
            )
        return self.cos_table[positions].unsqueeze(2), self.sin_table[positions].unsqueeze(2)

    def at(self, position: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` rows ``(D,)`` of one position (the decode fast path)."""
        table = self.cos_table
        if table is None or table.shape[0] <= position or table.device != torch.device(device):
            self._build(
                max(position + 1, 256, 2 * (0 if table is None else table.shape[0])), device
            )
        return self.cos_table[position], self.sin_table[position]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x (B, T, heads, D)``: ``(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)``."""
        t = float32(x)
        x1, x2 = t.chunk(2, dim=-1)  # (B, T, heads, D/2) each
        swapped = torch.cat((x2, x1), dim=-1)  # (B, T, heads, D)
        return cast(torch.addcmul(t * cos, swapped, sin), x.dtype)  # t cos + swapped sin


@dataclass(frozen=True)
class Offsets:
    """Where each row's new tokens start: one int for every row, or a ``(B,)`` tensor.

    ``lo``/``hi`` are the smallest/largest offset as Python ints (slicing the cache
    needs them without a device sync).
    """

    value: int | torch.Tensor
    lo: int
    hi: int

    @staticmethod
    def of(offset, batch_size: int, device: torch.device) -> Offsets:
        if isinstance(offset, (int, np.integer)):
            offset = int(offset)
            if offset < 0:
                raise InputError(f"offset must be >= 0, got {offset}")
            return Offsets(offset, offset, offset)
        values = [int(o) for o in (offset.tolist() if hasattr(offset, "tolist") else offset)]
        if len(values) != batch_size:
            raise InputError(
                f"offset has {len(values)} entries but the batch has {batch_size} rows; "
                "pass one int, or one offset per row"
            )
        if min(values) < 0:
            raise InputError(f"offsets must be >= 0, got {values}")
        lo, hi = min(values), max(values)
        if lo == hi:  # every row at the same place: the cheaper int form
            return Offsets(lo, lo, hi)
        return Offsets(torch.tensor(values, dtype=torch.long, device=device), lo, hi)

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        """Absolute positions of the new tokens: ``(1, T)`` or ``(B, T)``."""
        steps = torch.arange(T, device=device)
        if isinstance(self.value, int):
            return (steps + self.value).unsqueeze(0)  # (1, T)
        return self.value[:, None] + steps  # (B, T)


class KVCache:
    """Pre-allocated keys and values of every layer, written in place.

    ``k``, ``v``: ``(L, B, max_tokens, Hkv, D)``. A forward pass writes its new keys
    at positions ``offset .. offset+T-1`` of each row and attends over the cache
    prefix up to its last new token, so decoding costs O(context) per token.
    """

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        max_tokens: int,
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ):
        for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise InputError(f"KV cache {name} must be a positive integer, got {value!r}")
        if max_tokens > config.max_context_length:
            raise ContextOverflowError(
                f"a KV cache of {max_tokens} tokens exceeds the model's context "
                f"(max_context_length={config.max_context_length}); ask for fewer tokens"
            )
        shape = (
            config.num_hidden_layers,
            batch_size,
            max_tokens,
            config.num_key_value_heads,
            config.head_dim,
        )
        # zeros, not empty: keys past a row's offset are masked, but NaN garbage would leak
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.k_layers, self.v_layers = self.k.unbind(0), self.v.unbind(0)  # per-layer views
        self._rows: list | None = None

    def rows(self, row: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the keys and values of one row: ``(max_tokens, Hkv, D)`` views."""
        if row:
            return [(k[row], v[row]) for k, v in zip(self.k_layers, self.v_layers, strict=True)]
        if self._rows is None:
            self._rows = [(k[0], v[0]) for k, v in zip(self.k_layers, self.v_layers, strict=True)]
        return self._rows

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_tokens(self) -> int:
        return self.k.shape[2]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, offsets: Offsets) -> None:
        """Store ``k, v (B, T, Hkv, D)`` at positions ``offset .. offset+T-1`` of each row."""
        T = k.shape[1]
        k_cache, v_cache = self.k_layers[layer], self.v_layers[layer]  # (B, max_tokens, Hkv, D)
        if isinstance(offsets.value, int):
            k_cache[:, offsets.value : offsets.value + T].copy_(k)
            v_cache[:, offsets.value : offsets.value + T].copy_(v)
        else:
            rows = torch.arange(k.shape[0], device=k.device)[:, None]  # (B, 1)
            cols = offsets.value[:, None] + torch.arange(T, device=k.device)  # (B, T)
            k_cache.index_put_((rows, cols), k)
            v_cache.index_put_((rows, cols), v)

    def visible(
        self, layer: int, offsets: Offsets, T: int, window: int | None
    ) -> tuple[torch.Tensor, torch.Tensor, int | torch.Tensor]:
        """The slice of the cache the new queries can see, and their offset within it.

        Keys after the last new token are never visible, and with a sliding window
        neither are keys more than ``window`` before the first query: both are cut
        off, so attention costs O(min(context, window)) per query.
        """
        end = offsets.hi + T
        start = max(0, offsets.lo - window + 1) if window else 0
        k = self.k_layers[layer][:, start:end]  # (B, S, Hkv, D), S = end - start
        v = self.v_layers[layer][:, start:end]
        return k, v, offsets.value - start


class AttentionBlock(Tracked):
    """``x + out(attention(rope(q), rope(k), v, sinks))`` on ``rmsnorm(x)``.

    One fused ``qkv`` linear (with bias) produces ``Hq`` query heads and ``Hkv``
    key/value heads; query head ``h`` reads kv head ``h // (Hq / Hkv)``. Each query
    head has a learned sink logit. Even layers see a sliding window of keys.
    """

    def __init__(self, config: ModelConfig, layer: int, attention=None, device=None):
        super().__init__()
        H, D = config.hidden_size, config.head_dim
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            D,
        )
        self.window = config.window_of_layer(layer)  # int on even layers, None on odd ones
        self.sm_scale = 1.0 / math.sqrt(D)
        self.norm = RMSNorm(H, config.rms_norm_eps, device=device)
        self.qkv = Linear(H, config.qkv_dim, bias=True, device=device)
        self.sinks = nn.Parameter(torch.zeros(self.n_heads, dtype=torch.float32, device=device))
        self.out = Linear(self.n_heads * D, H, bias=True, device=device)
        self.attention = attention if attention is not None else TorchAttention()

    def forward(
        self,
        x: torch.Tensor,  # (B, T, H)
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None = None,
        offsets: Offsets | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        Hq, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = self.qkv(self.norm(x))  # (B, T, (Hq + 2 Hkv) D), in the order q, k, v
        qk = qkv[..., : (Hq + Hkv) * D].view(B, T, Hq + Hkv, D)  # q and k heads rotate together
        v = qkv[..., (Hq + Hkv) * D :].view(B, T, Hkv, D)  # (B, T, Hkv, D)
        qk = RotaryEmbedding.rotate(qk, *rope)
        q, k = qk.split([Hq, Hkv], dim=2)  # (B, T, Hq, D), (B, T, Hkv, D)

        key_offset: int | torch.Tensor = 0
        if cache is not None:
            cache.write(self.layer, k, v, offsets)
            k, v, key_offset = cache.visible(self.layer, offsets, T, self.window)  # (B, S, Hkv, D)

        o = self.attention(
            q, k, v, self.sinks, sm_scale=self.sm_scale, window=self.window, offset=key_offset
        )  # (B, T, Hq, D)
        return x + self.out(o.reshape(B, T, Hq * D))


class MLPBlock(Tracked):
    """``x + Σ_k gate_k · expert_k(rmsnorm(x))``: a top-k mixture of experts.

    The router (``gate``, a linear with bias) scores every expert; the ``k``
    best are kept and a softmax over those ``k`` logits gives their weights.
    Expert ``e`` is a clamped SwiGLU MLP whose first matrix interleaves the
    gate and linear halves (``glu = h[..., 0::2]``, ``lin = h[..., 1::2]``).
    """

    def __init__(self, config: ModelConfig, moe=None, device=None):
        super().__init__()
        H, I, E = config.hidden_size, config.intermediate_size, config.num_experts  # noqa: E741
        self.num_experts, self.experts_per_token = E, config.experts_per_token
        self.swiglu_limit = config.swiglu_limit
        self.norm = RMSNorm(H, config.rms_norm_eps, device=device)
        self.gate = Linear(H, E, bias=True, device=device)
        self.mlp1_weight = nn.Parameter(torch.empty(E, 2 * I, H, device=device))
        self.mlp1_bias = nn.Parameter(torch.zeros(E, 2 * I, device=device))
        self.mlp2_weight = nn.Parameter(torch.empty(E, H, I, device=device))
        self.mlp2_bias = nn.Parameter(torch.zeros(E, H, device=device))
        self.moe = moe if moe is not None else TorchMoE()

    def forward(self, x: torch.Tensor, aux_losses: list | None = None) -> torch.Tensor:
        B, T, H = x.shape
        t = self.norm(x).reshape(B * T, H)  # (N, H)
        router_logits = self.gate(t)  # (N, E)
        indices, weights = self.moe.route(router_logits, self.experts_per_token)  # (N, k), (N, k)
        if aux_losses is not None:
            aux_losses.append(load_balancing_loss(router_logits, indices, self.num_experts))
        experts = getattr(self.moe, "experts", None) or moe_experts  # routing-only components
        y = experts(
            t,
            indices,
            weights,
            self.mlp1_weight,
            self.mlp1_bias,
            self.mlp2_weight,
            self.mlp2_bias,
            self.swiglu_limit,
        )  # (N, H)
        return x + y.view(B, T, H)


class TransformerBlock(Tracked):
    def __init__(self, config: ModelConfig, layer: int, attention=None, moe=None, device=None):
        super().__init__()
        self.attn = AttentionBlock(config, layer, attention, device=device)
        self.mlp = MLPBlock(config, moe, device=device)

    def forward(self, x, rope, cache=None, offsets=None, aux_losses=None) -> torch.Tensor:
        x = self.attn(x, rope, cache, offsets)  # (B, T, H)
        return self.mlp(x, aux_losses)  # (B, T, H)


class Transformer(Tracked):
    """The whole model. ``forward(tokens)`` gives training logits ``(B, T, V)``;
    with a :class:`KVCache` and an ``offset`` it extends a cached sequence.

    ``attention`` and ``moe`` are components following
    :class:`mind4_core.protocols.Attention` / ``MoERouting`` (default: the torch ones).
    Parameters are created on ``device`` in float32 and initialised randomly unless
    ``init=False`` (loading a checkpoint fills them instead).
    """

    def __init__(
        self, config: ModelConfig, *, attention=None, moe=None, device=None, init: bool = True
    ):
        super().__init__()
        self.config = config
        H, V = config.hidden_size, config.vocab_size
        self.embedding = Embedding(V, H, device=device)
        self.block = nn.ModuleList(
            TransformerBlock(config, n, attention, moe, device=device)
            for n in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(H, config.rms_norm_eps, device=device)
        self.unembedding = Linear(H, V, bias=False, device=device)
        self.rope = RotaryEmbedding(config)
        #: decode one token of one row through :mod:`mind4_torch.decode` (same result, fewer
        #: operations) when the model runs its own torch components without gradients
        self.fast_decode = True
        self._decode_step = None
        if init:
            self.init_weights()

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), ...: parameters may be new tensors
        object.__setattr__(self, "_decode_step", None)
        return super()._apply(fn, *args, **kwargs)

    def _use_decode_step(self, B: int, T: int, cache, offsets: Offsets) -> bool:
        if not (self.fast_decode and B == 1 and T == 1 and cache is not None):
            return False
        if not isinstance(offsets.value, int) or torch.is_grad_enabled():
            return False
        step = self._decode_step
        if step is None or step.version != Structure.version:
            from .decode import DecodeStep

            step = DecodeStep(self)
            object.__setattr__(self, "_decode_step", step)  # not a structure change
        return step.applies()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None, std: float = 0.02) -> None:
        """N(0, std) weights (output projections scaled by 1/sqrt(2 L)), zero biases and
        sinks, unit norm scales."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.embedding.weight.device).manual_seed(seed)
        out_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.scale"):
                p.fill_(1.0)
            elif name.endswith("bias") or name.endswith("sinks"):
                p.zero_()
            elif name.endswith("out.weight") or name.endswith("mlp2_weight"):
                p.normal_(0.0, out_std, generator=gen)
            else:
                p.normal_(0.0, std, generator=gen)

    def forward(
        self,
        tokens: torch.Tensor,  # (B, T) int64
        cache: KVCache | None = None,
        offset: int | torch.Tensor | list[int] = 0,
        *,
        last_only: bool = False,
        return_aux_loss: bool = False,
    ):
        """Logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``) in the model's dtype;
        with ``return_aux_loss`` also the mean MoE load-balancing loss of the layers."""
        if tokens.dim() != 2:
            raise InputError(f"tokens must have shape (B, T), got {tuple(tokens.shape)}")
        B, T = tokens.shape
        offsets = Offsets.of(offset, B, tokens.device)
        if cache is None and offsets.hi != 0:
            raise InputError("without a KV cache the forward pass starts at position 0 (offset 0)")
        if cache is not None:
            check_cache(cache, B, offsets, T)
        elif T > self.config.max_context_length:
            raise ContextOverflowError(
                f"{T} tokens exceed the model's context (max_context_length="
                f"{self.config.max_context_length})"
            )

        if not return_aux_loss and self._use_decode_step(B, T, cache, offsets):
            return self._decode_step(tokens, cache, offsets.value)  # (1, 1, V)

        rope = self.rope(
            offsets.positions(T, tokens.device), offsets.hi + T
        )  # cos, sin: (B|1, T, 1, D)
        aux_losses: list | None = [] if return_aux_loss else None
        x = self.embedding(tokens)  # (B, T, H)
        for block in self.block:
            x = block(x, rope, cache, offsets, aux_losses)  # (B, T, H)
        if last_only:
            x = x[:, -1:]  # (B, 1, H)
        logits = self.unembedding(self.norm(x))  # (B, T, V)
        if return_aux_loss:
            return logits, torch.stack(aux_losses).mean()
        return logits

    @classmethod
    def from_checkpoint(
        cls, checkpoint, *, device="cpu", dtype: torch.dtype = torch.float32, trainable: bool = True
    ) -> Transformer:
        """A model with a checkpoint's weights (a :class:`mind4_core.checkpoint.Checkpoint`).

        ``trainable``: canonical memory layout, dense experts, gradients on, train mode (for
        fine-tuning); otherwise the inference layout of :func:`mind4_torch.runtime.load_transformer`.
        """
        from .runtime import load_transformer

        if not trainable:
            return load_transformer(checkpoint, device=device, dtype=dtype)
        model = load_transformer(
            checkpoint, device=device, dtype=dtype, experts="dense", fast_layout=False
        )
        return model.requires_grad_(True).train()

    def new_cache(
        self, batch_size: int, max_tokens: int, dtype: torch.dtype | None = None
    ) -> KVCache:
        weight = self.embedding.weight
        return KVCache(
            self.config, batch_size, max_tokens, device=weight.device, dtype=dtype or weight.dtype
        )

    @torch.no_grad()
    def to_checkpoint_tensors(self) -> dict[str, np.ndarray]:
        """Canonical name -> contiguous float32 NumPy array, for ``write_checkpoint``."""
        out = {}
        for name, value in self.state_dict().items():
            out[name] = np.ascontiguousarray(value.detach().float().cpu().numpy())
        for name, module in self.named_modules():  # experts kept packed in MXFP4 (inference)
            for attr in ("mlp1_weight", "mlp2_weight"):
                packed = getattr(module, attr, None)
                if packed is not None and not isinstance(packed, torch.Tensor):
                    out[f"{name}.{attr}"] = packed.dense().float().cpu().numpy()
        return {name: out[name] for name in canonical_names(self.config)}


def canonical_names(config: ModelConfig) -> list[str]:
    """Every canonical tensor name of a model with this config, in checkpoint order."""
    names = ["embedding.weight"]
    for n in range(config.num_hidden_layers):
        names += [
            f"block.{n}.attn.{p}"
            for p in ("norm.scale", "qkv.weight", "qkv.bias", "sinks", "out.weight", "out.bias")
        ]
        names += [
            f"block.{n}.mlp.{p}"
            for p in (
                "norm.scale",
                "gate.weight",
                "gate.bias",
                "mlp1_weight",
                "mlp1_bias",
                "mlp2_weight",
                "mlp2_bias",
            )
        ]
    return names + ["norm.scale", "unembedding.weight"]


def check_cache(cache: KVCache, batch_size: int, offsets: Offsets, T: int) -> None:
    if not isinstance(cache, KVCache):
        raise InputError(
            f"cache must be a mind4_torch KVCache (from new_cache), got {type(cache).__name__}"
        )
    if cache.batch_size != batch_size:
        raise InputError(
            f"the KV cache holds {cache.batch_size} rows but tokens have {batch_size}; "
            "allocate a cache with new_cache(batch_size, max_tokens)"
        )
    if offsets.hi + T > cache.max_tokens:
        raise ContextOverflowError(
            f"{T} new tokens at offset {offsets.hi} need {offsets.hi + T} positions but the KV "
            f"cache holds {cache.max_tokens}; allocate a larger cache or start a new session"
        )
