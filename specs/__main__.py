"""``python -m mind4_specs --backend NAME``: run every spec and print a summary.

The same as ``pytest --pyargs mind4_specs --mind4-backend NAME`` plus a table
per component (passed / failed / xfailed / xpassed / skipped, with reasons).
Arguments after ``--`` go to pytest unchanged.
"""

from __future__ import annotations

import contextlib
import json
import sys

import attrs
import click

from .plugin import COMPONENT_KINDS, DTYPES
from .runner import render_summary, run_specs, spec_args, summarize


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--backend", envvar="MIND4_BACKEND", help="backend to check (default: $MIND4_BACKEND)"
)
@click.option("--attention", help="check this attention component instead of the backend's")
@click.option("--moe-routing", help="check this MoE routing component instead of the backend's")
@click.option("--sampler", help="check this sampler instead of the backend's")
@click.option("--device", help="device (default: cpu when the backend supports it)")
@click.option(
    "--dtype",
    "dtypes",
    multiple=True,
    type=click.Choice(DTYPES),
    help="only this dtype (repeatable)",
)
@click.option("--seed", type=int, help="seed of the random inputs (default: new each run)")
@click.option("-k", "select", help="pytest -k expression selecting specs")
@click.option("-q", "--quiet", is_flag=True, help="only the summary table")
@click.option(
    "--json", "as_json", is_flag=True, help="outcomes as JSON (pytest's output to stderr)"
)
@click.argument("pytest_extra", nargs=-1, type=click.UNPROCESSED)
def main(
    backend,
    attention,
    moe_routing,
    sampler,
    device,
    dtypes,
    seed,
    select,
    quiet,
    as_json,
    pytest_extra,
):
    """Run the Mind 4 conformance specs against a backend and summarise them.

    \b
    Examples:
      python -m mind4_specs --backend torch
      python -m mind4_specs --backend torch --dtype float32 -k attention
      python -m mind4_specs --backend torch --sampler min_p
      python -m mind4_specs --sampler numpy          # a component on its own
      python -m mind4_specs --backend torch --json > specs.json
    """
    components = dict(zip(COMPONENT_KINDS, (attention, moe_routing, sampler), strict=True))
    components = {k: v for k, v in components.items() if v}
    if not backend and not components:
        raise click.UsageError("choose a backend (--backend NAME or MIND4_BACKEND) or a component")
    extra = ("-qq", "--no-header", "--no-summary") if quiet or as_json else ("-q",)
    args = spec_args(
        backend, components=components, device=device, dtypes=dtypes, seed=seed, select=select,
        extra=extra + tuple(pytest_extra),
    )  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        code, outcomes = run_specs(args)
    target = ", ".join(
        [f"backend {backend}"] * bool(backend) + [f"{k} {v}" for k, v in components.items()]
    )
    if as_json:
        summary = {component: dict(counts) for component, counts in summarize(outcomes).items()}
        specs = [attrs.asdict(o) for o in outcomes]
        report = {"target": target, "exit_code": code, "summary": summary, "specs": specs}
        click.echo(json.dumps(report, indent=1))
    else:
        render_summary(outcomes, title=f"mind4 specs: {target}")
    sys.exit(code)


if __name__ == "__main__":
    main()
