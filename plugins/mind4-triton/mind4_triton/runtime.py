"""The Triton backend's runtime: a gpt-oss model as fused kernels on one GPU.

One layer, for ``N = B·T`` new tokens (``x`` the float32 residual stream,
``h`` its normalised copy in the model dtype)::

    qkv = h @ qkv_wᵀ + b                         cuBLAS                    (N, (Hq+2Hkv)·D)
    q   = rope(q); cache[k, v] = rope(k), v      rope_qkv kernel           (B, T, Hq, D)
    o   = attention(q, cache, sinks, window)     flash kernel (split-K)    (B, T, Hq, D)
    a   = o @ out_wᵀ + b                         cuBLAS                    (N, H)
    x  += a;  h = rmsnorm(x) · mlp_norm          add_rmsnorm kernel
    experts, gates = top-k(h @ gate_wᵀ + b)      gate_route kernel         (N, k)
    pairs grouped by expert                      align kernel
    act = swiglu(h[token] @ mlp1[e]ᵀ + b1)       MXFP4 matmul kernel       (pairs, I)
    y   = gate · (act @ mlp2[e]ᵀ + b2)           MXFP4 matmul kernel       (pairs, H)
    x  += Σ_k y;  h = rmsnorm(x) · next norm     add_rows_rmsnorm kernel

The embedding lookup is fused into the first norm and the last layer's MoE sum
into the final norm; the unembedding is one cuBLAS matmul (of the last
position only, during prefill). MXFP4 expert weights stay packed on the GPU
(``blocks`` + ``scales``, 4.25 bits per weight) and are decoded in registers.

The KV cache is pre-allocated, ``(layers, B, Hkv, S, D)`` per tensor (each
head's keys contiguous for decode). A decode step (``T == 1``) is captured
once per (cache, batch size) as a CUDA graph and replayed: inputs and
offsets are copied into static device buffers, so no kernel launch overhead
and no host synchronisation inside the step (``MIND4_TRITON_GRAPHS=0`` turns
graphs off).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from mind4_core.config import Config, ModelConfig
from mind4_core.errors import BackendUnavailableError, ConfigError, ContextOverflowError

from .components import TritonAttention, TritonMoE
from .errors import TritonInputError
from .kernels import gemv as gemv_kernels
from .kernels import moe as moe_kernels
from .kernels import rmsnorm as norm_kernels
from .kernels.attention import attention
from .kernels.moe import MXFP4Weight
from .kernels.rope import rope_qkv, rope_table
from .plugin import availability, interpreted

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ----------------------------------------------------------------------------- weights


@attrs.frozen
class Layer:
    """One transformer block's tensors on the device."""

    attn_norm: torch.Tensor  # (H,) float32
    qkv_w: torch.Tensor  # ((Hq+2Hkv)·D, H)
    qkv_b: torch.Tensor  # ((Hq+2Hkv)·D,)
    sinks: torch.Tensor  # (Hq,) float32
    out_w: torch.Tensor  # (H, Hq·D)
    out_b: torch.Tensor  # (H,)
    mlp_norm: torch.Tensor  # (H,) float32
    gate_w: torch.Tensor  # (E, H)
    gate_b: torch.Tensor  # (E,) float32
    mlp1_w: Any  # (E, 2I, H): MXFP4Weight or a dense tensor
    mlp1_b: torch.Tensor  # (E, 2I) float32
    mlp2_w: Any  # (E, H, I)
    mlp2_b: torch.Tensor  # (E, H) float32


def _host_tensor(checkpoint, name: str) -> torch.Tensor:
    array = checkpoint.tensor(name)
    with warnings.catch_warnings():  # memory-mapped and read-only: copied below, never written
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.ascontiguousarray(array))
    return t.view(torch.bfloat16) if checkpoint.dtype(name) == "BF16" else t


def load_weights(checkpoint, device: torch.device) -> dict[str, Any]:
    """Every canonical tensor of ``checkpoint`` on ``device``, in its stored dtype;
    MXFP4 experts as :class:`MXFP4Weight` (still packed)."""
    weights: dict[str, Any] = {}
    for name in checkpoint.names():
        if checkpoint.is_mxfp4(name):
            blocks, scales = (
                torch.from_numpy(np.ascontiguousarray(a)).to(device, copy=True)
                for a in checkpoint.mxfp4(name)
            )
            weights[name] = MXFP4Weight.of(blocks, scales)
        else:
            weights[name] = _host_tensor(checkpoint, name).to(device, copy=True)
    return weights


def random_weights(
    config: ModelConfig,
    device,
    dtype: torch.dtype = torch.bfloat16,
    *,
    seed: int = 0,
    experts: str = "mxfp4",
) -> dict[str, Any]:
    """A random model made directly on ``device`` (no host copy, no file): dense
    weights ~ N(0, 0.02), norm scales ~ 1, MXFP4 experts with uniform codes and
    scale 2^-8 (values up to ±0.023), as :func:`mind4_core.presets.init_checkpoint`."""
    from mind4_core.checkpoint import expected_tensors

    g = torch.Generator(device=device).manual_seed(seed)
    out: dict[str, Any] = {}
    for exp in expected_tensors(config):
        name, shape = exp.name, exp.shape
        if exp.mxfp4_ok and experts == "mxfp4":
            *lead, rows, cols = shape
            blocks = torch.randint(
                0, 256, (*lead, rows, cols // 32, 16), generator=g, device=device, dtype=torch.uint8
            )
            scales = torch.full(
                (*lead, rows, cols // 32), 127 - 8, device=device, dtype=torch.uint8
            )
            out[name] = MXFP4Weight.of(blocks, scales)
            continue
        value = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
        if name.endswith("norm.scale"):
            value = 1.0 + 0.1 * value
        elif name.endswith("sinks"):
            pass
        elif name.endswith("out.weight") or name.endswith("mlp2_weight"):
            value *= 0.02 / math.sqrt(2 * config.num_hidden_layers)
        else:
            value *= 0.02
        keep_f32 = name.endswith(("norm.scale", "sinks"))
        out[name] = value if keep_f32 else value.to(dtype)
    return out


def _dense(w: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(w, MXFP4Weight):
        return moe_kernels.dequantize(w).to(dtype)
    return w.to(dtype).contiguous()


# ----------------------------------------------------------------------------- cache


class TritonKVCache:
    """Keys and values of every layer: ``k, v (layers, B, Hkv, S, D)``, written in place.

    ``k_view(layer)`` is the ``(B, S, Hkv, D)`` view the attention protocol uses.
    Decode CUDA graphs live with the cache (they hold its addresses).
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_tokens: int, *, device, dtype):
        shape = (
            config.num_hidden_layers,
            batch_size,
            config.num_key_value_heads,
            max_tokens,
            config.head_dim,
        )
        # zeros, not empty: a masked key's probability is 0, but 0 · NaN garbage would be NaN
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.graphs: dict[int, DecodeGraph] = {}

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_tokens(self) -> int:
        return self.k.shape[3]

    def k_view(self, layer: int) -> torch.Tensor:
        return self.k[layer].transpose(1, 2)  # (B, S, Hkv, D)

    def v_view(self, layer: int) -> torch.Tensor:
        return self.v[layer].transpose(1, 2)


@attrs.define
class DecodeGraph:
    """A captured decode step: static inputs, the graph, its static logits."""

    tokens: torch.Tensor  # (B, 1) int64
    offsets: torch.Tensor  # (B,) int32
    graph: Any
    logits: torch.Tensor  # (B, V) float32


# ----------------------------------------------------------------------------- runtime


class TritonRuntime:
    """:class:`mind4_core.protocols.Runtime` of the Triton backend."""

    def __init__(
        self,
        config: ModelConfig,
        weights: Mapping[str, Any],
        *,
        device: torch.device | str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        attention_component=None,
        moe_component=None,
        use_graphs: bool | None = None,
    ):
        device = torch.device(device)
        self.model_config = config
        self._device, self._dtype = device, dtype
        self.device = str(device)
        self.dtype = {v: k for k, v in DTYPES.items()}[dtype]
        # a component from another plugin replaces the fused kernel (same protocol)
        self._attention = (
            None
            if isinstance(attention_component, (TritonAttention, type(None)))
            else attention_component
        )
        self._moe = None if isinstance(moe_component, (TritonMoE, type(None))) else moe_component
        if use_graphs is None:
            use_graphs = os.environ.get("MIND4_TRITON_GRAPHS", "1") != "0"
        self.use_graphs = (
            use_graphs and device.type == "cuda" and self._attention is None and self._moe is None
        )

        def f32(name):
            return weights[name].to(device=device, dtype=torch.float32)

        def model_dtype(name):
            return weights[name].to(device=device, dtype=dtype)

        def expert(name):
            w = weights[name]
            if isinstance(w, MXFP4Weight) and self._moe is None:
                return w._replace(blocks=w.blocks.to(device), scales=w.scales.to(device))
            return _dense(w, dtype).to(device)

        self.embedding = model_dtype("embedding.weight")  # (V, H)
        self.final_norm = f32("norm.scale")
        self.unembedding = model_dtype("unembedding.weight")  # (V, H)
        self.layers = []
        for n in range(config.num_hidden_layers):
            a, m = f"block.{n}.attn.", f"block.{n}.mlp."
            self.layers.append(
                Layer(
                    attn_norm=f32(a + "norm.scale"),
                    qkv_w=model_dtype(a + "qkv.weight"),
                    qkv_b=model_dtype(a + "qkv.bias"),
                    sinks=f32(a + "sinks"),
                    out_w=model_dtype(a + "out.weight"),
                    out_b=model_dtype(a + "out.bias"),
                    mlp_norm=f32(m + "norm.scale"),
                    gate_w=model_dtype(m + "gate.weight"),
                    gate_b=f32(m + "gate.bias"),
                    mlp1_w=expert(m + "mlp1_weight"),
                    mlp1_b=f32(m + "mlp1_bias"),
                    mlp2_w=expert(m + "mlp2_weight"),
                    mlp2_b=f32(m + "mlp2_bias"),
                )
            )
        self.cos, self.sin = rope_table(config, config.max_context_length, device)

    # -- protocol ---------------------------------------------------------------------------

    def new_cache(self, batch_size: int, max_tokens: int) -> TritonKVCache:
        for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise TritonInputError(f"KV cache {name} must be a positive integer, got {value!r}")
        if max_tokens > self.model_config.max_context_length:
            raise ContextOverflowError(
                f"a KV cache of {max_tokens} tokens exceeds the model's context "
                f"(max_context_length={self.model_config.max_context_length}); ask for fewer"
            )
        return TritonKVCache(
            self.model_config,
            int(batch_size),
            int(max_tokens),
            device=self._device,
            dtype=self._dtype,
        )

    @torch.inference_mode()
    def forward(
        self,
        tokens: np.ndarray,
        cache: TritonKVCache | None,
        offset: int | Sequence[int] = 0,
        *,
        last_only: bool = True,
    ) -> torch.Tensor:
        """``tokens (B, T)`` -> float32 logits ``(B, V)`` (``last_only``) or ``(B, T, V)``."""
        tokens = self._check_tokens(tokens)
        B, T = tokens.shape
        offsets = self._check_offsets(offset, B)
        if cache is None:
            if offsets.max() != 0:
                raise TritonInputError("without a KV cache the forward pass starts at offset 0")
            if T > self.model_config.max_context_length:
                raise ContextOverflowError(
                    f"{T} tokens exceed the model's context ({self.model_config.max_context_length})"
                )
            cache = TritonKVCache(self.model_config, B, T, device=self._device, dtype=self._dtype)
        elif not isinstance(cache, TritonKVCache):
            raise TritonInputError(
                f"cache must come from this runtime's new_cache(), got {type(cache).__name__}"
            )
        elif cache.batch_size != B:
            raise TritonInputError(
                f"the KV cache holds {cache.batch_size} rows but tokens have {B}; "
                "allocate a cache with new_cache(batch_size, max_tokens)"
            )
        elif int(offsets.max()) + T > cache.max_tokens:
            raise ContextOverflowError(
                f"{T} new tokens at offset {int(offsets.max())} need {int(offsets.max()) + T} "
                f"positions but the KV cache holds {cache.max_tokens}"
            )
        if T == 1 and self.use_graphs:
            logits = self._decode_with_graph(tokens, cache, offsets)  # (B, V)
            return logits if last_only else logits[:, None]  # (B, 1, V)
        tokens_dev = torch.from_numpy(tokens).to(self._device)
        offsets_dev = torch.from_numpy(offsets).to(self._device)
        return self._forward(tokens_dev, cache, offsets_dev, last_only)

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach()
            return (x.float() if x.is_floating_point() else x.long()).cpu().numpy()
        return np.asarray(x)

    # -- checks -----------------------------------------------------------------------------

    def _check_tokens(self, tokens) -> np.ndarray:
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        array = np.asarray(tokens)
        if array.dtype.kind not in "iu":
            raise TritonInputError(f"tokens must be integers, got dtype {array.dtype}")
        if array.ndim != 2 or 0 in array.shape:
            raise TritonInputError(
                f"tokens must have shape (B, T) with B, T >= 1, got {array.shape}"
            )
        V = self.model_config.vocab_size
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi >= V:
            raise TritonInputError(
                f"token id {lo if lo < 0 else hi} is outside the vocabulary 0..{V - 1}"
            )
        return np.ascontiguousarray(array, dtype=np.int64)

    def _check_offsets(self, offset, B: int) -> np.ndarray:
        if isinstance(offset, torch.Tensor):
            offset = offset.detach().cpu().numpy()
        values = np.asarray(offset, dtype=np.int64).reshape(-1)
        if values.size == 1:
            values = np.repeat(values, B)
        if values.size != B:
            raise TritonInputError(
                f"offset has {values.size} entries but the batch has {B} rows; pass one int or one per row"
            )
        if values.min() < 0:
            raise TritonInputError(f"offsets must be >= 0, got {values.tolist()}")
        return values.astype(np.int32)

    # -- the forward pass -------------------------------------------------------------------

    def _forward(
        self, tokens: torch.Tensor, cache: TritonKVCache, offsets: torch.Tensor, last_only: bool
    ) -> torch.Tensor:
        """Device tensors in, float32 logits out; no host synchronisation (graph-safe)."""
        cfg = self.model_config
        B, T = tokens.shape
        N, H, V = B * T, cfg.hidden_size, cfg.vocab_size
        Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        k, eps = cfg.experts_per_token, cfg.rms_norm_eps
        sm_scale = 1.0 / math.sqrt(D)
        experts_cfg = moe_kernels.expert_config(N * k)

        x = torch.empty((N, H), device=self._device, dtype=torch.float32)  # residual stream
        h = torch.empty((N, H), device=self._device, dtype=self._dtype)  # its normalised copy
        norm_kernels.embed_rmsnorm(
            tokens.reshape(N), self.embedding, x, self.layers[0].attn_norm, eps, h
        )
        for n, layer in enumerate(self.layers):
            # attention
            qkv = gemv_kernels.linear(h, layer.qkv_w, layer.qkv_b)  # (N, (Hq+2Hkv)·D)
            k_cache, v_cache = cache.k_view(n), cache.v_view(n)  # (B, S, Hkv, D)
            q = rope_qkv(qkv.view(B, T, -1), self.cos, self.sin, offsets, k_cache, v_cache, Hq, Hkv)
            attend = self._attention or attention
            o = attend(
                q,
                k_cache,
                v_cache,
                layer.sinks,
                sm_scale=sm_scale,
                window=cfg.window_of_layer(n),
                offset=offsets,
            )  # (B, T, Hq, D)
            a = gemv_kernels.linear(o.reshape(N, Hq * D), layer.out_w, layer.out_b)  # (N, H)
            norm_kernels.add_rmsnorm(x, a, layer.mlp_norm, eps, h)

            # mixture of experts
            next_norm = (
                self.layers[n + 1].attn_norm if n + 1 < len(self.layers) else self.final_norm
            )
            expert_weights = (layer.mlp1_w, layer.mlp1_b, layer.mlp2_w, layer.mlp2_b)
            if self._moe is not None:
                logits = F.linear(h, layer.gate_w, layer.gate_b.to(self._dtype))
                indices, gates = self._moe.route(logits, k)
                y = self._moe.experts(h, indices, gates, *expert_weights, cfg.swiglu_limit)
                norm_kernels.add_rmsnorm(x, y, next_norm, eps, h)
                continue
            indices, gates = moe_kernels.gate_route(h, layer.gate_w, layer.gate_b, k)  # (N, k)
            y = moe_kernels.expert_rows(
                h, indices, gates, *expert_weights, cfg.swiglu_limit, experts_cfg
            )  # (N·k, H) in h's dtype, gate-weighted
            norm_kernels.add_rows_rmsnorm(x, y, k, next_norm, eps, h)

        if last_only:
            last = h.view(B, T, H)[:, -1]  # (B, H)
            return gemv_kernels.linear(last, self.unembedding).float()  # (B, V)
        return F.linear(h, self.unembedding).float().view(B, T, V)

    # -- CUDA graphs for decode ---------------------------------------------------------------

    def _decode_with_graph(
        self, tokens: np.ndarray, cache: TritonKVCache, offsets: np.ndarray
    ) -> torch.Tensor:
        B = tokens.shape[0]
        step = cache.graphs.get(B)
        if step is None:
            step = self._capture(cache, tokens, offsets)
            cache.graphs[B] = step
            return step.logits.clone()  # the warm-up computed this step already
        step.tokens.copy_(torch.from_numpy(tokens), non_blocking=False)
        step.offsets.copy_(torch.from_numpy(offsets), non_blocking=False)
        step.graph.replay()
        return step.logits.clone()

    def _capture(
        self, cache: TritonKVCache, tokens: np.ndarray, offsets: np.ndarray
    ) -> DecodeGraph:
        """Warm up on a side stream (compiles kernels, computes this step), then capture."""
        static_tokens = torch.from_numpy(tokens).to(self._device)
        static_offsets = torch.from_numpy(offsets).to(self._device)
        side = torch.cuda.Stream(self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            self._forward(static_tokens, cache, static_offsets, True)
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # a private memory pool per graph: a pool shared across caches outlives the graphs
        # that made it, and capturing into it again trips the caching allocator's assertion
        # (`use_count > 0`, seen on an H100 with torch 2.11)
        with torch.cuda.graph(graph):
            logits = self._forward(static_tokens, cache, static_offsets, True)
        # the capture ran nothing: replay once so `logits` holds this step
        graph.replay()
        return DecodeGraph(static_tokens, static_offsets, graph, logits)


# ----------------------------------------------------------------------------- factory


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` (or ``cpu`` under Triton's interpreter)."""
    name = name or "auto"
    if name == "auto":
        if torch.cuda.is_available() and not interpreted():
            return torch.device("cuda")
        return torch.device("cpu" if interpreted() else "cuda")
    device = torch.device(name)
    if device.type == "cpu" and not interpreted():
        raise ConfigError(
            "the Triton backend runs on CUDA GPUs; on a CPU use `--backend torch` "
            "(or set TRITON_INTERPRET=1 to run Triton's slow interpreter, for tests)"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"the Triton backend runs on cuda, not {device.type!r}; use --backend torch"
        )
    return device


def factory(
    *, checkpoint, config: Config | None = None, components: Mapping[str, Any] | None = None
):
    """The Triton backend's factory (``BackendRecord.factory``)."""
    reason = availability()
    if reason:
        raise BackendUnavailableError(f"backend 'triton' cannot run here: {reason}")
    runtime_config = getattr(config, "runtime", None)
    components = dict(components or {})
    # the engine creates components with the device and dtype it resolved; the config may
    # still say "auto" / None, so those win
    made = [c for c in components.values() if getattr(c, "dtype", None) in DTYPES]
    device = resolve_device(
        str(made[0].device) if made else getattr(runtime_config, "device", "auto")
    )
    dtype_name = (
        (made[0].dtype if made else None)
        or getattr(runtime_config, "dtype", None)
        or ("bfloat16" if device.type == "cuda" else "float32")
    )
    if dtype_name not in DTYPES:
        raise ConfigError(f"invalid dtype {dtype_name!r}; allowed: {', '.join(DTYPES)}")
    weights = load_weights(checkpoint, device)
    return TritonRuntime(
        checkpoint.config,
        weights,
        device=device,
        dtype=DTYPES[dtype_name],
        attention_component=components.get("attention"),
        moe_component=components.get("moe_routing"),
    )


factory.resolve_device = lambda name="auto": str(resolve_device(name))
