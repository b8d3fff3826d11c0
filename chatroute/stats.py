"""Statistics: the stats worker's fold, and ``chatroute stats`` rows over what it stored.

The routing transaction only stamps changed conversations (``stats_seq``); the stats worker
folds them into contact and conversation figures (``store.figures``) outside routing, and
every query here reads those figures alone.
"""

from __future__ import annotations

from typing import Any

from chatroute.bootstrap import Runtime
from chatroute.store import figures, sums
from chatroute.store.sums import Window

CONTACT_COLUMNS = (
    "contacts",
    "answered",
    "unanswered",
    "transfers_out",
    "snoozes",
    "satisfaction_count",
    "satisfaction_avg",
    "commission",
    "first_response_avg_s",
)
UNROUTED_CODES = ("no_rule", "closed", "queue_full", "wait_timeout")
CONVERSATION_COLUMNS = (
    "conversations",
    "queued",
    "wait_avg_s",
    "wait_p90_s",
    "unrouted",
    # contract v2: overflow moves into and out of the group, and ``unrouted`` by its code
    "overflowed_in",
    "overflowed_out",
    *(f"unrouted_{code}" for code in UNROUTED_CODES),
)
# Columns holding a number with decimals: shown with two in the table, whatever the row.
DECIMAL_COLUMNS = frozenset(
    {"satisfaction_avg", "commission", "first_response_avg_s", "wait_avg_s", "wait_p90_s"}
)
BY = ("respondent", "group", "day")


def columns(by: str) -> tuple[str, ...]:
    """The columns of a row of ``chatroute stats --by by``, in order."""
    extra = () if by == "respondent" else CONVERSATION_COLUMNS
    return ("tenant", by, *CONTACT_COLUMNS, *extra)


# ---------------------------------------------------------------- the stats worker


def fold_tenant(rt: Runtime, tenant: str, limit: int = figures.FOLD_LIMIT) -> int:
    """Fold all of ``tenant``'s changed conversations, ``limit`` per transaction; returns how
    many transactions it took."""
    return figures.fold_all(rt.sessions, tenant, limit)


def stale_tenants(rt: Runtime) -> list[str]:
    return figures.stale_tenants(rt.sessions)


# ---------------------------------------------------------------- queries


def rows(rt: Runtime, by: str = "respondent", window: Window | None = None) -> list[dict[str, Any]]:
    """One row per (tenant, respondent | group | day), sorted; see ``columns(by)``."""
    if by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    window = window or Window()
    contact_part, conversation_part, keys = sums.read(rt.engine, by, window)
    empty = dict.fromkeys(columns(by)[2:], 0) | {
        "commission": 0.0,
        "satisfaction_avg": None,
        "first_response_avg_s": None,
        "wait_avg_s": None,
        "wait_p90_s": None,
    }
    result = []
    for tenant, key in sorted(keys, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        row = {"tenant": tenant, by: key}
        for name in columns(by)[2:]:
            part = contact_part.get((tenant, key), {}) | conversation_part.get((tenant, key), {})
            row[name] = part.get(name, empty[name])
        result.append(row)
    return result


def waits(rt: Runtime, window: Window) -> list[float]:
    """Seconds from start to first assignment of each assigned conversation in ``window``."""
    return sums.waits(rt.engine, window)


def transfers(rt: Runtime, window: Window) -> dict[tuple[str, str], int]:
    """How many contacts each respondent transferred to each other respondent."""
    return sums.transfers(rt.engine, window)


def render_table(rows: list[dict[str, Any]], by: str = "respondent") -> str:
    """An aligned text table of ``rows`` for people."""
    names = columns(by)
    cells = [list(names)] + [[_cell(row[c], c in DECIMAL_COLUMNS) for c in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def _cell(value: Any, decimal: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) or (decimal and isinstance(value, int)):
        return f"{value:.2f}"
    return str(value)
