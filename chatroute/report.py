"""``chatroute report``: one self-contained HTML page of a tenant's statistics, for managers.

Plots are inline SVG (``chatroute.charts``, matplotlib): the page needs no script, no network
and no other file, so it opens the same from a mail attachment, a share or a browser without
access to the internet.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatroute import charts
from chatroute.bootstrap import Runtime
from chatroute.stats import Window, rows, transfers, waits

WIDTH = 720
# A page for people: the busiest respondents are drawn, all of them are in ``chatroute stats``.
MOST_RESPONDENTS = 30
MOST_IN_MATRIX = 15
COLOURS = charts.COLOURS


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
        section("Contacts per respondent", note + _answered_chart(people)),
        section("Wait before first assignment", _histogram(waits(rt, window))),
        section("Transfers between respondents", _transfer_matrix(transfers(rt, window))),
        section(
            "Satisfaction per respondent (average score, ratings in brackets)",
            note + _bars(ratings),
        ),
        section(
            "Commission per respondent",
            note + _bars([(p["respondent"], p["commission"], None) for p in people]),
        ),
        section("Groups", _group_table(groups)),
    ]
    return _page(window, "\n".join(sections))


def _busiest_note(shown: int, everyone: int) -> str:
    if shown == everyone:
        return ""
    text = (
        f"The {shown} respondents with the most contacts, of {everyone}: chatroute stats lists all."
    )
    return f'<p class="meta">{escape(text)}</p>'


def _page(window: Window, body: str) -> str:
    span = " to ".join(
        t.strftime("%Y-%m-%d %H:%M") for t in (window.since, window.until) if t is not None
    )
    return page(f"chatroute statistics: {window.tenant}", span or "all time", body)


def page(title: str, meta: str, body: str) -> str:
    """A self-contained page (the report's, the what-if's): ``meta`` under the title."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
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
svg {{ max-width: 100%; height: auto; }}
.empty {{ color: #888; font-style: italic; }}
.better {{ color: #2f7d4f; }}
h2.tenant {{ font-size: 1.4rem; margin-top: 3rem; border-bottom: 2px solid #3b6ea8; }}
.worse {{ color: #c0504d; }}
</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{escape(meta)} · generated {generated}</p>
{body}
</body>
</html>
"""


def section(heading: str, content: str) -> str:
    return f"<section><h2>{escape(heading)}</h2>\n{content}\n</section>"


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
    inner = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
    return f'<div class="cards">{inner}</div>'


def _answered_chart(people: Sequence[dict[str, Any]]) -> str:
    rows = [
        charts.Bar(
            p["respondent"],
            [
                charts.Segment(p["answered"], COLOURS["answered"], f"answered: {p['answered']}"),
                charts.Segment(
                    p["unanswered"], COLOURS["unanswered"], f"unanswered: {p['unanswered']}"
                ),
            ],
            f"{p['answered']} / {p['contacts']}",
        )
        for p in people
    ]
    legend = [(kind, COLOURS[kind]) for kind in ("answered", "unanswered")]
    return _drawn(charts.bars("Answered and unanswered contacts", rows, legend))


WAIT_EDGES = (0, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_LABELS = (
    "<10 s",
    "10-30 s",
    "30-60 s",
    "1-2 min",
    "2-5 min",
    "5-10 min",
    "10-30 min",
    "30-60 min",
    "≥1 h",
)


def wait_buckets(values: Sequence[float]) -> list[int]:
    """How many of ``values`` (seconds) fall in each of ``WAIT_LABELS``' buckets."""
    counts = [0] * len(WAIT_LABELS)
    for v in values:
        counts[sum(v >= edge for edge in WAIT_EDGES[1:])] += 1
    return counts


def _histogram(values: Sequence[float]) -> str:
    title = "Conversations by wait before first assignment"
    return _drawn(charts.columns(title, WAIT_LABELS, wait_buckets(values)))


def _transfer_matrix(pairs: dict[tuple[str, str], int]) -> str:
    if not pairs:
        return empty("no transfers between respondents")
    volume: dict[str, int] = {}
    for (source, target), n in pairs.items():
        volume[source] = volume.get(source, 0) + n
        volume[target] = volume.get(target, 0) + n
    names = sorted(sorted(volume, key=lambda name: (-volume[name], name))[:MOST_IN_MATRIX])
    shown = {(s, t): n for (s, t), n in pairs.items() if s in names and t in names}
    return _drawn(charts.matrix("Transfers from respondent to respondent", names, shown))


def _bars(items: Sequence[tuple[str, float | None, int | None]]) -> str:
    rows = [
        charts.Bar(
            name,
            [charts.Segment(value, COLOURS["bar"], f"{value:.2f}")],
            f"{value:.2f}" + (f" ({note})" if note is not None else ""),
        )
        for name, value, note in items
        if value is not None
    ]
    return _drawn(charts.bars("Per respondent", rows))


def _drawn(svg: str | None) -> str:
    return empty() if svg is None else svg


def _group_table(groups: Sequence[dict[str, Any]]) -> str:
    if not groups:
        return empty()
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
        lines.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(lines) + "</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def empty(text: str = "nothing to show for this period") -> str:
    return f'<p class="empty">{escape(text)}</p>'


def escape(text: str) -> str:
    return html.escape(text, quote=True)
