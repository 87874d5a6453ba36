"""Run the specs in-process and gather one outcome per spec.

Used by ``python -m mind4_specs`` (which prints the summary table) and by
tests that need to know which specs a deliberately broken backend fails.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from importlib import metadata
from typing import Any

import attrs
import pytest

PLUGIN_MODULE = "mind4_specs.plugin"
OUTCOMES = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")


@attrs.define
class Outcome:
    spec_id: str
    component: str
    outcome: str  # one of OUTCOMES
    reason: str = ""  # skip/xfail reason, or the first line of the failure


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("E "):
            return line[2:].strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


class Collector:
    """A pytest plugin object recording the outcome of every spec."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def _set(self, report: Any, outcome: str, reason: str) -> None:
        props = dict(report.user_properties)
        if "mind4_spec_id" not in props:
            return  # not a spec (a plain test that happened to be collected)
        self.outcomes[report.nodeid] = Outcome(
            props["mind4_spec_id"], props["mind4_component"], outcome, reason
        )

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
                self._set(report, outcome, report.wasxfail)
            elif report.skipped:
                reason = (
                    report.longrepr[2]
                    if isinstance(report.longrepr, tuple)
                    else str(report.longrepr)
                )
                self._set(report, "skipped", reason.removeprefix("Skipped: "))
            elif report.failed:
                self._set(
                    report,
                    "failed" if report.when == "call" else "error",
                    _first_line(report.longreprtext),
                )
            else:
                self._set(report, "passed", "")
        elif report.when == "teardown" and report.failed:
            self._set(report, "error", _first_line(report.longreprtext))


def plugin_autoloaded() -> bool:
    """Whether pytest loads the specs plugin by itself (installed ``pytest11`` entry point)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == PLUGIN_MODULE for ep in metadata.entry_points(group="pytest11"))


def spec_args(
    backend: str | None = None,
    *,
    components: dict[str, str] | None = None,
    device: str | None = None,
    dtypes: tuple[str, ...] = (),
    seed: int | None = None,
    select: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The pytest command line that runs the specs against a target."""
    # python -m mind4_specs has imported the package before pytest could rewrite its asserts
    args = [
        "--pyargs",
        "mind4_specs",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if not plugin_autoloaded():
        args += ["-p", PLUGIN_MODULE]
    if backend:
        args += ["--mind4-backend", backend]
    for kind, name in (components or {}).items():
        args += [f"--mind4-{kind.replace('_', '-')}", name]
    if device:
        args += ["--mind4-device", device]
    for dtype in dtypes:
        args += ["--mind4-dtype", dtype]
    if seed is not None:
        args += ["--mind4-seed", str(seed)]
    if select:
        args += ["-k", select]
    return args + list(extra)


def run_specs(args: list[str]) -> tuple[int, list[Outcome]]:
    """``pytest.main(args)`` in this process; returns its exit code and every spec's outcome."""
    collector = Collector()
    code = pytest.main(args, plugins=[collector])
    return int(code), list(collector.outcomes.values())


def summarize(outcomes: list[Outcome]) -> dict[str, Counter]:
    """component -> Counter of outcomes."""
    table: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        table[o.component][o.outcome] += 1
    return dict(table)


def render_summary(outcomes: list[Outcome], title: str, console: Any = None) -> None:
    """Print the per-component table, then skip reasons, xfails and failures."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    table.add_column("component")
    styles = {
        "passed": "green",
        "failed": "red",
        "error": "red",
        "xfailed": "yellow",
        "xpassed": "magenta",
        "skipped": "cyan",
    }
    for name in OUTCOMES:
        table.add_column(name, justify="right", style=styles[name])
    counts = summarize(outcomes)
    total: Counter = Counter()
    for component in sorted(counts):
        total.update(counts[component])
        table.add_row(component, *(str(counts[component][o] or "") for o in OUTCOMES))
    table.add_row("[bold]total", *(f"[bold]{total[o] or ''}" for o in OUTCOMES))
    console.print(table)

    reasons: Counter = Counter((o.component, o.reason) for o in outcomes if o.outcome == "skipped")
    if reasons:
        console.print("[cyan]skipped:")
        for (component, reason), n in sorted(reasons.items()):
            plural = "s" if n > 1 else ""
            console.print(
                f"  {component}: {escape(reason)} [dim]({n} spec{plural})", soft_wrap=True
            )
    for label, kind in (
        ("expected failures (declared by the backend)", "xfailed"),
        ("passed although declared xfail: remove from the xfail list", "xpassed"),
        ("failed", "failed"),
        ("errors", "error"),
    ):
        picked = [o for o in outcomes if o.outcome == kind]
        if picked:
            console.print(f"[{styles[kind]}]{label}:")
            for o in picked:
                console.print(
                    f"  {o.spec_id}: {o.reason}", markup=False, highlight=False, soft_wrap=True
                )
