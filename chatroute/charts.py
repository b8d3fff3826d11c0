"""The pages' charts (``chatroute report``, ``chatroute whatif --html``), drawn by matplotlib's
SVG backend and inlined: static SVG with text as text, no script, no network, a tooltip on
each bar. matplotlib is the kept library for it: it draws what we need (bars, a histogram, a
matrix) well, needs no browser or server, and writes SVG without a JavaScript runtime, which
Vega-Lite's renderer would bring along.

Each function returns one ``<svg>`` element, or None when there is nothing to draw.
"""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

WIDTH_IN = 7.5  # 720 px at the 96 px per inch of CSS
ROW_IN = 0.3  # one bar's row
COLOURS = {
    "answered": "#2f7d4f",
    "unanswered": "#c0504d",
    "bar": "#3b6ea8",
    "baseline": "#9aa5b1",
    "change": "#3b6ea8",
}
_GID = re.compile(r'<g id="(tip-[0-9a-f]+-\d+)">')
_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)  # RDF naming outside sites
# Charts inlined in one page share its id space: each gets ids (clip paths, tips) of its own.
_CHARTS = itertools.count()


@dataclass(frozen=True)
class Segment:
    value: float
    colour: str
    tip: str


@dataclass(frozen=True)
class Bar:
    name: str
    segments: Sequence[Segment]
    note: str = ""  # written at the bar's end


class _Chart:
    """A figure whose bars carry tooltips, rendered as an inline ``<svg>``."""

    def __init__(self, title: str, height_in: float) -> None:
        self.title = title
        self.figure = Figure(figsize=(WIDTH_IN, max(height_in, 1.2)), layout="constrained")
        self.axes = self.figure.add_subplot()
        self.tips: dict[str, str] = {}
        self._salt = hashlib.sha1(f"{next(_CHARTS)}:{title}".encode()).hexdigest()[:10]

    def tip(self, artist: Artist, text: str) -> None:
        gid = f"tip-{self._salt}-{len(self.tips)}"
        artist.set_gid(gid)
        self.tips[gid] = text

    def svg(self) -> str:
        out = io.StringIO()
        style = {"svg.fonttype": "none", "svg.hashsalt": self._salt, "font.size": 9}
        with matplotlib.rc_context(style):
            self.figure.savefig(out, format="svg", metadata={"Date": None})
        text = _METADATA.sub("", _PROLOG.sub("", out.getvalue(), count=1), count=1)
        text = _GID.sub(lambda m: f"{m.group(0)}<title>{_e(self.tips[m.group(1)])}</title>", text)
        opening = text.index(">") + 1
        return f"{text[:opening]}<title>{_e(self.title)}</title>{text[opening:]}".replace(
            "<svg ", '<svg role="img" ', 1
        )


def bars(title: str, rows: Sequence[Bar], legend: Sequence[tuple[str, str]] = ()) -> str | None:
    """Horizontal bars, one per row (top to bottom), each of stacked segments."""
    if not rows or not any(s.value > 0 for row in rows for s in row.segments):
        return None
    chart = _Chart(title, 0.6 + ROW_IN * len(rows))
    axes = chart.axes
    positions = list(range(len(rows)))[::-1]
    for y, row in zip(positions, rows, strict=True):
        left = 0.0
        for segment in row.segments:
            (patch,) = axes.barh(y, segment.value, left=left, color=segment.colour, height=0.7)
            chart.tip(patch, f"{row.name}: {segment.tip}")
            left += segment.value
        if row.note:
            axes.annotate(row.note, (left, y), xytext=(4, 0), textcoords="offset points",
                          va="center")  # fmt: skip
    axes.set_yticks(positions, [_short(row.name) for row in rows])
    _plain(axes, "x")
    _counts_in_whole_numbers(axes.xaxis, [s.value for row in rows for s in row.segments])
    if legend:
        _legend_above(axes, [Patch(color=colour, label=label) for label, colour in legend])
    return chart.svg()


def columns(title: str, labels: Sequence[str], counts: Sequence[int]) -> str | None:
    """Vertical bars: ``counts`` over ``labels`` (a histogram's buckets)."""
    if not any(counts):
        return None
    chart = _Chart(title, 2.6)
    for x, (label, n) in enumerate(zip(labels, counts, strict=True)):
        (patch,) = chart.axes.bar(x, n, color=COLOURS["bar"], width=0.8)
        chart.tip(patch, f"{label}: {n}")
        if n:
            chart.axes.annotate(str(n), (x, n), xytext=(0, 2), textcoords="offset points",
                                ha="center")  # fmt: skip
    chart.axes.set_xticks(range(len(labels)), labels)
    _counts_in_whole_numbers(chart.axes.yaxis, counts)
    _plain(chart.axes, "y")
    return chart.svg()


def paired(title: str, names: Sequence[str], pairs: Sequence[tuple[float, float]]) -> str | None:
    """Two bars per name, the baseline's and the change's (``chatroute whatif``)."""
    if not names or not any(a or b for a, b in pairs):
        return None
    chart = _Chart(title, 0.8 + 1.4 * ROW_IN * len(names))
    positions = list(range(len(names)))[::-1]
    for y, name, (before, after) in zip(positions, names, pairs, strict=True):
        for offset, value, side in ((0.2, before, "baseline"), (-0.2, after, "change")):
            (patch,) = chart.axes.barh(y + offset, value, height=0.38, color=COLOURS[side])
            chart.tip(patch, f"{name}, {side}: {_number(value)}")
    chart.axes.set_yticks(positions, [_short(name) for name in names])
    _legend_above(chart.axes, [Patch(color=COLOURS[s], label=s) for s in ("baseline", "change")])
    _counts_in_whole_numbers(chart.axes.xaxis, [v for pair in pairs for v in pair])
    _plain(chart.axes, "x")
    return chart.svg()


def matrix(title: str, names: Sequence[str], counts: dict[tuple[str, str], int]) -> str | None:
    """A square of counts from row to column (transfers between respondents)."""
    if not names or not counts:
        return None
    chart = _Chart(title, 1.2 + 0.32 * len(names))
    top = max(counts.values())
    for i, source in enumerate(names):
        for j, target in enumerate(names):
            n = counts.get((source, target), 0)
            shade = (0.15 + 0.85 * n / top) if n else 0.0
            colour = (0.23, 0.43, 0.66, shade) if n else "#f4f4f4"
            cell = Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, color=colour)
            chart.axes.add_patch(cell)
            chart.tip(cell, f"{source} → {target}: {n}")
            if n:
                chart.axes.text(j, i, str(n), ha="center", va="center")
    chart.axes.set_xlim(-0.5, len(names) - 0.5)
    chart.axes.set_ylim(len(names) - 0.5, -0.5)
    chart.axes.set_aspect("equal")
    chart.axes.set_xticks(range(len(names)), [_short(n) for n in names], rotation=60, ha="left")
    chart.axes.set_yticks(range(len(names)), [_short(n) for n in names])
    chart.axes.xaxis.tick_top()
    chart.axes.xaxis.set_label_position("top")
    chart.axes.set_xlabel("to")
    chart.axes.set_ylabel("from")
    for side in chart.axes.spines.values():
        side.set_visible(False)
    chart.axes.tick_params(length=0)
    return chart.svg()


def _legend_above(axes: Axes, handles: list[Patch]) -> None:
    axes.legend(
        handles=handles, loc="lower left", bbox_to_anchor=(0, 1), ncols=len(handles), frameon=False
    )


def _counts_in_whole_numbers(axis: Axis, values: Sequence[float]) -> None:
    """Ticks at whole numbers when every value is one (counts, not 0.25 of a conversation)."""
    if all(float(v).is_integer() for v in values):
        axis.set_major_locator(MaxNLocator(integer=True))


def _plain(axes: Axes, grid: str) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.grid(axis=grid, color="#e4e4e4", linewidth=0.6)
    axes.set_axisbelow(True)


def _short(name: str) -> str:
    return name if len(name) <= 30 else name[:29] + "…"


def _number(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
