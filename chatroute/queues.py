"""``chatroute queues`` and the group gauges: each group of a tenant now (or at a given time):
open or not, how many wait and for how long, who is available and how many slots are free."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatroute.domain import policy
from chatroute.store.reads import GroupState

COLUMNS = ("group", "open", "waiting", "longest_wait_s", "available", "free_slots")


def row(state: GroupState, at: datetime) -> dict[str, Any]:
    """The contract's row for ``state`` at ``at``. A conversation's wait counts from when it
    joined its rule's first queue (an overflow keeps it): how long its visitor has waited."""
    waited = None
    if state.first_joined is not None:
        waited = max(0.0, (at - state.first_joined).total_seconds())
    return {
        "group": state.group,
        "open": policy.hours_open(state.hours, at),
        "waiting": state.waiting,
        "longest_wait_s": waited,
        "available": state.available,
        "free_slots": state.free_slots,
    }


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no group"
    cells = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(COLUMNS)]
    lines = [COLUMNS, *cells]
    return "\n".join(
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.0f}" if isinstance(value, float) else str(value)
