"""``chatroute report``: one self-contained HTML page of a tenant's statistics, for managers.

Plots are inline SVG drawn here: the page needs no script, no network and no other file, so it
opens the same from a mail attachment, a share or a browser without access to the internet.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatroute.bootstrap import Runtime
from chatroute.stats import Window, rows, transfers, waits

WIDTH = 720
BAR = 22  # height of one bar, in px
LABEL = 160  # room for names left of the bars
HEADER = 70  # room for the transfer matrix's column names
# A page for people: the busiest respondents are drawn, all of them are in ``chatroute stats``.
MOST_RESPONDENTS = 30
MOST_IN_MATRIX = 15
COLOURS = {"answered": "#2f7d4f", "unanswered": "#c0504d", "bar": "#3b6ea8", "grid": "#d9d9d9"}


def write_report(rt: Runtime, window: Window, out: Path) -> Path:
    """Write ``out/index.html`` for ``window`` (its tenant) and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render(rt, window), encoding="utf-8")
    return page


def render(rt: Runtime, window: Window) -> str:
    everyone = [r for r in rows(rt, "respondent", window) if r["contacts"]]
    groups = rows(rt, "group", window)
    busiest = sorted(everyone, key=lambda r: (-r["contacts"], r["respondent"]))[:MOST_RESPONDENTS]
    people = sorted(busiest, key=lambda r: r["respondent"])
    note = _busiest_note(len(people), len(everyone))
    ratings = [(p["respondent"], p["satisfaction_avg"], p["satisfaction_count"]) for p in people]
    sections = [
        _summary(everyone, groups),
        _section("Contacts per respondent", note + _answered_chart(people)),
        _section("Wait before first assignment", _histogram(waits(rt, window))),
        _section("Transfers between respondents", _transfer_matrix(transfers(rt, window))),
        _section(
            "Satisfaction per respondent (average score, ratings in brackets)",
            note + _bars(ratings),
        ),
        _section(
            "Commission per respondent",
            note + _bars([(p["respondent"], p["commission"], None) for p in people]),
        ),
        _section("Groups", _group_table(groups)),
    ]
    return _page(window, "\n".join(sections))


def _busiest_note(shown: int, everyone: int) -> str:
    if shown == everyone:
        return ""
    text = (
        f"The {shown} respondents with the most contacts, of {everyone}: chatroute stats lists all."
    )
    return f'<p class="meta">{_e(text)}</p>'


def _page(window: Window, body: str) -> str:
    span = " to ".join(
        t.strftime("%Y-%m-%d %H:%M") for t in (window.since, window.until) if t is not None
    )
    title = f"chatroute statistics: {window.tenant}"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: {WIDTH + 80}px;
       color: #222; padding: 0 1rem; }}
h1 {{ font-size: 1.5rem; margin-bottom: 0; }}
h2 {{ font-size: 1.1rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }}
.meta {{ color: #666; margin-top: .2rem; }}
.cards {{ display: flex; flex-wrap: wrap; gap: .8rem; margin-top: 1.2rem; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem .9rem; min-width: 7rem; }}
.card b {{ display: block; font-size: 1.35rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: right; padding: .25rem .5rem; border-bottom: 1px solid #eee; }}
th:first-child, td:first-child {{ text-align: left; }}
svg text {{ font: 12px system-ui, sans-serif; fill: #333; }}
.empty {{ color: #888; font-style: italic; }}
</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">{_e(span or "all time")} · generated {generated}</p>
{body}
</body>
</html>
"""


def _section(heading: str, content: str) -> str:
    return f"<section><h2>{_e(heading)}</h2>\n{content}\n</section>"


def _summary(people: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]]) -> str:
    contacts = sum(p["contacts"] for p in people)
    answered = sum(p["answered"] for p in people)
    rated = sum(p["satisfaction_count"] for p in people)
    score = sum((p["satisfaction_avg"] or 0) * p["satisfaction_count"] for p in people)
    cards = [
        ("conversations", str(sum(g["conversations"] for g in groups))),
        ("contacts", str(contacts)),
        ("answered", f"{100 * answered / contacts:.0f}%" if contacts else "-"),
        ("transfers", str(sum(p["transfers_out"] for p in people))),
        ("satisfaction", f"{score / rated:.2f}" if rated else "-"),
        ("commission", f"{sum(p['commission'] for p in people):.2f}"),
    ]
    inner = "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards)
    return f'<div class="cards">{inner}</div>'


def _answered_chart(people: Sequence[dict[str, Any]]) -> str:
    if not people:
        return _empty()
    top = max(p["contacts"] for p in people)
    scale = (WIDTH - LABEL - 90) / top
    parts = []
    for i, p in enumerate(people):
        y = 24 + i * (BAR + 6)
        a, u = p["answered"] * scale, p["unanswered"] * scale
        parts.append(_label(p["respondent"], y))
        parts.append(_rect(LABEL, y, a, COLOURS["answered"], f"answered: {p['answered']}"))
        parts.append(
            _rect(LABEL + a, y, u, COLOURS["unanswered"], f"unanswered: {p['unanswered']}")
        )
        parts.append(_value(LABEL + a + u + 6, y, f"{p['answered']} / {p['contacts']}"))
    legend = (
        _rect(LABEL, 2, 12, COLOURS["answered"], "answered", height=12)
        + _text(LABEL + 16, 12, "answered")
        + _rect(LABEL + 100, 2, 12, COLOURS["unanswered"], "unanswered", height=12)
        + _text(LABEL + 116, 12, "unanswered")
    )
    return _svg(
        "Answered and unanswered contacts", 30 + len(people) * (BAR + 6), legend + "".join(parts)
    )


def _histogram(values: Sequence[float]) -> str:
    if not values:
        return _empty()
    edges = [0, 10, 30, 60, 120, 300, 600, 1800, 3600]
    labels = [
        "<10 s",
        "10-30 s",
        "30-60 s",
        "1-2 min",
        "2-5 min",
        "5-10 min",
        "10-30 min",
        "30-60 min",
        "≥1 h",
    ]
    counts = [0] * len(labels)
    for v in values:
        counts[sum(v >= edge for edge in edges[1:])] += 1
    top = max(counts)
    column = (WIDTH - 40) / len(labels)
    height = 200
    parts = []
    for i, n in enumerate(counts):
        h = height * n / top
        x = 20 + i * column
        parts.append(
            _rect(x + 4, 20 + height - h, column - 8, COLOURS["bar"], f"{labels[i]}: {n}", height=h)
        )
        parts.append(_text(x + column / 2, height + 36, labels[i], "middle"))
        parts.append(_text(x + column / 2, 16 + height - h, str(n), "middle"))
    return _svg("Conversations by wait before first assignment", height + 50, "".join(parts))


def _transfer_matrix(pairs: dict[tuple[str, str], int]) -> str:
    if not pairs:
        return _empty("no transfers between respondents")
    volume: dict[str, int] = {}
    for (source, target), n in pairs.items():
        volume[source] = volume.get(source, 0) + n
        volume[target] = volume.get(target, 0) + n
    names = sorted(sorted(volume, key=lambda name: (-volume[name], name))[:MOST_IN_MATRIX])
    cell = min(36, (WIDTH - LABEL) / len(names))
    top = max((n for (s, t), n in pairs.items() if s in names and t in names), default=1)
    parts = [_text(0, 14, "from ↓ / to →")]
    for j, name in enumerate(names):
        x = LABEL + j * cell + cell / 2
        parts.append(_text(x, HEADER - 6, name, rotate=-60))
    for i, source in enumerate(names):
        y = HEADER + i * cell
        parts.append(_label(source, y, height=cell))
        for j, target in enumerate(names):
            n = pairs.get((source, target), 0)
            shade = 0.08 + 0.92 * n / top if n else 0.0
            colour = f"rgba(59,110,168,{shade:.2f})" if n else "#f4f4f4"
            parts.append(
                _rect(
                    LABEL + j * cell,
                    y,
                    cell - 2,
                    colour,
                    f"{source} → {target}: {n}",
                    height=cell - 2,
                )
            )
            if n:
                parts.append(
                    _text(LABEL + j * cell + cell / 2 - 1, y + cell / 2 + 4, str(n), "middle")
                )
    return _svg(
        "Transfers from respondent to respondent", HEADER + len(names) * cell + 10, "".join(parts)
    )


def _bars(items: Sequence[tuple[str, float | None, int | None]]) -> str:
    shown = [(name, value, note) for name, value, note in items if value is not None]
    if not shown or max(v for _, v, _ in shown) <= 0:
        return _empty()
    top = max(v for _, v, _ in shown)
    scale = (WIDTH - LABEL - 90) / top
    parts = []
    for i, (name, value, note) in enumerate(shown):
        y = 6 + i * (BAR + 6)
        parts.append(_label(name, y))
        parts.append(_rect(LABEL, y, value * scale, COLOURS["bar"], f"{name}: {value:.2f}"))
        text = f"{value:.2f}" + (f" ({note})" if note is not None else "")
        parts.append(_value(LABEL + value * scale + 6, y, text))
    return _svg("Per respondent", 12 + len(shown) * (BAR + 6), "".join(parts))


def _group_table(groups: Sequence[dict[str, Any]]) -> str:
    if not groups:
        return _empty()
    head = [
        "group",
        "conversations",
        "queued",
        "wait avg",
        "wait p90",
        "contacts",
        "answered",
        "unrouted",
    ]
    lines = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for g in groups:
        cells = [
            g["group"] if g["group"] is not None else "(no rule matched)",
            g["conversations"],
            g["queued"],
            _seconds(g["wait_avg_s"]),
            _seconds(g["wait_p90_s"]),
            g["contacts"],
            g["answered"],
            g["unrouted"],
        ]
        lines.append("<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(lines) + "</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _svg(title: str, height: float, inner: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}"><title>{_e(title)}</title>{inner}</svg>'
    )


def _rect(x: float, y: float, width: float, fill: str, tip: str, height: float = BAR) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" height="{height:.1f}" '
        f'fill="{fill}"><title>{_e(tip)}</title></rect>'
    )


def _label(name: str, y: float, height: float = BAR) -> str:
    short = name if len(name) <= 22 else name[:21] + "…"
    return _text(LABEL - 8, y + height / 2 + 4, short, "end")


def _value(x: float, y: float, text: str) -> str:
    return _text(x, y + BAR / 2 + 4, text)


def _text(x: float, y: float, text: str, anchor: str = "start", rotate: float = 0) -> str:
    turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{turn}>{_e(text)}</text>'


def _empty(text: str = "nothing to show for this period") -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)
