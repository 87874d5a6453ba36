"""A small inline-SVG bar chart with confidence-interval whiskers.

No plotting library is needed to read a report: the chart is a few dozen SVG
elements written here, embedded in the HTML as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import attrs

PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")


@attrs.frozen
class Series:
    """One bar per category: ``values[i]`` with interval ``(lows[i], highs[i])``."""

    label: str
    values: Sequence[float | None]
    lows: Sequence[float | None]
    highs: Sequence[float | None]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str = "",
    ylabel: str = "",
    ymin: float | None = None,
    ymax: float | None = None,
    width: int = 640,
    height: int = 300,
) -> str:
    """SVG text of a grouped bar chart: one group per category, one bar per series."""
    left, right, top, bottom = 56, 16, 34 if title else 14, 30
    if len(series) > 1:
        bottom += 22
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        v
        for s in series
        for v in (*s.values, *s.lows, *s.highs)
        if v is not None and math.isfinite(v)
    ]
    lo = ymin if ymin is not None else min([0.0, *values])
    hi = ymax if ymax is not None else (max(values) * 1.1 if values else 1.0)
    ticks = nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11" '
        f'role="img" aria-label="{escape(title or ylabel)}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13" '
            f'font-weight="600">{escape(title)}</text>'
        )
    for t in ticks:
        ty = y(t)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>'
        )
    if ylabel:
        out.append(
            f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
            f'fill="#333">{escape(ylabel)}</text>'
        )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y(max(lo, 0.0)):.1f}" '
        f'y2="{y(max(lo, 0.0)):.1f}" stroke="#333"/>'
    )
    n_cat, n_ser = max(1, len(categories)), max(1, len(series))
    group_w = plot_w / n_cat
    bar_w = min(48.0, group_w * 0.8 / n_ser)
    for ci, cat in enumerate(categories):
        gx = left + group_w * ci + (group_w - bar_w * n_ser) / 2
        for si, s in enumerate(series):
            v = s.values[ci] if ci < len(s.values) else None
            x = gx + bar_w * si
            color = PALETTE[si % len(PALETTE)]
            if v is None or not math.isfinite(v):
                out.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{y(lo) - 4:.1f}" text-anchor="middle" '
                    f'fill="#999">n/a</text>'
                )
                continue
            base = y(max(lo, 0.0))
            top_y = y(v)
            out.append(
                f'<rect x="{x + 1:.1f}" y="{min(top_y, base):.1f}" width="{bar_w - 2:.1f}" '
                f'height="{abs(base - top_y):.1f}" fill="{color}">'
                f"<title>{escape(s.label)} · {escape(cat)}: {v:.4g}</title></rect>"
            )
            low, h = s.lows[ci], s.highs[ci]
            cx = x + bar_w / 2
            if low is not None and h is not None:
                out.append(
                    f'<path d="M{cx:.1f},{y(low):.1f}V{y(h):.1f}M{cx - 4:.1f},{y(low):.1f}h8'
                    f'M{cx - 4:.1f},{y(h):.1f}h8" stroke="#222" stroke-width="1.2" fill="none"/>'
                )
            label_y = min(top_y, y(h) if h is not None else top_y) - 4
            out.append(
                f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle" fill="#222">'
                f"{_fmt(v)}</text>"
            )
        out.append(
            f'<text x="{left + group_w * (ci + 0.5):.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" fill="#333">{escape(cat)}</text>'
        )
    if len(series) > 1:
        lx = left
        ly = height - 12
        for si, s in enumerate(series):
            out.append(
                f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
                f'fill="{PALETTE[si % len(PALETTE)]}"/>'
            )
            out.append(f'<text x="{lx + 14}" y="{ly}" fill="#333">{escape(s.label)}</text>')
            lx += 24 + 6.5 * len(s.label)
    out.append("</svg>")
    return "\n".join(out)
