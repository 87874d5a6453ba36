"""Samplers: the in-process engine, and an OpenAI-compatible HTTP endpoint.

:class:`EngineSampler` renders a conversation in the harmony format, generates
with :class:`mind4_core.engine.Model` (a whole batch per call through
``Model.generate_batch``) and parses the assistant's final answer.
:class:`ChatCompletionsSampler` posts to ``{base_url}/chat/completions`` of any
OpenAI-compatible server using only the standard library.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mind4_core.config import SamplingParams

from .chat import parse_completion, render_prompt, stop_tokens
from .errors import SamplerError
from .types import Messages, SamplerBase, SamplerResponse


def _log_softmax_at(logits: np.ndarray, targets: Sequence[int]) -> list[float]:
    """``logits (T, V)``, ``targets (T,)`` -> ``log p(target_t)`` per row, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(z).sum(axis=-1))  # (T,)
    return (z[np.arange(len(targets)), targets] - logz).tolist()


class EngineSampler(SamplerBase):
    """Greedy (by default) chat completions from an in-process ``Model``.

    ``model`` needs ``tokenizer``, ``model_config`` and ``generate``;
    ``generate_batch`` is used when present (one forward pass per step for the
    whole batch), ``logits`` when ``logprobs=True`` (one extra forward pass
    per example to score the completion).
    """

    def __init__(
        self,
        model: Any,
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = 0,
        batch_size: int = 16,
        logprobs: bool = False,
    ):
        self.model = model
        self.params = SamplingParams(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        self.batch_size = max(1, int(batch_size))
        self.logprobs = logprobs
        self.tokenizer = model.tokenizer
        self.stops = stop_tokens(self.tokenizer)
        self.name = f"engine:{getattr(model, 'backend', '?')}"

    @classmethod
    def load(
        cls,
        checkpoint: str | None = None,
        *,
        backend: str = "torch",
        device: str = "auto",
        dtype: str | None = None,
        **kwargs: Any,
    ) -> EngineSampler:
        """Load a model with :func:`mind4_core.engine.load` and wrap it."""
        from mind4_core.engine import load

        return cls(load(checkpoint, backend=backend, device=device, dtype=dtype), **kwargs)

    # -- what gets recorded ------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        cfg = getattr(self.model, "model_config", None)
        return int(getattr(cfg, "max_context_length", 1 << 30))

    def describe(self) -> dict[str, Any]:
        m = self.model
        ckpt = getattr(m, "checkpoint", None)
        return {
            "name": self.name,
            "kind": "engine",
            "backend": getattr(m, "backend", None),
            "device": str(getattr(m, "device", None)),
            "dtype": getattr(m, "dtype", None),
            "checkpoint": str(getattr(ckpt, "path", "")) or None,
            "tokenizer": getattr(self.tokenizer, "name", None),
            "components": dict(getattr(m, "component_names", {}) or {}),
            "sampling": {
                "temperature": self.params.temperature,
                "top_k": self.params.top_k,
                "top_p": self.params.top_p,
                "max_new_tokens": self.params.max_new_tokens,
                "seed": self.params.seed,
            },
            "batch_size": self.batch_size,
        }

    # -- sampling ----------------------------------------------------------------------------

    def __call__(self, messages: Messages) -> SamplerResponse:
        out = self.sample_batch([messages])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def _params_for(self, prompts: Sequence[Sequence[int]]) -> SamplingParams:
        longest = max(len(p) for p in prompts)
        room = self.context_length - longest
        if room < 1:
            raise SamplerError(
                f"the prompt has {longest} tokens; the model's context is {self.context_length} "
                "tokens, which leaves no room for an answer"
            )
        if room >= self.params.max_new_tokens:
            return self.params
        return SamplingParams(
            temperature=self.params.temperature,
            top_k=self.params.top_k,
            top_p=self.params.top_p,
            max_new_tokens=room,
            seed=self.params.seed,
        )

    def _generate(self, prompts: list[list[int]]) -> list[list[int]]:
        params = self._params_for(prompts)
        if len(prompts) > 1 and hasattr(self.model, "generate_batch"):
            return [
                list(o) for o in self.model.generate_batch(prompts, params, stop_tokens=self.stops)
            ]
        return [list(self.model.generate(p, params, stop_tokens=self.stops)) for p in prompts]

    def _response(self, prompt: list[int], completion: list[int]) -> SamplerResponse:
        parsed = parse_completion(self.tokenizer, completion)
        logprobs = None
        if self.logprobs and completion:
            full = np.asarray([prompt + completion], dtype=np.int64)  # (1, P+C)
            logits = np.asarray(self.model.logits(full))[0]  # (P+C, V)
            logprobs = _log_softmax_at(logits[len(prompt) - 1 : -1], completion)
        return SamplerResponse(
            text=parsed.text,
            prompt_tokens=len(prompt),
            completion_tokens=len(completion),
            logprobs=logprobs,
            raw=parsed.raw,
        )

    def sample_batch(self, batch: Sequence[Messages]) -> list[SamplerResponse | Exception]:
        """Render all, generate them as one batch; if the batch fails, retry one
        by one so that only the examples that really fail are lost."""
        results: list[SamplerResponse | Exception | None] = [None] * len(batch)
        prompts: list[list[int]] = []
        rows: list[int] = []
        for i, messages in enumerate(batch):
            try:
                prompts.append(render_prompt(self.tokenizer, messages))
                rows.append(i)
            except Exception as exc:  # noqa: BLE001 - recorded per example
                results[i] = exc
        if prompts:
            try:
                outs = self._generate(prompts)
            except Exception:  # noqa: BLE001 - isolate the failing example(s)
                outs = []
                for p in prompts:
                    try:
                        outs.extend(self._generate([p]))
                    except Exception as exc:  # noqa: BLE001
                        outs.append(exc)
            for i, p, out in zip(rows, prompts, outs, strict=True):
                try:
                    results[i] = out if isinstance(out, Exception) else self._response(p, out)
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        return results  # type: ignore[return-value]


class ChatCompletionsSampler(SamplerBase):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp,
    Ollama, a hosted API). Requests run ``concurrency`` at a time; transient
    failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with
    exponential back-off, other HTTP errors fail the example at once."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float | None = None,
        seed: int | None = 0,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        concurrency: int = 4,
        logprobs: bool = False,
        extra_body: dict[str, Any] | None = None,
    ):
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = max(1, int(concurrency))
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self.name = f"http:{model}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "http",
            "url": self.url,
            "model": self.model,
            "sampling": {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_tokens,
                "seed": self.seed,
            },
            "concurrency": self.batch_size,
        }

    def _body(self, messages: Messages) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m.get("content", "")} for m in messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.seed is not None:
            body["seed"] = self.seed
        if self.logprobs:
            body["logprobs"] = True
        body.update(self.extra_body)
        return json.dumps(body).encode("utf-8")

    def _post(self, data: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    payload = reply.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = SamplerError(f"{self.url} answered HTTP {exc.code}: {detail}")
                if exc.code == 429 or exc.code >= 500:
                    continue
                raise last from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = SamplerError(f"cannot reach {self.url}: {reason}")
                continue
            try:
                return json.loads(payload)
            except json.JSONDecodeError:
                raise SamplerError(
                    f"{self.url} did not answer JSON: {payload[:200].decode('utf-8', 'replace')!r}"
                ) from None
        assert last is not None
        raise SamplerError(f"{last} (gave up after {self.retries + 1} attempts)")

    def __call__(self, messages: Messages) -> SamplerResponse:
        reply = self._post(self._body(messages))
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise SamplerError(
                f"{self.url} answered without choices[0].message: {json.dumps(reply)[:300]}"
            ) from None
        usage = reply.get("usage") or {}
        logprobs = None
        content = (choice.get("logprobs") or {}).get("content") if self.logprobs else None
        if content:
            logprobs = [float(t.get("logprob", -math.inf)) for t in content]
        return SamplerResponse(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            logprobs=logprobs,
        )

    def sample_batch(self, batch: Sequence[Messages]) -> list[SamplerResponse | Exception]:
        def one(messages: Messages) -> SamplerResponse | Exception:
            try:
                return self(messages)
            except Exception as exc:  # noqa: BLE001 - recorded per example
                return exc

        if len(batch) <= 1 or self.batch_size == 1:
            return [one(m) for m in batch]
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(batch))) as pool:
            return list(pool.map(one, batch))
