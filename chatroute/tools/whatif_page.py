"""``chatroute whatif --html DIR``: the comparison as one self-contained page, the two runs
side by side: per tenant its figures (baseline, change, delta), the waits' distribution, each
group's outcomes and each respondent's contacts, drawn by ``chatroute.charts``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatroute import charts
from chatroute.report import WAIT_LABELS, empty, escape, page, section, wait_buckets
from chatroute.tools.whatif import Comparison, cell, delta, figure_rows

# A page for people: the busiest groups and respondents are drawn (the JSON has them all).
MOST_GROUPS = 12
MOST_RESPONDENTS = 25
# Figures where less is better: their deltas show green when they fall; the neutral ones,
# in no colour; the rest (assigned at once) green when they grow.
LESS_IS_BETTER = {"queued", "overflowed", "wait_p50_s", "wait_p90_s", "unanswered", "unrouted"}
NEUTRAL = {"conversations", "commission"}


def write_page(compared: Comparison, events: Path, change: Path, out: Path) -> Path:
    """Write ``out/index.html`` and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    made = out / "index.html"
    made.write_text(render(compared, events.name, change.name), encoding="utf-8")
    return made


def render(compared: Comparison, events: str, change: str) -> str:
    base, other = compared.baseline.figures["tenants"], compared.change.figures["tenants"]
    parts = []
    for tenant in sorted(base.keys() | other.keys()):
        b, c = base.get(tenant, {}), other.get(tenant, {})
        waits = compared.baseline.waits.get(tenant, []), compared.change.waits.get(tenant, [])
        parts.append(f'<h2 class="tenant">Tenant {escape(tenant)}</h2>')
        parts.append(section("Figures", _table(b, c)))
        parts.append(section("Wait before first assignment", _waits(*waits)))
        parts.append(section("Groups", _groups(b.get("groups", {}), c.get("groups", {}))))
        parts.append(section("Contacts per respondent", _respondents(b, c)))
    if compared.change.unapplied:
        names = ", ".join(compared.change.unapplied)
        parts.append(empty(f"no event of tenant {names}: its change was not applied"))
    title = "chatroute what-if"
    return page(
        title, f"{events} as recorded (baseline) and with {change} (change)", "\n".join(parts)
    )


def _table(b: dict[str, Any], c: dict[str, Any]) -> str:
    head = "<tr><th>figure</th><th>baseline</th><th>change</th><th>delta</th></tr>"
    body = "".join(
        f"<tr><td>{escape(label)}</td><td>{escape(cell(x))}</td><td>{escape(cell(y))}</td>"
        f"{_delta(key, x, y)}</tr>"
        for label, key, x, y in figure_rows(b, c)
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _waits(before: list[float], after: list[float]) -> str:
    pairs = list(zip(wait_buckets(before), wait_buckets(after), strict=True))
    title = "Conversations by wait before first assignment"
    return _drawn(charts.paired(title, list(WAIT_LABELS), pairs))


def _groups(b: dict[str, Any], c: dict[str, Any]) -> str:
    names = sorted(
        b.keys() | c.keys(),
        key=lambda g: (
            -max(b.get(g, {}).get("conversations", 0), c.get(g, {}).get("conversations", 0)),
            g,
        ),
    )[:MOST_GROUPS]
    rows, pairs = [], []
    for group in sorted(names):
        x, y = b.get(group, {}), c.get(group, {})
        for label, figure in (("assigned at once", "assigned_at_once"), ("queued", "queued")):
            rows.append(f"{group}: {label}")
            pairs.append((x.get(figure, 0), y.get(figure, 0)))
        rows.append(f"{group}: unrouted")
        pairs.append((sum(x.get("unrouted", {}).values()), sum(y.get("unrouted", {}).values())))
    return _drawn(charts.paired("Each group's conversations", rows, pairs))


def _respondents(b: dict[str, Any], c: dict[str, Any]) -> str:
    before, after = b.get("respondents", {}), c.get("respondents", {})
    contacts = {
        name: (before.get(name, {}).get("contacts", 0), after.get(name, {}).get("contacts", 0))
        for name in before.keys() | after.keys()
    }
    busiest = sorted(contacts, key=lambda name: (-max(contacts[name]), name))[:MOST_RESPONDENTS]
    names = sorted(busiest)
    chart = charts.paired("Contacts per respondent", names, [contacts[n] for n in names])
    return _drawn(chart)


def _drawn(svg: str | None) -> str:
    return empty() if svg is None else svg


def _delta(key: str, x: Any, y: Any) -> str:
    if x is None or y is None or x == y:
        return "<td></td>"
    text, difference = delta(x, y), y - x
    if key in NEUTRAL:
        return f"<td>{text}</td>"
    kind = "better" if (difference < 0) == (key in LESS_IS_BETTER) else "worse"
    return f'<td class="{kind}">{text}</td>'
