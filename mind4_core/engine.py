"""The generation engine: backend-agnostic sessions over a KV cache.

:func:`load` picks a backend and its components through the plugins, opens a
checkpoint and returns a :class:`Model`. A :class:`Session` holds a token
sequence and a KV cache: ``append`` text or tokens, ``prefill``, ``sample``,
``decode``, ``generate`` (streaming), ``reset`` reusing the cache of a shared
prefix. The engine tracks how many tokens the cache holds; the backend's
runtime only runs forward passes at the offsets it is given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .checkpoint import Checkpoint, open_checkpoint
from .config import Config, ModelConfig, SamplingParams, apply_model_overrides
from .errors import BackendUnavailableError, ContextOverflowError, Mind4Error, PluginError
from .plugins import get_manager

log = logging.getLogger("mind4")

#: tokens processed per forward pass during prefill (bounds activation memory)
PREFILL_CHUNK = 512
#: KV-cache length of a session when none is asked for (the model may allow far more)
DEFAULT_SESSION_TOKENS = 4096
COMPONENT_KINDS = ("attention", "moe_routing", "sampler")
DEFAULT_TOKENIZER = "mind4-8k"


# ----------------------------------------------------------------------------- default model


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def default_checkpoint() -> Path:
    """The embedded default model: the trained one shipped in the package if present,
    else a ``tiny`` random checkpoint created once in the user's cache."""
    shipped = package_dir() / "default_model"
    if (shipped / "config.json").is_file():
        return shipped
    home = Path(os.environ.get("MIND4_HOME", Path.home() / ".cache" / "mind4"))
    target = home / "default-tiny"
    if not (target / "config.json").is_file():
        from .presets import init_checkpoint

        log.warning("creating the default tiny random model in %s (first use)", target)
        init_checkpoint("tiny", target, seed=0, experts="bf16", dtype="float32")
    return target


# ----------------------------------------------------------------------------- loading


def _select_component(kind: str, name: str, backend_record: Any, device: str, dtype: str):
    manager = get_manager()
    record = manager.component(kind, name, device=device, dtype=dtype)
    if record.array_type not in (backend_record.array_type, "numpy") or (
        record.array_type == "numpy" and kind != "sampler"
    ):
        raise PluginError(
            f"{kind} {name!r} works on {record.array_type} arrays but backend "
            f"{backend_record.name!r} uses {backend_record.array_type}; choose a {kind} made for it"
        )
    return record


def load(
    checkpoint: str | Path | Checkpoint | None = None,
    *,
    backend: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    config: Config | None = None,
    tokenizer: str | None = None,
    attention: str | None = None,
    moe_routing: str | None = None,
    sampler: str | None = None,
) -> Model:
    """Load a model for generation.

    Keyword arguments override ``config.runtime``; ``checkpoint=None`` loads the
    embedded default model. Example::

        model = mind4_core.load(backend="torch", device="cpu", dtype="float32")
        print(model.generate_text("Once upon a time", SamplingParams(temperature=0)))
    """
    config = config or Config()
    rt = config.runtime
    backend = backend or rt.backend
    device = device or rt.device
    dtype = dtype or rt.dtype
    manager = get_manager()
    try:
        backend_record = manager.backend(backend)
    except PluginError:
        installed = ", ".join(manager.names("backend")) or "none installed"
        raise PluginError(
            f"unknown backend {backend!r}; installed backends: {installed}. "
            "Install one, e.g. `pip install plugins/mind4-torch`."
        ) from None
    reason = backend_record.unavailable_reason()
    if reason:
        others = [n for n in manager.names("backend") if n != backend]
        raise BackendUnavailableError(
            f"backend {backend!r} cannot run here: {reason}"
            + (f" Backends installed here: {', '.join(others)}." if others else "")
        )
    factory = backend_record.load()
    if device == "auto":
        resolver = getattr(factory, "resolve_device", None)
        device = resolver("auto") if resolver else sorted(backend_record.devices)[0]
    device_kind = device.split(":")[0]
    if device_kind not in backend_record.devices:
        raise PluginError(
            f"backend {backend!r} does not run on {device!r}; it supports {', '.join(sorted(backend_record.devices))}"
        )
    dtype = dtype or backend_record.default_dtype.get(device_kind, "float32")
    if dtype not in backend_record.dtypes:
        raise PluginError(
            f"backend {backend!r} does not support dtype {dtype!r}; it supports {', '.join(sorted(backend_record.dtypes))}"
        )

    if isinstance(checkpoint, Checkpoint):
        ckpt = checkpoint
    else:
        ckpt = open_checkpoint(checkpoint or rt.checkpoint or default_checkpoint())
    model_config = apply_model_overrides(ckpt.config, config, where=f"checkpoint {ckpt.path}")

    overrides = {
        "attention": attention or rt.attention,
        "moe_routing": moe_routing or rt.moe_routing,
        "sampler": sampler or rt.sampler,
    }
    records = {}
    for kind in COMPONENT_KINDS:
        name = overrides[kind] or backend_record.components.get(kind)
        if name is None and kind == "sampler":
            name = "numpy"
        if name is not None:
            records[kind] = _select_component(kind, name, backend_record, device_kind, dtype)
    components = {kind: rec.create(device=device, dtype=dtype) for kind, rec in records.items()}
    if model_config is not ckpt.config:
        ckpt.config = model_config
    # the backend sees the resolved choices, not "auto" or "the backend's default"
    config = attrs.evolve(
        config,
        runtime=attrs.evolve(config.runtime, backend=backend, device=device, dtype=dtype),
    )
    runtime = factory(checkpoint=ckpt, config=config, components=components)
    return Model(
        runtime=runtime,
        checkpoint=ckpt,
        config=config,
        backend=backend,
        sampler=components["sampler"],
        sampler_on_host=records["sampler"].array_type == "numpy",
        component_names={k: r.name for k, r in records.items()},
        tokenizer_name=tokenizer or rt.tokenizer or ckpt.tokenizer or DEFAULT_TOKENIZER,
    )


# ----------------------------------------------------------------------------- model


class Model:
    """A loaded model: runtime + sampler + tokenizer. The CLI uses exactly this."""

    def __init__(
        self,
        *,
        runtime: Any,
        checkpoint: Checkpoint,
        config: Config,
        backend: str,
        sampler: Any,
        sampler_on_host: bool,
        component_names: dict[str, str],
        tokenizer_name: str,
    ):
        self.runtime = runtime
        self.checkpoint = checkpoint
        self.config = config
        self.backend = backend
        self.sampler = sampler
        self.sampler_on_host = sampler_on_host
        self.component_names = component_names
        self.tokenizer_name = tokenizer_name
        self._tokenizer = None

    @property
    def model_config(self) -> ModelConfig:
        return self.runtime.model_config

    @property
    def device(self) -> str:
        return self.runtime.device

    @property
    def dtype(self) -> str:
        return self.runtime.dtype

    @property
    def tokenizer(self):
        """The encoding (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
            if self._tokenizer.n_vocab > self.model_config.vocab_size:
                raise Mind4Error(
                    f"tokenizer {self.tokenizer_name!r} has {self._tokenizer.n_vocab} tokens but the "
                    f"model's vocabulary is {self.model_config.vocab_size}; use the checkpoint's own "
                    "tokenizer (--tokenizer)"
                )
        return self._tokenizer

    def stop_tokens(self) -> list[int]:
        """Tokens that end a plain completion (end of text, end of an assistant turn)."""
        specials = self.tokenizer.special_tokens
        return [specials[t] for t in ("<|endoftext|>", "<|return|>", "<|call|>") if t in specials]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    # -- forward passes ----------------------------------------------------------------------

    def logits(self, tokens: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """Full causal forward pass (no cache): ``tokens (B, T)`` -> ``float32 (B, T, V)``."""
        array = _token_array(tokens, self.model_config)
        if array.shape[1] > self.model_config.max_context_length:
            raise ContextOverflowError(
                f"{array.shape[1]} tokens exceed the model's context of {self.model_config.max_context_length}"
            )
        out = self.runtime.forward(array, None, 0, last_only=False)
        return self.runtime.to_numpy(out)

    def session(self, max_tokens: int | None = None) -> Session:
        return Session(self, max_tokens)

    def _sample(self, logits: Any, params: SamplingParams, generator: Any) -> np.ndarray:
        if self.sampler_on_host:
            logits = self.runtime.to_numpy(logits)
        return self.sampler.sample(logits, params, generator)

    # -- generation ---------------------------------------------------------------------------

    def _params(self, params: SamplingParams | None) -> SamplingParams:
        return params if params is not None else self.config.sampling

    def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        *,
        stop_tokens: Iterable[int] | None = None,
        stream: bool = False,
    ) -> list[int] | Iterator[int]:
        """Generate up to ``params.max_new_tokens`` tokens after ``prompt``."""
        params = self._params(params)
        tokens = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        max_ctx = self.model_config.max_context_length
        if len(tokens) > max_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(tokens)} tokens but the model's context holds {max_ctx}; "
                "shorten the prompt"
            )
        session = self.session(min(max_ctx, len(tokens) + params.max_new_tokens))
        session.append(tokens)
        stops = self.stop_tokens() if stop_tokens is None else stop_tokens
        iterator = session.generate(params, stop_tokens=stops)
        return iterator if stream else list(iterator)

    def generate_text(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        *,
        stop_tokens: Iterable[int] | None = None,
    ) -> str:
        tokens = self.generate(prompt, params, stop_tokens=stop_tokens)
        stops = set(self.stop_tokens() if stop_tokens is None else stop_tokens)
        return self.tokenizer.decode([t for t in tokens if t not in stops])

    def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | None = None,
        *,
        stop_tokens: Iterable[int] | None = None,
    ) -> list[list[int]]:
        """Generate for several prompts at once (one forward pass per step for all rows).

        Rows are right-padded for prefill; each row then decodes at its own
        offset, overwriting its padding, so results equal one-by-one generation
        (for greedy decoding exactly; seeded sampling draws per row in order).
        """
        params = self._params(params)
        prompts = [list(p) for p in prompts]
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise Mind4Error("generate_batch: every prompt needs at least one token")
        stops = set(self.stop_tokens() if stop_tokens is None else stop_tokens)
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        longest = int(lengths.max())
        max_ctx = self.model_config.max_context_length
        if longest > max_ctx:
            raise ContextOverflowError(
                f"a prompt has {longest} tokens; the context holds {max_ctx}"
            )
        capacity = min(max_ctx, longest + params.max_new_tokens)
        batch = np.zeros((len(prompts), longest), dtype=np.int64)
        for row, p in enumerate(prompts):
            batch[row, : len(p)] = p
        cache = self.runtime.new_cache(len(prompts), capacity)
        logits = None
        for start in range(0, longest, PREFILL_CHUNK):
            chunk = self.runtime.forward(
                batch[:, start : start + PREFILL_CHUNK], cache, start, last_only=False
            )
            logits = chunk if logits is None else _concat_time(logits, chunk)
        last = _gather_rows(logits, lengths - 1)
        generator = self.sampler.generator(params.seed)
        outputs: list[list[int]] = [[] for _ in prompts]
        done = np.zeros(len(prompts), dtype=bool)
        offsets = lengths.copy()
        for _ in range(params.max_new_tokens):
            tokens = self._sample(last, params, generator)
            for row, tok in enumerate(tokens):
                if not done[row]:
                    outputs[row].append(int(tok))
                    done[row] = int(tok) in stops or offsets[row] >= capacity
            if done.all():
                break
            last = self.runtime.forward(
                tokens.reshape(-1, 1).astype(np.int64), cache, offsets, last_only=True
            )
            offsets = offsets + 1
        return outputs


def _concat_time(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b], axis=1)
    import torch  # only reached by torch-array backends

    return torch.cat([a, b], dim=1)


def _gather_rows(logits: Any, positions: np.ndarray) -> Any:
    rows = np.arange(len(positions))
    if isinstance(logits, np.ndarray):
        return logits[rows, positions]
    import torch

    return logits[
        torch.as_tensor(rows, device=logits.device),
        torch.as_tensor(positions, device=logits.device),
    ]


def _token_array(tokens: Sequence[Sequence[int]] | np.ndarray, cfg: ModelConfig) -> np.ndarray:
    try:
        array = np.asarray(tokens, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise Mind4Error(
            "tokens must be a rectangular (batch, time) array of integer ids"
        ) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise Mind4Error(f"tokens must have shape (batch, time) with time >= 1, got {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= cfg.vocab_size):
        raise Mind4Error(
            f"token ids must lie in [0, {cfg.vocab_size}), got [{array.min()}, {array.max()}]"
        )
    return array


# ----------------------------------------------------------------------------- session


class Session:
    """A token sequence with its KV cache (one row)."""

    def __init__(self, model: Model, max_tokens: int | None = None):
        cfg = model.model_config
        self.model = model
        self.max_tokens = max_tokens or min(cfg.max_context_length, DEFAULT_SESSION_TOKENS)
        if self.max_tokens > cfg.max_context_length:
            raise ContextOverflowError(
                f"a session of {self.max_tokens} tokens exceeds the model's context of {cfg.max_context_length}"
            )
        self.cache = model.runtime.new_cache(1, self.max_tokens)
        self.tokens: list[int] = []
        self._processed = 0  # tokens whose keys/values are in the cache
        self._logits: Any = None  # logits after the last processed token (runtime array, (1, V))

    @property
    def pending(self) -> int:
        return len(self.tokens) - self._processed

    def append(self, text_or_tokens: str | Sequence[int]) -> list[int]:
        """Append text (encoded as ordinary text, never special tokens) or token ids."""
        if isinstance(text_or_tokens, str):
            new = self.model.encode(text_or_tokens)
        else:
            new = [int(t) for t in text_or_tokens]
            vocab = self.model.model_config.vocab_size
            bad = [t for t in new if not 0 <= t < vocab]
            if bad:
                raise Mind4Error(f"token id {bad[0]} is outside the vocabulary [0, {vocab})")
        if len(self.tokens) + len(new) > self.max_tokens:
            raise ContextOverflowError(
                f"{len(self.tokens) + len(new)} tokens do not fit in the context of {self.max_tokens} "
                f"(the session already holds {len(self.tokens)}); shorten the prompt, raise "
                "max_new_tokens' budget or use a model with a longer context"
            )
        self.tokens.extend(new)
        return new

    def prefill(self) -> np.ndarray:
        """Process every pending token; return the last position's logits ``(V,)``."""
        self._process()
        return self.model.runtime.to_numpy(self._logits)[0]

    def _process(self) -> None:
        if not self.tokens:
            raise Mind4Error("the session is empty: append a prompt first")
        if self.pending == 0 and self._logits is not None:
            return
        if self.pending == 0:  # logits were dropped by reset(): recompute the last token
            self._processed -= 1
        runtime = self.model.runtime
        while self.pending:
            start = self._processed
            chunk = np.asarray([self.tokens[start : start + PREFILL_CHUNK]], dtype=np.int64)
            self._logits = runtime.forward(chunk, self.cache, start, last_only=True)
            self._processed += chunk.shape[1]

    def sample(self, params: SamplingParams, generator: Any = None) -> int:
        """Draw the next token (does not append it)."""
        self._process()
        if generator is None:
            generator = self.model.sampler.generator(params.seed)
        return int(self.model._sample(self._logits, params, generator)[0])

    def decode(self, token: int) -> np.ndarray:
        """Append one token and process it; return the new logits ``(V,)``."""
        self.append([token])
        return self.prefill()

    def generate(self, params: SamplingParams, *, stop_tokens: Iterable[int] = ()) -> Iterator[int]:
        """Yield up to ``params.max_new_tokens`` tokens, appending each; stop after a stop token."""
        stops = set(stop_tokens)
        generator = self.model.sampler.generator(params.seed)
        for _ in range(params.max_new_tokens):
            token = self.sample(params, generator)
            yield token
            if token in stops:
                return
            if len(self.tokens) >= self.max_tokens:
                raise ContextOverflowError(
                    f"the context of {self.max_tokens} tokens is full; generation stopped"
                )
            self.append([token])

    def reset(self, tokens: Sequence[int] | None = None) -> int:
        """Start over with ``tokens`` (or empty), keeping the cached shared prefix.

        Returns how many cached tokens were reused."""
        tokens = [] if tokens is None else [int(t) for t in tokens]
        if len(tokens) > self.max_tokens:
            raise ContextOverflowError(
                f"{len(tokens)} tokens do not fit in the context of {self.max_tokens}"
            )
        shared = 0
        for a, b in zip(self.tokens[: self._processed], tokens):
            if a != b:
                break
            shared += 1
        self.tokens = tokens
        self._processed = shared
        self._logits = None
        return shared


class TextStream:
    """Turns a stream of token ids into text, holding back incomplete UTF-8."""

    def __init__(self, tokenizer: Any, skip: Iterable[int] = ()):
        self.tokenizer = tokenizer
        self.skip = set(skip)
        self._pending = b""

    def push(self, token: int) -> str:
        if token in self.skip:
            return ""
        self._pending += self.tokenizer.decode_bytes([token])
        for cut in range(len(self._pending), max(len(self._pending) - 4, -1), -1):
            try:
                text = self._pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._pending = self._pending[cut:]
            return text
        return ""

    def flush(self) -> str:
        text, self._pending = self._pending.decode("utf-8", errors="replace"), b""
        return text


def load_tokenizer(name_or_path: str):
    """A registered encoding by name, or an encoding directory by path."""
    if Path(name_or_path).exists():
        from mind4_tokenizer import get_encoding

        return get_encoding(name_or_path)
    manager = get_manager()
    try:
        record = manager.component("tokenizer", name_or_path)
    except PluginError as exc:
        raise PluginError(
            f"{exc} (a tokenizer may also be given as a path to an encoding directory)"
        ) from None
    return record.create()


__all__ = ["Model", "Session", "TextStream", "default_checkpoint", "load", "load_tokenizer"]
