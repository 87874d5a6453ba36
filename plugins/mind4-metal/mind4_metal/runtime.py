"""The metal backend's :class:`mind4_core.protocols.Runtime`: a C model whose
weights metal_native loads itself (memory-mapped, validated against the config),
and KV caches that are C contexts. Arrays are NumPy float32 on the host.

``factory(checkpoint=, config=, components=)`` is what the backend record names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mind4_core.config import Config, ModelConfig
from mind4_core.errors import ConfigError

from ._lib import check, ffi, lib
from .errors import MetalInputError

DTYPES = ("float32", "bfloat16")


def _threads() -> int:
    """Worker threads: MIND4_METAL_THREADS, else every online CPU (0)."""
    value = os.environ.get("MIND4_METAL_THREADS", "0")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"MIND4_METAL_THREADS={value!r}: expected an integer >= 0") from None
    if n < 0:
        raise ConfigError(f"MIND4_METAL_THREADS={value!r}: expected an integer >= 0")
    return n


def _placement() -> int:
    """MIND4_METAL_WEIGHTS: auto (default), mapped (zero copy) or copied (huge pages)."""
    value = os.environ.get("MIND4_METAL_WEIGHTS", "auto")
    choices = {
        "auto": lib.MIND4_WEIGHTS_AUTO,
        "mapped": lib.MIND4_WEIGHTS_MAPPED,
        "copied": lib.MIND4_WEIGHTS_COPIED,
    }
    if value not in choices:
        raise ConfigError(f"MIND4_METAL_WEIGHTS={value!r}: expected one of {', '.join(choices)}")
    return choices[value]


def _image_from_checkpoint(checkpoint) -> bytes:
    """A canonical safetensors image of any checkpoint the core opened (for
    layouts metal_native does not read itself, e.g. Hugging Face)."""
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0

    def add(name: str, dtype: str, array: np.ndarray) -> None:
        nonlocal offset
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)

    for name in checkpoint.names():
        if checkpoint.is_mxfp4(name):
            blocks, scales = checkpoint.mxfp4(name)
            add(name + ".blocks", "U8", blocks)
            add(name + ".scales", "U8", scales)
        else:
            dtype = checkpoint.dtype(name)
            add(name, dtype if dtype in ("F32", "BF16", "F16") else "F32", checkpoint.tensor(name))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


class MetalModel:
    """Owns the C model handle (and the memory image it may point into)."""

    def __init__(
        self, checkpoint, model_config: ModelConfig, dtype: str, num_threads: int | None = None
    ):
        options = ffi.new("mind4_model_options*")
        check(lib.mind4_model_options_init(options), "mind4_model_options_init")
        options.num_threads = _threads() if num_threads is None else num_threads
        options.weight_dtype = lib.MIND4_DTYPE_BF16 if dtype == "bfloat16" else lib.MIND4_DTYPE_AUTO
        options.weights_placement = _placement()
        # the core's config (possibly overridden) is authoritative, not the file's
        config_json = json.dumps(model_config.to_dict()).encode()
        options.config_json = ffi.from_buffer(config_json)
        options.config_json_size = len(config_json)
        out = ffi.new("mind4_model**")
        self._image = None
        if getattr(checkpoint, "format", "canonical") == "canonical":
            status = lib.mind4_model_create_from_path(str(checkpoint.path).encode(), options, out)
        else:
            self._image = _image_from_checkpoint(checkpoint)
            options.config_json = ffi.NULL
            status = lib.mind4_model_create_from_memory(
                config_json,
                len(config_json),
                ffi.from_buffer(self._image),
                len(self._image),
                options,
                out,
            )
        check(status, f"loading {checkpoint.path} with the metal backend")
        self.handle = ffi.gc(out[0], lib.mind4_model_release)
        config = ffi.new("mind4_model_config*")
        check(lib.mind4_model_get_config(self.handle, config), "mind4_model_get_config")
        self.vocab_size = int(config.vocab_size)
        threads = ffi.new("uint32_t*")
        check(lib.mind4_model_get_num_threads(self.handle, threads), "mind4_model_get_num_threads")
        self.num_threads = int(threads[0])

    def weight_bytes(self) -> tuple[int, int]:
        total, per_token = ffi.new("uint64_t*"), ffi.new("uint64_t*")
        check(lib.mind4_model_get_weight_bytes(self.handle, total, per_token), "weight bytes")
        return int(total[0]), int(per_token[0])


class Context:
    """One KV-cache row: a C context."""

    def __init__(self, model: MetalModel, max_tokens: int):
        out = ffi.new("mind4_context**")
        check(
            lib.mind4_context_create(model.handle, max_tokens, out),
            f"a context of {max_tokens} tokens",
        )
        self.handle = ffi.gc(out[0], lib.mind4_context_release)
        self.model = model
        # reused by every call: a decode step allocates nothing on the Python side
        self._count = ffi.new("size_t*")
        self._one = ffi.new("uint32_t[1]")

    def num_processed(self) -> int:
        check(lib.mind4_context_get_num_processed(self.handle, self._count), "num_processed")
        return int(self._count[0])

    def run(self, tokens: np.ndarray, offset: int, out: np.ndarray, last_only: bool) -> None:
        """Keep the first ``offset`` cached tokens, process ``tokens``, write logits into ``out``.

        Decode calls this once per token and its Python time is part of every token's
        latency: nothing is allocated, and the one formatted error sentence is built only
        on failure (:func:`check` returns at once on success)."""
        processed = self.num_processed()
        if offset > processed:
            raise MetalInputError(
                f"offset {offset} is past the {processed} tokens this cache row holds; "
                "a forward pass must continue at or before the cached length"
            )
        check(lib.mind4_context_truncate(self.handle, offset), "truncating the cache")
        if tokens.size == 1:  # decode: no array conversion; ids wrap to uint32 as astype does
            self._one[0] = int(tokens[0]) & 0xFFFFFFFF
            ids, n = self._one, 1
        else:
            array = np.ascontiguousarray(tokens, dtype=np.uint32)
            ids, n = ffi.from_buffer("uint32_t[]", array), array.size
        status = lib.mind4_context_append_tokens(self.handle, ids, n)
        if status:
            check(status, f"appending {n} tokens at offset {offset}")
        if last_only:
            check(lib.mind4_context_process(self.handle), "forward pass")
            check(
                lib.mind4_context_get_logits(
                    self.handle, ffi.from_buffer("float[]", out), out.size
                ),
                "reading logits",
            )
        else:
            rows = ffi.new("size_t*")
            check(
                lib.mind4_context_process_all(
                    self.handle, ffi.from_buffer("float[]", out), out.size, rows
                ),
                "forward pass",
            )


class MetalCache:
    """A KV cache of ``batch_size`` rows, each a C context of ``max_tokens``."""

    def __init__(self, model: MetalModel, batch_size: int, max_tokens: int):
        self.rows = [Context(model, max_tokens) for _ in range(batch_size)]
        self.max_tokens = max_tokens


class MetalRuntime:
    """:class:`mind4_core.protocols.Runtime` on metal_native (device ``cpu``)."""

    device = "cpu"

    def __init__(
        self,
        checkpoint,
        *,
        dtype: str = "float32",
        num_threads: int | None = None,
        model_config: ModelConfig | None = None,
    ):
        if dtype not in DTYPES:
            raise ConfigError(
                f"the metal backend computes in float32 with float32 or bfloat16 weights; "
                f"dtype {dtype!r} is not supported (allowed: {', '.join(DTYPES)})"
            )
        self.model_config = model_config or checkpoint.config
        self.dtype = dtype
        self.checkpoint = checkpoint
        self.model = MetalModel(checkpoint, self.model_config, dtype, num_threads)

    def new_cache(self, batch_size: int, max_tokens: int) -> MetalCache:
        if batch_size < 1 or max_tokens < 1:
            raise MetalInputError(
                f"a cache needs batch_size >= 1 and max_tokens >= 1, got {batch_size}, {max_tokens}"
            )
        return MetalCache(self.model, batch_size, max_tokens)

    def forward(
        self,
        tokens: np.ndarray,
        cache: MetalCache | None,
        offset: int | Sequence[int] = 0,
        *,
        last_only: bool = True,
    ) -> np.ndarray:
        """``tokens (B, T)`` -> logits ``(B, V)`` (``last_only``) or ``(B, T, V)``, float32."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise MetalInputError(
                f"tokens must have shape (batch, time) with time >= 1, got {tokens.shape}"
            )
        B, T = tokens.shape
        V = self.model.vocab_size
        if isinstance(offset, (int, np.integer)):  # one offset for every row (decode)
            offsets = [int(offset)] * B
        else:
            offsets = np.broadcast_to(np.asarray(offset, dtype=np.int64), (B,)).tolist()
        if offsets and min(offsets) < 0:
            raise MetalInputError(f"offsets must be >= 0, got {offsets}")
        if cache is None:
            if any(offsets):
                raise MetalInputError("without a cache the forward pass starts at offset 0")
            rows = [Context(self.model, T) for _ in range(B)]
        else:
            if len(cache.rows) != B:
                raise MetalInputError(f"the cache has {len(cache.rows)} rows but tokens have {B}")
            rows = cache.rows
        out = np.empty((B, V) if last_only else (B, T, V), dtype=np.float32)
        for b in range(B):
            rows[b].run(tokens[b], offsets[b], out[b], last_only)
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        if type(x) is np.ndarray and x.dtype == np.float32:  # forward's own output
            return x
        array = np.asarray(x)
        return (
            array.astype(np.float32, copy=False)
            if np.issubdtype(array.dtype, np.floating)
            else array
        )


def factory(
    *, checkpoint, config: Config | None = None, components: Mapping[str, Any] | None = None
) -> MetalRuntime:
    """The backend record's factory.

    The dtype is the one the engine resolved: components are created with it
    (the engine does not write it back into ``config``), so a component's
    ``dtype`` wins over ``config.runtime.dtype``."""
    runtime_config = getattr(config, "runtime", None)
    dtype = None
    for component in (components or {}).values():
        dtype = dtype or getattr(component, "dtype", None)
    dtype = dtype or getattr(runtime_config, "dtype", None) or "float32"
    device = getattr(runtime_config, "device", "cpu") or "cpu"
    if device not in ("auto", "cpu"):
        raise ConfigError(f"the metal backend runs on the cpu here, not {device!r}")
    return MetalRuntime(checkpoint, dtype=dtype)


def _resolve_device(name: str = "auto") -> str:
    return "cpu"


factory.resolve_device = _resolve_device  # type: ignore[attr-defined]
