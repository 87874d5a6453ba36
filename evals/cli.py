"""``mind4 eval``: run evals against a model, and compare result files.

``eval`` is a click group that runs the evals itself when no sub-command is
given (``mind4 eval --eval abcd``), with sub-commands ``report`` (compare
result files) and ``list`` (the evals and their shipped datasets).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path

import click

from mind4_core.errors import Mind4Error

EPILOG = """\b
Examples:
  mind4 eval                                    # every eval, default model, torch backend
  mind4 eval --eval abcd,aime --limit 50 --seed 1 --out runs/a
  mind4 eval --eval gpqa --data gpqa=gpqa_diamond.csv --repeats 4
  mind4 eval --eval basic --data basic=default:valid
  mind4 eval --backend metal --checkpoint ckpt/ --out runs/metal
  mind4 eval --url http://127.0.0.1:8000/v1 --model gpt-oss-20b --max-tokens 2048
  mind4 eval report runs/torch runs/metal --out compare.html
"""


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _parse_data(values: tuple[str, ...]) -> dict[str, str]:
    from .suite import EVALS

    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or name not in EVALS or not path:
            raise click.BadParameter(
                f"{v!r}: expected EVAL=PATH with EVAL one of {', '.join(EVALS)}",
                param_hint="--data",
            )
        out[name] = path
    return out


def _progress(enabled: bool):
    """A rich progress bar: returns (context manager, progress factory)."""
    if not enabled:
        import contextlib

        return contextlib.nullcontext(), None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=_console(stderr=True),
    )

    def factory(name: str, total: int):
        task = bar.add_task(name, total=total or None)
        return lambda n: bar.advance(task, n)

    return bar, factory


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _print_scores(run, console) -> None:
    from rich.table import Table

    table = Table(title=f"mind4 eval · {run.label}")
    for col in ("eval", "metric", "score", "± stderr", "95% CI", "n", "failed", "malformed"):
        table.add_column(col, justify="left" if col in ("eval", "metric") else "right")
    for name, r in run.results.items():
        table.add_row(
            name,
            r.metric + (" ↑" if r.higher_is_better else " ↓"),
            "—" if r.score is None else f"{r.score:.4f}",
            "—" if r.stderr is None else f"{r.stderr:.4f}",
            "—" if r.ci is None else f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            str(r.n),
            str(r.n_failed),
            str(r.n_malformed),
        )
    console.print(table)
    for name, r in run.results.items():
        for m in r.malformed[:5]:
            console.print(f"[yellow]{name}: malformed row skipped: {m}[/]")
        if r.n_malformed > 5:
            console.print(f"[yellow]{name}: … and {r.n_malformed - 5} more malformed rows[/]")


@click.group(
    name="eval",
    invoke_without_command=True,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--eval",
    "-e",
    "evals",
    default="basic,abcd,gpqa,aime",
    show_default=True,
    help="Comma-separated evals to run: basic, abcd, gpqa, aime.",
)
@click.option("--backend", default="torch", show_default=True, help="Backend that runs the model.")
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False),
    default=None,
    help="Checkpoint directory (default: the embedded model).",
)
@click.option(
    "--device", default="auto", show_default=True, help="Device: auto, cpu, cuda, cuda:N, mps."
)
@click.option(
    "--dtype", default=None, help="float32, bfloat16 or float16 (default: the backend's)."
)
@click.option(
    "--url",
    default=None,
    help="Evaluate an OpenAI-compatible endpoint instead (base URL, e.g. http://host:8000/v1).",
)
@click.option("--model", "model_name", default=None, help="Model name sent to --url.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key for --url.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N questions (text windows for basic).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed: option shuffles, sampling, bootstrap.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (default: eval-results/<time>).",
)
@click.option(
    "--data",
    multiple=True,
    metavar="EVAL=PATH",
    help="Dataset for an eval (repeatable); basic takes a text file or NAME:SPLIT (synthetic:valid, default:valid).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="gpqa: shuffles per question.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Tokens to generate per answer.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="0 = greedy.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Conversations per generate_batch call (or concurrent HTTP requests).",
)
@click.option(
    "--window",
    type=click.IntRange(min=2),
    default=256,
    show_default=True,
    help="basic: tokens per scored window.",
)
@click.option("--label", default=None, help="Name of this run in reports.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the results JSON (without examples) to stdout."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def eval_command(
    ctx: click.Context,
    evals: str,
    backend: str,
    checkpoint: str | None,
    device: str,
    dtype: str | None,
    url: str | None,
    model_name: str | None,
    api_key_env: str,
    limit: int | None,
    seed: int,
    out_dir: str | None,
    data: tuple[str, ...],
    repeats: int,
    max_tokens: int,
    temperature: float,
    batch_size: int,
    window: int,
    label: str | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Measure a model: accuracy on question sets, bits per byte on text.

    Writes results.json, one <eval>.examples.jsonl per eval (streamed as
    examples finish) and a self-contained report.html to --out. The same
    seed and backend give the same results.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .suite import make_eval, parse_eval_names, run_suite

    try:
        names = parse_eval_names(evals)
        paths = _parse_data(data)
        suite = [
            make_eval(n, data=paths.get(n), limit=limit, seed=seed, repeats=repeats, window=window)
            for n in names
        ]
        if url:
            from .samplers import ChatCompletionsSampler

            sampler = ChatCompletionsSampler(
                url,
                model_name or "default",
                api_key=os.environ.get(api_key_env),
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                concurrency=min(batch_size, 16),
            )
        else:
            from .samplers import EngineSampler

            sampler = EngineSampler.load(
                checkpoint,
                backend=backend,
                device=device,
                dtype=dtype,
                max_new_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                batch_size=batch_size,
            )
        out = (
            Path(out_dir)
            if out_dir
            else Path("eval-results") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        )
        bar, factory = _progress(not no_progress and not as_json)
        with bar:
            run = run_suite(suite, sampler, out_dir=out, seed=seed, label=label, progress=factory)
    except KeyboardInterrupt:
        click.echo("interrupted: partial results were saved", err=True)
        sys.exit(130)
    except Mind4Error as exc:
        raise _fail(exc) from None
    if as_json:
        d = run.to_dict()
        for r in d["evals"].values():
            r.pop("examples")
        click.echo(json.dumps(d, indent=1))
        return
    console = _console()
    _print_scores(run, console)
    console.print(f"results: {out / 'results.json'}\nreport:  {out / 'report.html'}")


@eval_command.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    default="eval-report.html",
    show_default=True,
    help="HTML file to write.",
)
@click.option("--label", "labels", multiple=True, help="Rename runs, in order (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the side-by-side table as JSON.")
def report_command(
    results: tuple[str, ...], out_file: str, labels: tuple[str, ...], as_json: bool
) -> None:
    """Compare result files side by side (model vs model, backend vs backend).

    RESULTS are results.json files written by `mind4 eval` or their directories.
    """
    import attrs

    from .report import compare_text, render_html
    from .suite import load_run

    try:
        runs = [load_run(p) for p in results]
    except Mind4Error as exc:
        raise _fail(exc) from None
    runs = [attrs.evolve(r, label=labels[i]) if i < len(labels) else r for i, r in enumerate(runs)]
    seen: dict[str, int] = {}
    for i, r in enumerate(runs):  # duplicate labels get a suffix so columns stay distinct
        seen[r.label] = seen.get(r.label, 0) + 1
        if seen[r.label] > 1:
            runs[i] = attrs.evolve(r, label=f"{r.label} ({seen[r.label]})")
    rows = compare_text(runs)
    Path(out_file).write_text(render_html(runs), encoding="utf-8")
    if as_json:
        click.echo(
            json.dumps({"runs": [r.label for r in runs], "rows": rows, "html": out_file}, indent=1)
        )
        return
    from rich.table import Table

    table = Table(title="mind4 eval report")
    table.add_column("eval")
    table.add_column("metric")
    for r in runs:
        table.add_column(r.label, justify="right")
    for row in rows:
        table.add_row(*row)
    console = _console()
    console.print(table)
    console.print(f"report: {out_file}")


@eval_command.command("list")
def list_command() -> None:
    """The evals and the synthetic datasets shipped with them."""
    from .datasets import FORMATS, SHIPPED, shipped_path
    from .suite import EVALS

    kinds = {"basic": "text", "abcd": "abcd", "gpqa": "gpqa", "aime": "aime"}
    for name, cls in EVALS.items():
        doc = ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        kind = kinds[name]
        click.echo(f"{name:6} {doc}")
        click.echo(f"       format: {FORMATS[kind]}")
        click.echo(f"       shipped: {shipped_path(kind)} ({SHIPPED[kind]})")


def main() -> None:  # pragma: no cover - `python -m mind4_evals`
    eval_command(prog_name="python -m mind4_evals")


#: the name the ``mind4`` CLI mounts (``mind4_core.cli.BUILTIN_LAZY``)
eval_group = eval_command
