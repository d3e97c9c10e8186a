"""The report pictures: a truth-vs-detected timeline, a score trace with its thresholds, an
annotated frame, grouped metric bars. Pure functions from plain data to a matplotlib
`Figure` (object API, Agg: no display, no global state); `report_html` embeds them.

Times are seconds on the session's clock. Colours are fixed so a reader (and a test that
looks at a screenshot) can tell truth from detection: truth green, detected blue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

TRUTH_COLOR = "#2ca02c"
DETECTED_COLOR = "#1f77b4"
ON_COLOR = "#d62728"
OFF_COLOR = "#ff7f0e"
WIDTH_IN = 9.0

Interval = tuple[float, float]


def timeline(title: str, rows: Sequence[tuple[str, Sequence[Interval], str]], t_range: Interval) -> Figure:
    """One row per (label, intervals, colour); an interval of zero length (an instant, e.g.
    a text query) is drawn as a tick mark."""
    fig = Figure(figsize=(WIDTH_IN, 0.9 + 0.38 * max(len(rows), 1)))
    ax = fig.add_subplot()
    for i, (_, spans, color) in enumerate(rows):
        y = len(rows) - 1 - i
        bars = [(s, e - s) for s, e in spans if e > s]
        if bars:
            ax.broken_barh(bars, (y - 0.35, 0.7), facecolors=color)
        instants = [s for s, e in spans if e <= s]
        if instants:
            ax.plot(instants, [y] * len(instants), marker="|", markersize=16, markeredgewidth=3, linestyle="",
                    color=color)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)])
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax.set_xlim(*t_range)
    ax.set_xlabel("capture time (s)")
    ax.set_title(title, loc="left", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def score_trace(title: str, traces: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                points: Sequence[tuple[float, float]], *, on: float, off: float, t_range: Interval) -> Figure:
    """Score curves (label, times, scores), event-phase scores as dots, and the rule's
    `on` (start) and `off` (end) thresholds as lines."""
    fig = Figure(figsize=(WIDTH_IN, 2.4))
    ax = fig.add_subplot()
    for label, times, scores in traces:
        ax.plot(times, scores, linewidth=1.2, label=label)
    if points:
        t, s = zip(*points)
        ax.plot(t, s, "o", color=DETECTED_COLOR, markersize=5, label="event phases")
    ax.axhline(on, color=ON_COLOR, linestyle="--", linewidth=1, label=f"on {on:g}")
    if off != on:
        ax.axhline(off, color=OFF_COLOR, linestyle=":", linewidth=1, label=f"off {off:g}")
    ax.set_xlim(*t_range)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("capture time (s)")
    ax.set_ylabel("score")
    ax.set_title(title, loc="left", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def annotated_frame(image_rgb: np.ndarray, boxes: Sequence[tuple[Sequence[float], str, bool]], title: str) -> Figure:
    """The frame with boxes (x0, y0, x1, y1 in pixels) and their labels; highlighted ones
    (the speaking face) in red, the others in blue."""
    h, w = image_rgb.shape[:2]
    fig = Figure(figsize=(3.6, 3.6 * h / w + 0.35))
    ax = fig.add_subplot()
    ax.imshow(image_rgb)
    for (x0, y0, x1, y1), label, highlight in boxes:
        color = ON_COLOR if highlight else DETECTED_COLOR
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2))
        ax.text(x0, max(y0 - 3, 8), label, color="white", fontsize=7, backgroundcolor=color)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return fig


def metric_bars(title: str, groups: dict[str, dict[str, float]], *, ylabel: str) -> Figure:
    """Grouped bars: one group per key of `groups`, one bar per inner key."""
    names = list(groups)
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    fig = Figure(figsize=(WIDTH_IN, 2.8))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(names))
    for i, s in enumerate(series):
        ax.bar(x + i * width, [groups[n].get(s, 0.0) for n in names], width, label=s)
    ax.set_xticks(x + width * (len(series) - 1) / 2, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig

