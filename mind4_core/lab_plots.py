"""PNG figures of the lab's instruments (matplotlib, imported only when a plot is drawn).

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas
directly: no pyplot, no global backend switch, nothing shown on a screen.
Each ``plot_*`` takes the dict the matching ``*_report`` of
:mod:`mind4_core.lab` returns and writes one PNG.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Mind4Error

DPI = 110


def _figure(width: float, height: float, layout: str | None = None):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise Mind4Error(
            "plots need matplotlib: `pip install matplotlib` (or pass --out '' for no PNG)"
        ) from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise Mind4Error(f"cannot write {path}: folder {path.parent} does not exist")
    with warnings.catch_warnings():  # glyphs a font lacks (CJK, emoji) are drawn as boxes
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(path, format="png", dpi=DPI, facecolor="white")
    return path


def label(text: str, limit: int = 12) -> str:
    """A token as a tick label: visible whitespace, no mathtext, bounded length."""
    text = text.replace("\n", "↵").replace("\t", "⇥").replace("$", r"\$")
    text = text.replace(" ", "·") if text.strip() == "" else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _token_ticks(ax, axis: str, texts: list[str], offset: int = 0, max_labels: int = 48) -> None:
    n = len(texts)
    step = max(1, math.ceil(n / max_labels))
    ticks = list(range(0, n, step))
    labels = [f"{i} {label(texts[i])}" for i in ticks]
    fontsize = 8 if n <= 24 else 6
    if axis == "x":
        ax.set_xticks([t + offset for t in ticks], labels, rotation=90, fontsize=fontsize)
    else:
        ax.set_yticks([t + offset for t in ticks], labels, fontsize=fontsize)


def _locator(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


# ----------------------------------------------------------------------------- routing


#: above this many layers the per-layer histograms become one heatmap (a row per layer)
MAX_HISTOGRAMS = 12


def plot_routing(report: dict[str, Any], path: str | Path, *, focus: int | None = None) -> Path:
    """Left: gate weight of every (token, expert) in one layer. Right: the expert load of
    each layer, as one histogram per layer (light bars: tokens routed to the expert;
    dark bars: the gate weight they carry), or for many layers as a heatmap whose
    rows are those histograms."""
    layers: list[int] = report["layers"]
    E, k = report["num_experts"], report["experts_per_token"]
    texts: list[str] = report["texts"]
    T = len(texts)
    focus = layers[0] if focus is None else focus
    fi = layers.index(focus)

    n = len(layers)
    small_multiples = n <= MAX_HISTOGRAMS
    cols = math.ceil(math.sqrt(n)) if small_multiples else 1
    rows = math.ceil(n / cols)
    map_w = max(3.5, min(9.0, 0.22 * E + 2.5))
    load_w = 2.6 * cols if small_multiples else max(5.0, min(12.0, 0.22 * E + 2.5))
    height = max(4.5, 0.16 * T + 2.2, (2.2 * rows + 1.2) if small_multiples else 0.22 * n + 2.2)
    fig = _figure(map_w + load_w + 1.0, height)
    outer = fig.add_gridspec(
        1, 2, width_ratios=[map_w, load_w], left=0.1, right=0.96, top=0.88, bottom=0.12, wspace=0.3
    )

    # token x expert gate weights of the focus layer
    ax = fig.add_subplot(outer[0])
    gates = np.full((T, E), np.nan)  # (T, E): blank where the expert was not chosen
    for t in range(T):
        gates[t, report["experts"][fi, t]] = report["weights"][fi, t]
    cmap = _cmap("viridis").with_extremes(bad="#f2f2f2")
    im = ax.imshow(gates, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="none")
    ax.set_title(f"layer {focus}: gate weight per token (top-{k} of {E})", fontsize=9)
    ax.set_xlabel("expert")
    _expert_ticks(ax, E)
    _token_ticks(ax, "y", texts)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="gate weight")

    if small_multiples:
        inner = outer[1].subgridspec(rows, cols, hspace=0.7, wspace=0.35)
        for i, layer in enumerate(layers):
            axh = fig.add_subplot(inner[i // cols, i % cols])
            axh.bar(range(E), report["load"][i], color="#9ecae1", width=0.85, label="tokens")
            axh.bar(range(E), report["gate_load"][i], color="#08519c", width=0.5, label="gate")
            axh.axhline(T * k / E, color="black", linewidth=0.7, linestyle="--", label="balanced")
            axh.set_title(f"layer {layer}", fontsize=8)
            axh.set_xlim(-0.6, E - 0.4)
            axh.tick_params(labelsize=6)
            if i == 0:
                axh.legend(fontsize=6, loc="upper right", framealpha=0.8)
            if i % cols == 0:
                axh.set_ylabel("tokens", fontsize=7)
            if i + cols >= n:
                axh.set_xlabel("expert", fontsize=7)
        title = "light bars: tokens routed to an expert, dark: the gate weight they carry"
    else:
        axl = fig.add_subplot(outer[1])
        share = report["load"] / max(T * k, 1)  # (layers, E) share of the routing slots
        iml = axl.imshow(share, aspect="auto", cmap="Blues", vmin=0.0, interpolation="none")
        axl.set_yticks(range(n), [str(layer) for layer in layers], fontsize=6 if n > 24 else 7)
        axl.set_ylabel("layer")
        axl.set_xlabel("expert")
        _expert_ticks(axl, E)
        axl.set_title(f"expert load per layer (balanced: {1 / E:.3f})", fontsize=9)
        fig.colorbar(iml, ax=axl, fraction=0.046, pad=0.02, label="share of routed tokens")
        title = "each row of the right panel is one layer's load histogram"
    fig.suptitle(f"expert routing over {T} tokens; {title}", fontsize=10)
    return _save(fig, path)


def _expert_ticks(ax, E: int) -> None:
    step = 1 if E <= 16 else (2 if E <= 32 else 8)
    ax.set_xticks(range(0, E, step), [str(e) for e in range(0, E, step)], fontsize=7)


# ----------------------------------------------------------------------------- attention


def plot_attention(report: dict[str, Any], path: str | Path) -> Path:
    """Rows: queries; first column: the sink's share; then the keys. Positions a query
    cannot see are blank (future) or hatched grey (out of the sliding window, whose
    edge is drawn in red)."""
    from matplotlib.patches import Rectangle

    probs: np.ndarray = report["probs"]  # (T, T)
    sink: np.ndarray = report["sink"]  # (T,)
    texts: list[str] = report["texts"]
    window = report["window"]
    T = len(texts)
    size = max(5.0, min(16.0, 0.28 * T + 3.0))
    fig = _figure(size + 1.2, size)
    ax = fig.add_axes([0.17, 0.17, 0.68, 0.72])
    cax = fig.add_axes([0.88, 0.17, 0.025, 0.72])

    q = np.arange(T)[:, None]
    kpos = np.arange(T)[None, :]
    future = kpos > q  # (T, T)
    outside = (kpos <= q - window) if window else np.zeros((T, T), dtype=bool)
    grid = np.column_stack([sink, probs]).astype(float)  # (T, 1 + T)
    grid[:, 1:][future | outside] = np.nan
    vmax = max(float(np.nanmax(grid)), 1e-6)
    cmap = _cmap("magma_r").with_extremes(bad="white")
    im = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="none")
    fig.colorbar(im, cax=cax, label="attention weight")

    # out-of-window cells: hatched grey
    for t in range(T):
        for s in range(T):
            if outside[t, s]:
                ax.add_patch(
                    Rectangle(
                        (s + 0.5, t - 0.5),
                        1,
                        1,
                        facecolor="#dddddd",
                        edgecolor="#999999",
                        hatch="///",
                        linewidth=0,
                    )
                )
    if window and window < T:  # the window's left edge: a staircase in red
        xs, ys = [], []
        for t in range(T):
            left = max(0, t - window + 1) + 1 - 0.5  # +1: the sink column comes first
            xs += [left, left]
            ys += [t - 0.5, t + 0.5]
        ax.plot(xs, ys, color="red", linewidth=1.6, label=f"sliding window ({window})")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax.axvline(0.5, color="white", linewidth=3)  # the sink column stands apart
    ax.axvline(0.5, color="black", linewidth=0.8)

    fontsize = 8 if T <= 24 else 6
    _token_ticks(ax, "y", texts)
    step = max(1, math.ceil(T / 48))
    ticks = list(range(0, T, step))
    ax.set_xticks(
        [0] + [t + 1 for t in ticks],
        ["SINK"] + [f"{i} {label(texts[i])}" for i in ticks],
        rotation=90,
        fontsize=fontsize,
    )
    ax.get_xticklabels()[0].set_fontweight("bold")
    ax.set_xlabel("key (the sink first)")
    ax.set_ylabel("query")
    if not window:
        kind = "full causal"
    elif window < T:
        kind = f"sliding window {window}, hatched: outside it"
    else:
        kind = f"sliding window {window} ≥ {T} tokens: nothing cut"
    ax.set_title(
        f"layer {report['layer']} head {report['head']} ({kind}); "
        f"mean sink share {float(np.mean(sink)):.2f}",
        fontsize=10,
    )
    return _save(fig, path)


# ----------------------------------------------------------------------------- logit lens


def fmt_p(p: float) -> str:
    """A probability in a few characters: 0.412, 0.0031, 2.1e-05."""
    return f"{p:.3f}" if p >= 0.01 else (f"{p:.4f}" if p >= 0.001 else f"{p:.1e}")


def plot_lens(report: dict[str, Any], path: str | Path) -> Path:
    """Left: probability of the final top tokens read at every stage. Right, on the
    same rows: each stage's entropy, and its probability of the final top-1 token
    (and of the prompt's actual next token, where there is one), on a log scale."""
    stages = [s["stage"] for s in report["stages"]]
    grid = np.asarray(report["stage_probs_of_final_top"])  # (stages, top)
    names = [label(t, 14) for t in report["final_top_texts"]]
    S, K = grid.shape
    fig = _figure(max(8.0, 0.9 * K + 6.5), max(4.0, 0.34 * S + 2.2), layout="constrained")
    gs = fig.add_gridspec(1, 2, width_ratios=[max(2.5, 0.9 * K), 4.0])
    ax = fig.add_subplot(gs[0])
    top = max(float(grid.max()), 1e-12)
    ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=top, aspect="auto", interpolation="none")
    for i in range(S):
        for j in range(K):
            v = grid[i, j]
            color = "white" if v > 0.6 * top else "black"
            ax.text(j, i, fmt_p(v), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(K), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(S), stages, fontsize=7)
    ax.set_xlabel("the final layer's top tokens")
    ax.set_title("p(token) read at each stage", fontsize=9)

    ax2 = fig.add_subplot(gs[1], sharey=ax)
    y = np.arange(S)
    entropy = [s["entropy_bits"] for s in report["stages"]]
    ax2.plot(entropy, y, marker="o", color="tab:purple", label="entropy (bits)")
    ax2.set_xlabel("entropy (bits)", color="tab:purple")
    ax2.ticklabel_format(axis="x", useOffset=False)
    ax2.xaxis.set_major_locator(_locator(3))
    ax2.tick_params(axis="y", labelleft=False)
    ax2.grid(True, axis="y", alpha=0.3)
    ax3 = ax2.twiny()
    series = [("final top-1 " + repr(names[0]), "final_top1_probability", "s", "tab:green")]
    if report["next_token"] is not None:
        series.append(("next token in the prompt", "next_token_probability", "^", "tab:orange"))
    lowest = 1.0
    for name, key, marker, color in series:
        values = np.maximum([s[key] for s in report["stages"]], 1e-12)
        lowest = min(lowest, float(values.min()))
        ax3.plot(values, y, marker=marker, color=color, label=f"p({name})")
    ax3.set_xscale("log")
    ax3.set_xlim(max(1e-12, lowest / 3), 1.0)
    ax3.set_xlabel("probability (log scale)")
    handles = ax2.get_legend_handles_labels()
    more = ax3.get_legend_handles_labels()
    ax3.legend(
        handles[0] + more[0],
        handles[1] + more[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        fontsize=7,
        ncol=2,
    )
    pos = report["position"]
    fig.suptitle(
        f"logit lens at position {pos} ({label(report['texts'][pos], 20)!r}): "
        "the residual stream after each sub-layer, unembedded",
        fontsize=10,
    )
    return _save(fig, path)


# ----------------------------------------------------------------------------- bench


def plot_bench(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Decode tokens/s against context length, one line per backend."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for r in results:
        points = sorted(
            (int(key.split("@")[1]), value)
            for key, value in r.items()
            if key.startswith("decode_tok_s@") and isinstance(value, (int, float))
        )
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            marker="o",
            label=f"{r['backend']} ({r.get('device', '?')}, {r.get('dtype', '?')})",
        )
        drawn += 1
    if not drawn:
        raise Mind4Error("no backend produced decode measurements to plot")
    ax.set_xlabel("context length (tokens already in the cache)")
    ax.set_ylabel("decode tokens/s")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    preset = results[0].get("preset", "")
    ax.set_title(f"mind4 bench: decode speed vs context ({preset})", fontsize=10)
    return _save(fig, path)
