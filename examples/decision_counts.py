"""Counts decisions (JSON lines, as ``chatroute replay`` writes them) by type, and within a
type by cause, code or reason, with the sticky assignments among those of cause ``new``.

``./dev demo`` prints it for the sample day's decisions:
``.venv/bin/python examples/decision_counts.py demo-decisions.jsonl``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

# The contract's order of causes and codes; others follow in alphabetical order.
ORDER = [
    "new",
    "queue",
    "transfer",
    "wake",
    "reassign",
    "overflow",
    "no_answer",
    "timer",
    "visitor_reply",
    "no_rule",
    "closed",
    "queue_full",
    "wait_timeout",
    "idle",
]


def detail(decision: dict[str, Any]) -> str | None:
    """The decision's cause, code or reason (an event.rejected's reason is free text: none)."""
    if decision["type"] == "event.rejected":
        return None
    data = decision["data"]
    return next((str(data[key]) for key in ("cause", "code", "reason") if key in data), None)


def counts(lines: Iterable[str]) -> list[str]:
    types: Counter[str] = Counter()
    details: dict[str, Counter[str]] = {}
    sticky: Counter[str] = Counter()
    for line in lines:
        decision = json.loads(line)
        kind = decision["type"]
        types[kind] += 1
        if (why := detail(decision)) is not None:
            details.setdefault(kind, Counter())[why] += 1
            if decision["data"].get("sticky"):
                sticky[f"{kind}/{why}"] += 1
    out = []
    for kind, total in sorted(types.items()):
        found = details.get(kind, Counter())
        ordered = sorted(found, key=lambda w: (ORDER.index(w) if w in ORDER else len(ORDER), w))
        parts = []
        for why in ordered:
            part = f"{why} {found[why]}"
            if sticky[f"{kind}/{why}"]:
                part += f" ({sticky[f'{kind}/{why}']} sticky)"
            parts.append(part)
        out.append(f"{total:6d}  {kind:<24}  {', '.join(parts)}".rstrip())
    return out


def main() -> None:
    with open(sys.argv[1]) as decisions:
        print("\n".join(counts(decisions)))


if __name__ == "__main__":
    main()
