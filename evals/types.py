"""The harness's interfaces: samplers, evals, and their results.

A *sampler* turns a conversation (a list of ``{"role", "content"}`` messages,
the OpenAI chat shape) into a :class:`SamplerResponse`. An *eval* loads its
examples, asks a sampler, grades each reply into an :class:`ExampleResult`,
and aggregates them into an :class:`EvalResult`. Results are plain data:
``to_dict`` / ``from_dict`` round-trip through JSON exactly.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

#: one chat message, e.g. ``{"role": "user", "content": "What is 2 + 3?"}``
Message = dict[str, str]
Messages = Sequence[Message]

ROLES = ("system", "developer", "user", "assistant", "tool")


@attrs.frozen(kw_only=True)
class SamplerResponse:
    """What a sampler returns for one conversation.

    ``text`` is the assistant's final answer (for harmony, its ``final``
    channel); ``logprobs`` are the natural-log probabilities of the completion
    tokens where the sampler can provide them, else ``None``.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: tuple[float, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(float(x) for x in v)
    )
    #: the raw completion where it differs from ``text`` (e.g. with harmony markup)
    raw: str | None = None


class SamplerBase(abc.ABC):
    """Messages in, :class:`SamplerResponse` out.

    Subclasses implement :meth:`__call__`. :meth:`sample_batch` may be
    overridden where a backend batches; it must return one item per
    conversation, in order, with an exception *object* in place of a response
    that failed, so one bad example never costs the others.
    """

    #: a short human description recorded in results ("engine torch:cpu float32 ...")
    name: str = "sampler"
    #: how many conversations :meth:`sample_batch` prefers at a time
    batch_size: int = 1

    @abc.abstractmethod
    def __call__(self, messages: Messages) -> SamplerResponse: ...

    def sample_batch(self, batch: Sequence[Messages]) -> list[SamplerResponse | Exception]:
        out: list[SamplerResponse | Exception] = []
        for messages in batch:
            try:
                out.append(self(messages))
            except Exception as exc:  # noqa: BLE001 - recorded per example
                out.append(exc)
        return out

    def describe(self) -> dict[str, Any]:
        """What to record about this sampler in results (JSON-safe)."""
        return {"name": self.name}


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen(kw_only=True)
class ExampleResult:
    """One graded example (one repeat of one question, or one text window)."""

    eval: str
    index: int
    #: stable identity of the example across runs (source file and line, or a hash)
    id: str
    repeat: int = 0
    #: ``"ok"`` or ``"failed"`` (the sampler raised; ``error`` says why)
    status: str = "ok"
    score: float | None = attrs.field(default=None, converter=_float_or_none)
    messages: tuple[Message, ...] = attrs.field(
        factory=tuple, converter=lambda ms: tuple(dict(m) for m in ms)
    )
    response: str | None = None
    correct_answer: str | None = None
    extracted: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: eval-specific numbers (e.g. ``nll``, ``tokens``, ``bytes`` for perplexity)
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=dict)
    #: where the example came from and how it was presented (file, line, shuffle)
    meta: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=False)
        d["messages"] = [dict(m) for m in self.messages]
        d["metrics"] = dict(self.metrics)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExampleResult:
        return cls(**{k: d[k] for k in _EXAMPLE_FIELDS if k in d})


_EXAMPLE_FIELDS = tuple(a.name for a in attrs.fields(ExampleResult))


@attrs.frozen(kw_only=True)
class Malformed:
    """A dataset row that could not be used: reported, counted, skipped."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@attrs.frozen(kw_only=True)
class EvalResult:
    """The aggregate of one eval over its examples.

    ``score`` is the mean of the headline ``metric`` (accuracy for the
    question evals, with failed examples counted as 0; bits per byte for
    ``basic``), ``stderr`` its standard error, ``ci`` a bootstrap confidence
    interval at level ``ci_level``.
    """

    eval: str
    metric: str
    #: True when a higher score is better (accuracy), False otherwise (bits per byte)
    higher_is_better: bool = True
    score: float | None = None
    stderr: float | None = None
    ci: tuple[float, float] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else (float(v[0]), float(v[1]))
    )
    ci_level: float = 0.95
    n: int = 0
    n_failed: int = 0
    malformed: tuple[Malformed, ...] = attrs.field(
        factory=tuple,
        converter=lambda ms: tuple(m if isinstance(m, Malformed) else Malformed(**m) for m in ms),
    )
    #: further aggregate numbers (perplexity, tokens, ...)
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=dict)
    #: how the eval ran: dataset, seed, repeats, limit, sampling parameters
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    examples: tuple[ExampleResult, ...] = attrs.field(
        factory=tuple,
        converter=lambda es: tuple(
            e if isinstance(e, ExampleResult) else ExampleResult.from_dict(e) for e in es
        ),
    )
    #: wall time and throughput; excluded from :meth:`deterministic_dict`
    timing: Mapping[str, float] = attrs.field(factory=dict, converter=dict)
    #: True when the run was interrupted before every example was graded
    partial: bool = False

    @property
    def n_malformed(self) -> int:
        return len(self.malformed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval": self.eval,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "score": self.score,
            "stderr": self.stderr,
            "ci": None if self.ci is None else list(self.ci),
            "ci_level": self.ci_level,
            "n": self.n,
            "n_failed": self.n_failed,
            "n_malformed": self.n_malformed,
            "malformed": [attrs.asdict(m) for m in self.malformed],
            "metrics": dict(self.metrics),
            "config": dict(self.config),
            "timing": dict(self.timing),
            "partial": self.partial,
            "examples": [e.to_dict() for e in self.examples],
        }

    def deterministic_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without wall-clock numbers: equal for equal runs."""
        d = self.to_dict()
        d.pop("timing")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalResult:
        fields = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


class Eval(abc.ABC):
    """An evaluation: a name, examples, and how to turn a sampler into a result.

    Question evals derive from :class:`mind4_evals.runner.QuestionEval`, which
    supplies the batching, failure handling and aggregation loop; an eval that
    measures something else (``basic``) implements :meth:`run` itself.
    """

    name: str = "eval"

    @abc.abstractmethod
    def run(
        self,
        sampler: SamplerBase,
        *,
        progress: Callable[[int], None] | None = None,
        on_example: Callable[[ExampleResult], None] | None = None,
    ) -> EvalResult:
        """Evaluate ``sampler``. ``progress(n)`` is called as ``n`` more
        examples finish; ``on_example`` receives each graded example as soon
        as it exists (the runner streams them to disk)."""

    def prepare(self, sampler: SamplerBase) -> None:
        """Load data now (before any sampling) so that bad input fails fast."""
        return None

    def total(self) -> int:
        """How many examples :meth:`run` will grade (for a progress bar)."""
        return 0
