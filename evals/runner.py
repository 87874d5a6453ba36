"""The loop every question eval shares: batch, sample, grade, aggregate.

A question eval supplies its :class:`Item` list (one per question and repeat,
with the conversation to send) and a ``grade`` function; :class:`QuestionEval`
sends items to the sampler ``sampler.batch_size`` at a time, turns each reply
or exception into an :class:`ExampleResult` at once (streamed to
``on_example``), and aggregates. A sampler that raises fails only the
examples it was asked about; Ctrl-C ends the loop with the examples graded so
far in a *partial* result (:class:`EvalInterrupted`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from . import stats
from .datasets import Dataset
from .types import Eval, EvalResult, ExampleResult, Messages, SamplerBase, SamplerResponse


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during an eval; ``result`` holds everything graded before it."""

    def __init__(self, result: EvalResult):
        super().__init__(f"{result.eval} interrupted after {len(result.examples)} examples")
        self.result = result


@attrs.frozen(kw_only=True)
class Item:
    """One question as presented to the sampler (one repeat of one row)."""

    index: int
    id: str
    repeat: int
    messages: tuple[dict[str, str], ...]
    correct: str
    meta: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Grade:
    score: float
    extracted: str | None
    rule: str | None = None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class QuestionEval(Eval):
    """Base of the question-answer evals (``abcd``, ``gpqa``, ``aime``)."""

    metric = "accuracy"
    #: dataset kind in :mod:`mind4_evals.datasets`
    kind = "abcd"

    def __init__(
        self,
        path: str | None = None,
        *,
        limit: int | None = None,
        seed: int = 0,
        repeats: int = 1,
    ):
        self.path = path
        self.limit = limit
        self.seed = seed
        self.repeats = max(1, int(repeats))
        self._dataset: Dataset | None = None
        self._items: list[Item] | None = None

    # -- dataset -----------------------------------------------------------------------------

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            from .datasets import load

            self._dataset = load(self.kind, self.path)
        return self._dataset

    def items(self) -> list[Item]:
        if self._items is None:
            rows = self.dataset.rows[: self.limit] if self.limit else self.dataset.rows
            self._items = [
                self.make_item(i, row, r) for i, row in enumerate(rows) for r in range(self.repeats)
            ]
        return self._items

    def prepare(self, sampler: SamplerBase) -> None:
        self.items()

    def total(self) -> int:
        return len(self.items())

    @abc.abstractmethod
    def make_item(self, index: int, row: Any, repeat: int) -> Item: ...

    @abc.abstractmethod
    def grade(self, item: Item, text: str) -> Grade: ...

    def config(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.path,
            "format": self.dataset.format,
            "rows": len(self.dataset),
            "limit": self.limit,
            "seed": self.seed,
            "repeats": self.repeats,
        }

    # -- the loop ----------------------------------------------------------------------------

    def _sample(
        self, sampler: SamplerBase, batch: Sequence[Item]
    ) -> list[SamplerResponse | BaseException]:
        conversations: list[Messages] = [list(it.messages) for it in batch]
        try:
            outs = list(sampler.sample_batch(conversations))
            if len(outs) != len(batch):
                raise RuntimeError(
                    f"sampler returned {len(outs)} responses for {len(batch)} conversations"
                )
            return outs
        except Exception:  # noqa: BLE001 - a broken batch: ask one by one
            return list(SamplerBase.sample_batch(sampler, conversations))

    def _result(self, item: Item, out: SamplerResponse | BaseException) -> ExampleResult:
        common = {
            "eval": self.name,
            "index": item.index,
            "id": item.id,
            "repeat": item.repeat,
            "messages": item.messages,
            "correct_answer": item.correct,
            "meta": item.meta,
        }
        if isinstance(out, BaseException):
            return ExampleResult(status="failed", score=0.0, error=_error_text(out), **common)
        try:
            grade = self.grade(item, out.text)
        except Exception as exc:  # noqa: BLE001 - a grader bug fails one example
            return ExampleResult(
                status="failed",
                score=0.0,
                response=out.text,
                error=f"grading failed: {_error_text(exc)}",
                **common,
            )
        metrics = {}
        if out.logprobs:
            metrics["completion_logprob"] = float(sum(out.logprobs))
        meta = dict(item.meta)
        if grade.rule:
            meta["rule"] = grade.rule
        if out.raw is not None and out.raw != out.text:
            meta["raw"] = out.raw
        common["meta"] = meta
        return ExampleResult(
            status="ok",
            score=grade.score,
            response=out.text,
            extracted=grade.extracted,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            metrics=metrics,
            **common,
        )

    def run(
        self,
        sampler: SamplerBase,
        *,
        progress: Callable[[int], None] | None = None,
        on_example: Callable[[ExampleResult], None] | None = None,
    ) -> EvalResult:
        items = self.items()
        results: list[ExampleResult] = []
        size = max(1, int(getattr(sampler, "batch_size", 1) or 1))
        t0 = time.perf_counter()
        try:
            for start in range(0, len(items), size):
                batch = items[start : start + size]
                for item, out in zip(batch, self._sample(sampler, batch), strict=True):
                    result = self._result(item, out)
                    results.append(result)
                    if on_example:
                        on_example(result)
                if progress:
                    progress(len(batch))
        except KeyboardInterrupt:
            raise EvalInterrupted(
                self.aggregate(results, time.perf_counter() - t0, partial=True)
            ) from None
        return self.aggregate(results, time.perf_counter() - t0)

    def aggregate(
        self, results: Sequence[ExampleResult], elapsed: float, *, partial: bool = False
    ) -> EvalResult:
        scores = [r.score or 0.0 for r in results]  # failed examples count as wrong
        s = stats.summarize(scores, [r.id for r in results], seed=self.seed)
        metrics: dict[str, float] = {}
        groups: dict[str, list[float]] = {}
        for r, score in zip(results, scores, strict=True):
            if "group" in r.meta:
                groups.setdefault(str(r.meta["group"]), []).append(score)
        for g in sorted(groups):
            metrics[f"{self.metric}[{g}]"] = sum(groups[g]) / len(groups[g])
        answered = [r for r in results if not r.failed]
        if answered:
            metrics["extracted_rate"] = sum(r.extracted is not None for r in answered) / len(
                answered
            )
        tokens = sum(r.completion_tokens for r in results)
        return EvalResult(
            eval=self.name,
            metric=self.metric,
            higher_is_better=True,
            score=s.mean,
            stderr=s.stderr,
            ci=s.ci,
            n=len(results),
            n_failed=sum(r.failed for r in results),
            malformed=self.dataset.malformed,
            metrics=metrics,
            config=self.config(),
            examples=tuple(results),
            timing={
                "seconds": elapsed,
                "examples_per_s": len(results) / elapsed if elapsed > 0 else 0.0,
                "completion_tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            },
            partial=partial,
        )
