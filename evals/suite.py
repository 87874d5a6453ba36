"""Run several evals against one sampler and keep every result on disk.

Layout of an output directory::

    results.json              the run: sampler, seed, every EvalResult (with examples)
    <eval>.examples.jsonl     each graded example, appended the moment it exists
    report.html               self-contained report (see :mod:`mind4_evals.report`)

``<eval>.examples.jsonl`` is written as the eval goes, so a crash or Ctrl-C
loses nothing graded so far; ``results.json`` is written after each eval
(atomically) and once more, marked partial, on Ctrl-C.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .aime import AIMEEval
from .basic import BasicEval
from .choice import ABCDEval, GPQAEval
from .errors import EvalError
from .runner import EvalInterrupted
from .types import Eval, EvalResult, ExampleResult, SamplerBase

EVALS: dict[str, type[Eval]] = {
    "basic": BasicEval,
    "abcd": ABCDEval,
    "gpqa": GPQAEval,
    "aime": AIMEEval,
}
RESULTS_FILE = "results.json"
FORMAT_VERSION = 1


@attrs.frozen(kw_only=True)
class Run:
    """One ``mind4 eval`` run: who was evaluated, how, and every result."""

    label: str
    sampler: dict[str, Any]
    seed: int
    results: dict[str, EvalResult]
    created: str = ""
    partial: bool = False
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mind4-eval-results",
            "version": FORMAT_VERSION,
            "label": self.label,
            "created": self.created,
            "seed": self.seed,
            "partial": self.partial,
            "sampler": self.sampler,
            "evals": {name: r.to_dict() for name, r in self.results.items()},
        }

    def deterministic_dict(self) -> dict[str, Any]:
        """Everything that must be equal for two runs with the same seed and backend."""
        d = self.to_dict()
        d.pop("created")
        d["evals"] = {name: r.deterministic_dict() for name, r in self.results.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | None = None) -> Run:
        if d.get("format") != "mind4-eval-results":
            raise EvalError(
                f"{path or 'results'} is not a mind4 eval results file "
                "(expected the results.json that `mind4 eval` writes)"
            )
        return cls(
            label=d.get("label") or "run",
            sampler=d.get("sampler") or {},
            seed=int(d.get("seed") or 0),
            results={k: EvalResult.from_dict(v) for k, v in (d.get("evals") or {}).items()},
            created=d.get("created", ""),
            partial=bool(d.get("partial")),
            path=path,
        )


def parse_eval_names(spec: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    unknown = [n for n in names if n not in EVALS]
    if unknown or not names:
        raise EvalError(
            f"unknown eval(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"available: {', '.join(EVALS)}"
        )
    return list(dict.fromkeys(names))


def make_eval(
    name: str,
    *,
    data: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    repeats: int = 1,
    window: int = 256,
) -> Eval:
    cls = EVALS[name]
    if cls is BasicEval:
        return BasicEval(data, limit=limit, seed=seed, window=window)
    return cls(data, limit=limit, seed=seed, repeats=repeats if name == "gpqa" else 1)


def default_label(sampler: dict[str, Any]) -> str:
    if sampler.get("kind") == "engine":
        ckpt = Path(sampler["checkpoint"]).name if sampler.get("checkpoint") else "default"
        return f"{ckpt} · {sampler.get('backend')} {sampler.get('device')} {sampler.get('dtype')}"
    return str(sampler.get("name", "run"))


def load_run(path: str | Path) -> Run:
    """A run from its ``results.json`` (or the directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise EvalError(
            f"no results at {p}; give a results.json written by `mind4 eval` or its directory"
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"cannot read results {p}: {exc}") from None
    return Run.from_dict(data, path=str(p))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _ExampleLog:
    """Appends each graded example to ``<eval>.examples.jsonl`` as it arrives."""

    def __init__(self, path: Path):
        self.file = path.open("w", encoding="utf-8")

    def __call__(self, example: ExampleResult) -> None:
        self.file.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def run_suite(
    evals: Sequence[Eval],
    sampler: SamplerBase,
    *,
    out_dir: str | Path | None = None,
    seed: int = 0,
    label: str | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    html: bool = True,
) -> Run:
    """Run ``evals`` in order against ``sampler``.

    ``progress(eval_name, total)`` returns the per-eval advance callback (the
    CLI passes a rich progress bar). Every eval's data is loaded before any
    sampling, so a missing file fails at once. On Ctrl-C the partial run is
    written and :class:`KeyboardInterrupt` re-raised.
    """
    for ev in evals:
        ev.prepare(sampler)
    described = sampler.describe()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results: dict[str, EvalResult] = {}
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run_label = label or default_label(described)

    def save(partial: bool) -> Run:
        run = Run(
            label=run_label,
            sampler=described,
            seed=seed,
            results=dict(results),
            created=created,
            partial=partial,
            path=None if out is None else str(out / RESULTS_FILE),
        )
        if out is not None:
            _write_atomic(
                out / RESULTS_FILE, json.dumps(run.to_dict(), indent=1, ensure_ascii=False)
            )
            if html:
                from .report import render_html

                _write_atomic(out / "report.html", render_html([run]))
        return run

    for ev in evals:
        log = _ExampleLog(out / f"{ev.name}.examples.jsonl") if out is not None else None
        advance = progress(ev.name, ev.total()) if progress else None
        try:
            results[ev.name] = ev.run(sampler, progress=advance, on_example=log)
        except EvalInterrupted as stop:
            results[ev.name] = stop.result
            save(partial=True)
            raise KeyboardInterrupt(str(stop)) from None
        finally:
            if log is not None:
                log.close()
        save(partial=False)
    return save(partial=False)
