"""Self-contained HTML reports of one run, or of several runs side by side.

One file, no external resources: CSS inline, the plot inline SVG
(:mod:`mind4_evals.svgplot`), every example's conversation in a collapsible
block. With several runs (model vs model, backend vs backend) the scores sit
in adjacent columns, each later run gets a paired difference against the
first on the examples both graded, and examples on which the runs disagree
are listed first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape

from . import stats
from .suite import Run
from .svgplot import Series, bar_chart
from .types import EvalResult, ExampleResult

CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#c62828}.warn{color:#b26a00}.muted{color:#777}
details{border:1px solid #e3e3e3;border-radius:4px;margin:3px 0;padding:2px 8px}
details.fail{border-color:#f0b4b4;background:#fff7f7}details.diff{border-color:#f3d19c}
summary{cursor:pointer;font-size:13px}
.msg{margin:6px 0;padding:6px 8px;border-radius:4px;background:#f7f7f9;white-space:pre-wrap;
font-family:ui-monospace,monospace;font-size:12px}
.msg.assistant{background:#eef5ff}.role{font-weight:600;font-family:system-ui;font-size:11px;
text-transform:uppercase;color:#555;display:block}
.plots{display:flex;flex-wrap:wrap;gap:12px}.side{display:flex;gap:8px}.side>div{flex:1;min-width:0}
code{font-size:12px}
"""


def _score_text(r: EvalResult | None) -> str:
    if r is None:
        return '<span class="muted">—</span>'
    if r.score is None:
        why = r.config.get("perplexity", "no score")
        return f'<span class="muted">{escape(str(why))}</span>'
    ci = f" [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.ci else ""
    extra = [f"n={r.n}"]
    if r.n_failed:
        extra.append(f'<span class="bad">{r.n_failed} failed</span>')
    if r.n_malformed:
        extra.append(f'<span class="warn">{r.n_malformed} malformed rows</span>')
    if r.partial:
        extra.append('<span class="warn">partial</span>')
    return (
        f"<b>{r.score:.4f}</b> ± {r.stderr or 0:.4f}{ci}<br>"
        f'<span class="muted">{" · ".join(extra)}</span>'
    )


def _example_scores(r: EvalResult) -> dict[tuple[str, int], float]:
    return {(e.id, e.repeat): (e.score or 0.0) for e in r.examples if e.meta.get("kind") != "smoke"}


def _paired(a: EvalResult, b: EvalResult) -> str:
    if a.score is None or b.score is None:
        return '<span class="muted">—</span>'
    if a.eval == "basic":
        return f"{b.score - a.score:+.4f}"
    sa, sb = _example_scores(a), _example_scores(b)
    s = stats.paired_difference(sa, sb)
    if s.mean is None:
        return '<span class="muted">no shared examples</span>'
    same = sum(sa[k] == sb[k] for k in set(sa) & set(sb))
    return (
        f"{s.mean:+.4f} [{s.ci[0]:+.4f}, {s.ci[1]:+.4f}]<br>"
        f'<span class="muted">{same}/{s.n} examples agree</span>'
    )


def _plots(runs: Sequence[Run], names: list[str]) -> str:
    charts = []
    accuracy = [
        n for n in names if any(n in r.results and r.results[n].metric == "accuracy" for r in runs)
    ]
    if accuracy:
        series = []
        for run in runs:
            rs = [run.results.get(n) for n in accuracy]
            series.append(
                Series(
                    run.label,
                    [r.score if r else None for r in rs],
                    [r.ci[0] if r and r.ci else None for r in rs],
                    [r.ci[1] if r and r.ci else None for r in rs],
                )
            )
        charts.append(
            bar_chart(
                accuracy,
                series,
                title="Accuracy (95% bootstrap CI)",
                ylabel="accuracy",
                ymin=0,
                ymax=1,
            )
        )
    other = [n for n in names if n not in accuracy]
    for n in other:
        rs = [run.results.get(n) for run in runs]
        metric = next((r.metric for r in rs if r), n)
        series = [
            Series(
                run.label,
                [r.score if r else None],
                [r.ci[0] if r and r.ci else None],
                [r.ci[1] if r and r.ci else None],
            )
            for run, r in zip(runs, rs, strict=True)
        ]
        charts.append(
            bar_chart(
                [
                    f"{n} ({metric}, lower is better)"
                    if rs and rs[0] and not rs[0].higher_is_better
                    else n
                ],
                series,
                title=f"{n}: {metric.replace('_', ' ')}",
                ylabel=metric.replace("_", " "),
                width=360,
                ymin=0,
            )
        )
    return '<div class="plots">' + "".join(charts) + "</div>"


def _messages_html(messages, response: str | None, raw: str | None, error: str | None) -> str:
    parts = []
    for m in messages:
        parts.append(
            f'<div class="msg {escape(m.get("role", ""))}"><span class="role">{escape(m.get("role", ""))}'
            f"</span>{escape(m.get('content', ''))}</div>"
        )
    if response is not None:
        parts.append(
            f'<div class="msg assistant"><span class="role">assistant</span>{escape(response)}</div>'
        )
    if raw:
        parts.append(
            f'<div class="msg"><span class="role">raw completion</span>{escape(raw)}</div>'
        )
    if error:
        parts.append(f'<div class="msg bad"><span class="role">error</span>{escape(error)}</div>')
    return "".join(parts)


def _summary_line(e: ExampleResult) -> str:
    if e.failed:
        mark = '<span class="bad">✗ failed</span>'
    elif e.meta.get("kind") == "window":
        mark = f"{e.score:.3f} bits/byte"
    elif e.meta.get("kind") == "smoke":
        mark = '<span class="ok">smoke ✓</span>' if (e.response or "").strip() else "smoke (empty)"
    else:
        mark = '<span class="ok">✓</span>' if e.score else '<span class="bad">✗</span>'
    bits = [mark, f"<code>{escape(e.id)}</code>"]
    if e.repeat:
        bits.append(f"repeat {e.repeat}")
    if e.correct_answer is not None:
        bits.append(f"correct {escape(e.correct_answer)}")
        bits.append(f"got {escape(str(e.extracted)) if e.extracted is not None else '—'}")
    if e.meta.get("rule"):
        bits.append(f'<span class="muted">({escape(e.meta["rule"])})</span>')
    if e.meta.get("preview"):
        bits.append(f'<span class="muted">{escape(e.meta["preview"][:80])}…</span>')
    return " · ".join(bits)


def _example_block(e: ExampleResult, extra_class: str = "") -> str:
    cls = " ".join(c for c in ("fail" if e.failed else "", extra_class) if c)
    body = _messages_html(e.messages, e.response, e.meta.get("raw"), e.error)
    if e.meta.get("kind") == "window":
        body = f'<div class="msg">{escape(json.dumps(dict(e.metrics)))}</div>' + body
    return f'<details class="{cls}"><summary>{_summary_line(e)}</summary>{body}</details>'


def _examples_single(r: EvalResult) -> str:
    smoke = [e for e in r.examples if e.meta.get("kind") == "smoke"]
    windows = [e for e in r.examples if e.meta.get("kind") == "window"]
    questions = [e for e in r.examples if e.meta.get("kind") not in ("smoke", "window")]
    html = ""
    if smoke:
        html += "<h3>Smoke conversation</h3>" + "".join(_example_block(e) for e in smoke)
    if windows:
        blocks = "".join(_example_block(e) for e in windows)
        html += f"<details><summary>{len(windows)} scored text windows</summary>{blocks}</details>"
    if questions:
        failed = [e for e in questions if e.failed]
        wrong = [e for e in questions if not e.failed and not e.score]
        right = [e for e in questions if not e.failed and e.score]
        html += (
            f"<h3>Examples</h3><p>{len(right)} correct, {len(wrong)} wrong, "
            f"{len(failed)} failed (failed first, then wrong, then correct).</p>"
        )
        html += "".join(_example_block(e) for e in failed + wrong + right)
    return html


def _verdict(e: ExampleResult | None) -> str:
    if e is None:
        return '<span class="muted">—</span>'
    if e.failed:
        return '<span class="bad">failed</span>'
    if e.correct_answer is None:
        return "ok"
    got = escape(str(e.extracted)) if e.extracted is not None else "—"
    return f'<span class="ok">✓ {got}</span>' if e.score else f'<span class="bad">✗ {got}</span>'


def _examples_compare(runs: Sequence[Run], name: str) -> str:
    html = ""
    windows = [
        [e for e in run.results[name].examples if e.meta.get("kind") == "window"]
        if name in run.results
        else []
        for run in runs
    ]
    if any(windows):  # text windows depend on each run's tokenizer: listed per run
        for run, ws in zip(runs, windows, strict=True):
            blocks = "".join(_example_block(e) for e in ws)
            html += (
                f"<details><summary>{escape(run.label)}: {len(ws)} scored text windows</summary>"
                f"{blocks}</details>"
            )
    per_run = [
        {(e.id, e.repeat): e for e in run.results[name].examples if e.meta.get("kind") != "window"}
        if name in run.results
        else {}
        for run in runs
    ]
    keys = list(dict.fromkeys(k for d in per_run for k in d))
    blocks_diff, blocks_same = [], []
    for key in keys:
        got = [d.get(key) for d in per_run]
        scores = {None if e is None else (e.score, e.extracted, e.failed) for e in got}
        differ = len(scores) > 1
        cells = []
        for run, e in zip(runs, got, strict=True):
            inner = _example_block(e) if e is not None else '<span class="muted">not run</span>'
            cells.append(f"<div><b>{escape(run.label)}</b>{inner}</div>")
        verdicts = " · ".join(
            f"{escape(run.label)} {_verdict(e)}" for run, e in zip(runs, got, strict=True)
        )
        block = (
            f'<details class="{"diff" if differ else ""}"><summary>'
            f"{'<b>differ</b> · ' if differ else ''}<code>{escape(key[0])}</code>"
            f"{f' · repeat {key[1]}' if key[1] else ''} · {verdicts}</summary>"
            f'<div class="side">{"".join(cells)}</div></details>'
        )
        (blocks_diff if differ else blocks_same).append(block)
    head = f"<p>{len(blocks_diff)} of {len(keys)} examples differ between runs (listed first).</p>"
    return html + head + "".join(blocks_diff + blocks_same)


def _groups_table(runs: Sequence[Run], name: str) -> str:
    keys = sorted(
        {k for run in runs if name in run.results for k in run.results[name].metrics if "[" in k}
    )
    if not keys:
        return ""
    head = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    rows = []
    for k in keys:
        cells = "".join(
            f'<td class="num">{run.results[name].metrics[k]:.3f}</td>'
            if name in run.results and k in run.results[name].metrics
            else "<td>—</td>"
            for run in runs
        )
        rows.append(f"<tr><td>{escape(k)}</td>{cells}</tr>")
    return f"<table><tr><th>group</th>{head}</tr>{''.join(rows)}</table>"


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.4g}"


def _other_metrics(runs: Sequence[Run], name: str) -> str:
    keys = sorted(
        {
            k
            for run in runs
            if name in run.results
            for k in run.results[name].metrics
            if "[" not in k
        }
    )
    if not keys:
        return ""
    rows = []
    for k in keys:
        cells = "".join(
            f'<td class="num">{_num(run.results[name].metrics[k])}</td>'
            if name in run.results and k in run.results[name].metrics
            else "<td>—</td>"
            for run in runs
        )
        rows.append(f"<tr><td>{escape(k)}</td>{cells}</tr>")
    head = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _malformed(runs: Sequence[Run], name: str) -> str:
    seen: dict[str, None] = {}
    for run in runs:
        if name in run.results:
            for m in run.results[name].malformed:
                seen[str(m)] = None
    if not seen:
        return ""
    items = "".join(f"<li><code>{escape(m)}</code></li>" for m in seen)
    return f'<p class="warn">{len(seen)} malformed dataset rows were skipped:</p><ul>{items}</ul>'


def _runs_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        s = run.sampler
        rows.append(
            "<tr>"
            f"<td><b>{escape(run.label)}</b>{' <span class=warn>(partial)</span>' if run.partial else ''}</td>"
            f"<td>{escape(str(s.get('name', '')))}</td>"
            f"<td><code>{escape(json.dumps(s.get('sampling', {})))}</code></td>"
            f"<td>{run.seed}</td><td>{escape(run.created)}</td>"
            f"<td>{escape(run.path or '')}</td></tr>"
        )
    return (
        "<table><tr><th>run</th><th>sampler</th><th>sampling</th><th>seed</th><th>created</th>"
        f"<th>file</th></tr>{''.join(rows)}</table>"
    )


def render_html(runs: Sequence[Run], title: str = "Mind 4 eval report") -> str:
    """One self-contained HTML page for one run, or several runs compared."""
    names = list(dict.fromkeys(n for run in runs for n in run.results))
    nav = " · ".join(f'<a href="#{escape(n)}">{escape(n)}</a>' for n in names)
    score_head = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    diff_head = "".join(
        f"<th>Δ {escape(run.label)} − {escape(runs[0].label)}</th>" for run in runs[1:]
    )
    score_rows = []
    for n in names:
        rs = [run.results.get(n) for run in runs]
        metric = next(r.metric for r in rs if r)
        better = next(r.higher_is_better for r in rs if r)
        cells = "".join(f'<td class="num">{_score_text(r)}</td>' for r in rs)
        diffs = "".join(
            f'<td class="num">{_paired(rs[0], r) if rs[0] and r else "—"}</td>' for r in rs[1:]
        )
        arrow = "↑" if better else "↓"
        score_rows.append(
            f"<tr><td><b>{escape(n)}</b></td><td>{escape(metric)} {arrow}</td>{cells}{diffs}</tr>"
        )
    sections = []
    for n in names:
        body = _other_metrics(runs, n) + _groups_table(runs, n) + _malformed(runs, n)
        if len(runs) == 1:
            body += _examples_single(runs[0].results[n])
        else:
            body += _examples_compare(runs, n)
        cfg = next(run.results[n].config for run in runs if n in run.results)
        sections.append(
            f'<h2 id="{escape(n)}">{escape(n)}</h2>'
            f'<p class="muted"><code>{escape(json.dumps(dict(cfg)))}</code></p>{body}'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{_runs_table(runs)}"
        f"<p>{nav}</p>"
        "<h2>Scores</h2><p class=muted>mean ± standard error [95% bootstrap CI]; "
        "failed examples count as wrong; Δ columns: paired difference on shared examples.</p>"
        f"<table><tr><th>eval</th><th>metric</th>{score_head}{diff_head}</tr>{''.join(score_rows)}</table>"
        f"{_plots(runs, names)}{''.join(sections)}</body></html>"
    )


def compare_text(runs: Sequence[Run]) -> list[list[str]]:
    """Rows of a plain side-by-side table (for the terminal): eval, metric, one cell per run."""
    names = list(dict.fromkeys(n for run in runs for n in run.results))
    rows = []
    for n in names:
        rs = [run.results.get(n) for run in runs]
        metric = next(r.metric for r in rs if r)
        cells = []
        for r in rs:
            if r is None or r.score is None:
                cells.append("—")
            else:
                ci = f" [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.ci else ""
                cells.append(f"{r.score:.4f} ± {r.stderr or 0:.4f}{ci}")
        rows.append([n, metric, *cells])
    return rows
