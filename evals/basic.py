"""``basic``: perplexity and bits per byte on a text, plus a smoke conversation.

The text is cut into windows of ``window`` tokens; each window is scored with
one full forward pass (``Model.logits``) after a start token
(``<|startoftext|>``, else ``<|endoftext|>``), so *every* token of the text is
predicted exactly once and bits per byte cover every byte:

    bits/byte = Σ −log₂ p(token) / Σ bytes(token)      perplexity = exp(Σ nll / Σ tokens)

Texts: a file path, or a named corpus split ``NAME:SPLIT`` (see
:data:`CORPORA`). The smoke conversation asks one question through the
sampler and checks that a reply comes back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .datasets import load_text, shipped_path
from .errors import DatasetError
from .runner import EvalInterrupted
from .types import Eval, EvalResult, ExampleResult, SamplerBase

#: the fraction of a corpus taken as its ``valid`` split, from its end. ``mind4 train``
#: holds out the last 5% of the *tokens*; 4% of the characters stays inside that tail
#: unless the tail is much denser in tokens than the rest. For the trainer's exact
#: held-out number use ``python -m mind4_torch.train.heldout``.
VALID_FRACTION = 0.04
SMOKE_MESSAGES = ({"role": "user", "content": "What is 2 + 3?"},)
#: bytes of logits one forward pass may allocate (sets the batch of windows)
LOGITS_BUDGET = 256 * 2**20


def _split(text: str, split: str, name: str) -> str:
    """``train``: all but the last :data:`VALID_FRACTION`; ``valid``: the rest
    (cut at a line boundary so no line is shared)."""
    cut = int(len(text) * (1 - VALID_FRACTION))
    nl = text.find("\n", cut)
    cut = len(text) if nl < 0 else nl + 1
    if split == "train":
        return text[:cut]
    if split == "valid":
        return text[cut:]
    raise DatasetError(f"corpus {name!r} has splits 'train' and 'valid', not {split!r}")


def _synthetic(split: str) -> str:
    if split == "valid":
        return load_text(shipped_path("text"))
    if split == "train":
        from .synthetic import training_text

        return training_text(4000)
    raise DatasetError(f"corpus 'synthetic' has splits 'train' and 'valid', not {split!r}")


def _default(split: str) -> str:
    from mind4_tokenizer.corpus import default_corpus_text

    return _split(default_corpus_text(), split, "default")


#: named corpora: ``synthetic`` (the shipped statements; ``train`` is fresh
#: statements of the same families, none in the eval sets) and ``default`` (the
#: training corpus of :mod:`mind4_tokenizer.corpus`; ``valid`` is its last 4%)
CORPORA: dict[str, Callable[[str], str]] = {"synthetic": _synthetic, "default": _default}
DEFAULT_TEXT = "synthetic:valid"


def resolve_text(spec: str | None) -> tuple[str, str]:
    """``(description, text)`` for a file path or a ``NAME:SPLIT`` corpus."""
    spec = spec or DEFAULT_TEXT
    name, sep, split = spec.partition(":")
    if sep and name in CORPORA and not Path(spec).exists():
        text = CORPORA[name](split)
        if not text.strip():
            raise DatasetError(f"corpus split {spec!r} is empty")
        return spec, text
    if sep and not Path(spec).exists() and "/" not in spec:
        raise DatasetError(
            f"unknown corpus {name!r} in {spec!r}; named corpora: "
            f"{', '.join(f'{n}:train, {n}:valid' for n in CORPORA)}; or give a text file path"
        )
    return str(spec), load_text(spec)


class BasicEval(Eval):
    """Bits per byte (headline, lower is better) and perplexity of ``text``."""

    name = "basic"

    def __init__(
        self, text: str | None = None, *, limit: int | None = None, seed: int = 0, window: int = 256
    ):
        self.text_spec = text
        self.limit = limit
        self.seed = seed
        self.window = int(window)
        if self.window < 2:
            raise DatasetError(f"basic: window must be at least 2 tokens, got {self.window}")
        self._text: tuple[str, str] | None = None
        self._prepared: tuple[int, list[list[int]]] | None = None

    @property
    def text(self) -> tuple[str, str]:
        if self._text is None:
            self._text = resolve_text(self.text_spec)
        return self._text

    @staticmethod
    def _scorer(sampler: SamplerBase) -> Any | None:
        model = getattr(sampler, "model", None)
        return model if model is not None and hasattr(model, "logits") else None

    def _windows(self, model: Any) -> tuple[int, list[list[int]]]:
        tok = model.tokenizer
        specials = tok.special_tokens
        bos = specials.get("<|startoftext|>", specials.get("<|endoftext|>"))
        if bos is None:
            raise DatasetError("basic: the tokenizer has neither <|startoftext|> nor <|endoftext|>")
        ctx = int(getattr(model.model_config, "max_context_length", self.window))
        length = min(self.window, ctx) - 1  # text tokens per window (after the start token)
        ids = tok.encode(self.text[1])
        windows = [ids[i : i + length] for i in range(0, len(ids), length)]
        if self.limit:
            windows = windows[: self.limit]
        if not windows:
            raise DatasetError(f"basic: the text {self.text[0]} has no tokens to score")
        return int(bos), windows

    def prepare(self, sampler: SamplerBase) -> None:
        """Read and tokenize the text now, so errors surface before any work."""
        model = self._scorer(sampler)
        self._prepared = self._windows(model) if model is not None else (0, [])

    def total(self) -> int:
        return 1 + len(self._prepared[1]) if self._prepared is not None else 1

    def run(
        self,
        sampler: SamplerBase,
        *,
        progress: Callable[[int], None] | None = None,
        on_example: Callable[[ExampleResult], None] | None = None,
    ) -> EvalResult:
        t0 = time.perf_counter()
        examples: list[ExampleResult] = []

        def emit(ex: ExampleResult) -> None:
            examples.append(ex)
            if on_example:
                on_example(ex)

        model = self._scorer(sampler)
        try:
            if model is not None:
                self._score_windows(model, emit, progress)
            emit(self._smoke(sampler, len(examples)))
            if progress:
                progress(1)
        except KeyboardInterrupt:
            raise EvalInterrupted(
                self._aggregate(examples, model is not None, time.perf_counter() - t0, partial=True)
            ) from None
        return self._aggregate(examples, model is not None, time.perf_counter() - t0)

    def _score_windows(
        self,
        model: Any,
        emit: Callable[[ExampleResult], None],
        progress: Callable[[int], None] | None,
    ) -> None:
        if self._prepared is None or not self._prepared[1]:
            self._prepared = self._windows(model)
        bos, windows = self._prepared
        tok = model.tokenizer
        vocab = int(model.model_config.vocab_size)
        batch = max(1, LOGITS_BUDGET // (4 * vocab * (len(windows[0]) + 1)))
        for start in range(0, len(windows), batch):
            group = list(enumerate(windows[start : start + batch], start=start))
            try:
                scored = self._score(model, bos, group)
            except Exception:  # noqa: BLE001 - isolate the window(s) that fail
                scored = []
                for one in group:
                    try:
                        scored += self._score(model, bos, [one])
                    except Exception as exc:  # noqa: BLE001 - recorded, the eval goes on
                        scored.append(self._failed_window(one[0], one[1], tok, exc))
            for ex in scored:
                emit(ex)
            if progress:
                progress(len(group))

    def _score(
        self, model: Any, bos: int, group: list[tuple[int, list[int]]]
    ) -> list[ExampleResult]:
        """Score windows with one forward pass: ``[bos] + window`` rows, end-padded."""
        tok = model.tokenizer
        width = 1 + max(len(w) for _, w in group)
        tokens = np.full((len(group), width), bos, dtype=np.int64)  # (B, T)
        for row, (_, w) in enumerate(group):
            tokens[row, 1 : 1 + len(w)] = w
        logits = np.asarray(model.logits(tokens))  # (B, T, V) float32
        out = []
        for row, (index, w) in enumerate(group):
            n = len(w)
            x = logits[row, :n].astype(np.float64)  # predictions of w, (n, V)
            nll = float(np.sum(_logsumexp(x) - x[np.arange(n), w]))
            nbytes = sum(len(tok.decode_bytes([t])) for t in w)
            out.append(
                ExampleResult(
                    eval=self.name,
                    index=index,
                    id=f"window-{index}",
                    score=nll / math.log(2) / max(nbytes, 1),
                    metrics={"nll": nll, "tokens": n, "bytes": nbytes},
                    meta={"kind": "window", "preview": tok.decode(w[:48])},
                )
            )
        return out

    def _aggregate(
        self,
        examples: list[ExampleResult],
        measured: bool,
        elapsed: float,
        *,
        partial: bool = False,
    ) -> EvalResult:
        windows = [e for e in examples if e.meta.get("kind") == "window"]
        ok = [e for e in windows if not e.failed]
        nll = [e.metrics["nll"] for e in ok]
        nbytes = [e.metrics["bytes"] for e in ok]
        ntok = [e.metrics["tokens"] for e in ok]
        metrics: dict[str, float] = {}
        summary = None
        if ok:
            summary = stats.ratio_summary(nll, nbytes, scale=1 / math.log(2), seed=self.seed)
            metrics.update(
                perplexity=math.exp(sum(nll) / sum(ntok)),
                bits_per_token=sum(nll) / math.log(2) / sum(ntok),
                tokens=float(sum(ntok)),
                bytes=float(sum(nbytes)),
            )
        smoke = [e for e in examples if e.meta.get("kind") == "smoke"]
        if smoke:
            s = smoke[0]
            metrics["smoke_ok"] = float(not s.failed and bool((s.response or "").strip()))
        return EvalResult(
            eval=self.name,
            metric="bits_per_byte",
            higher_is_better=False,
            score=summary.mean if summary else None,
            stderr=summary.stderr if summary else None,
            ci=summary.ci if summary else None,
            n=len(windows),
            n_failed=sum(e.failed for e in examples),
            metrics=metrics,
            config={
                "text": self.text[0],
                "window": self.window,
                "limit": self.limit,
                "seed": self.seed,
                "perplexity": "measured" if measured else "skipped: the sampler has no model",
            },
            examples=tuple(examples),
            timing={"seconds": elapsed},
            partial=partial,
        )

    def _failed_window(self, index: int, w: list[int], tok: Any, exc: Exception) -> ExampleResult:
        return ExampleResult(
            eval=self.name,
            index=index,
            id=f"window-{index}",
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            metrics={"tokens": len(w)},
            meta={"kind": "window", "preview": tok.decode(w[:48])},
        )

    def _smoke(self, sampler: SamplerBase, index: int) -> ExampleResult:
        common = {"eval": self.name, "index": index, "id": "smoke", "messages": SMOKE_MESSAGES}
        try:
            out = sampler(list(SMOKE_MESSAGES))
        except Exception as exc:  # noqa: BLE001 - the eval goes on
            return ExampleResult(
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                meta={"kind": "smoke"},
                **common,
            )
        return ExampleResult(
            response=out.text,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            meta={"kind": "smoke", **({"raw": out.raw} if out.raw and out.raw != out.text else {})},
            **common,
        )


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """``log Σ exp`` over the last axis, stable: ``(..., V)`` -> ``(...)``."""
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
