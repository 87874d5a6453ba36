"""Mind 4's evaluation harness: measure models instead of arguing by eye.

>>> from mind4_evals import EngineSampler, run_suite, make_eval
>>> sampler = EngineSampler.load(backend="torch", max_new_tokens=16)   # doctest: +SKIP
>>> run = run_suite([make_eval("abcd", limit=50)], sampler, out_dir="runs/a")  # doctest: +SKIP

Evals: ``basic`` (bits per byte, perplexity, a smoke conversation), ``abcd``
(multiple choice), ``gpqa`` (GPQA's CSV layout), ``aime`` (integer answers).
Samplers: :class:`EngineSampler` (in process, any backend) and
:class:`ChatCompletionsSampler` (an OpenAI-compatible HTTP endpoint).
"""

from __future__ import annotations

from .errors import DatasetError, EvalError, SamplerError
from .types import (
    Eval,
    EvalResult,
    ExampleResult,
    Malformed,
    Message,
    SamplerBase,
    SamplerResponse,
)

__all__ = [
    "ChatCompletionsSampler",
    "DatasetError",
    "EngineSampler",
    "Eval",
    "EvalError",
    "EvalResult",
    "ExampleResult",
    "Malformed",
    "Message",
    "SamplerBase",
    "SamplerError",
    "SamplerResponse",
    "make_eval",
    "run_suite",
]


def __getattr__(name: str):
    # lazy: importing the package stays light (no numpy work, no engine)
    if name in ("EngineSampler", "ChatCompletionsSampler"):
        from . import samplers

        return getattr(samplers, name)
    if name in ("make_eval", "run_suite", "load_run", "EVALS"):
        from . import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'mind4_evals' has no attribute {name!r}")
