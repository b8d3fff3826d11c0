"""Writes ``examples/sample-day.jsonl``: a realistic day on three sites, a few hundred events.

Deterministic (seeded), so the file in the repository is what this script writes:
``python examples/make_sample_day.py``.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SITES = {
    "shop-1": {"Smartphones": ["anna", "ben", "chloe"], "Laptops": ["dan", "eve"]},
    "shop-2": {"Support": ["farid", "gina", "hugo", "ines"]},
    "bank-7": {"Loans": ["jules", "kim"], "Cards": ["lea", "marc"], "Help": ["nora"]},
}


class Day:
    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.lines: list[dict[str, object]] = []
        self.count = 0

    def emit(self, tenant: str, at: datetime, type_: str, **data: object) -> None:
        self.count += 1
        self.lines.append(
            {
                "specversion": "1.0",
                "id": f"{tenant}-{self.count:05d}",
                "source": f"desk/{tenant}",
                "type": type_,
                "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tenant": tenant,
                "data": data,
            }
        )

    def configure(self, tenant: str, groups: dict[str, list[str]]) -> None:
        at = DAY
        self.emit(
            tenant,
            at,
            "tenant.updated",
            reassign_after_s=3600,
            commission={"mode": "percent", "rate": 0.05},
        )
        for priority, group in enumerate(groups):
            prefix = f"https://{tenant}.example/{group.lower()}"
            self.emit(
                tenant,
                at,
                "rule.updated",
                rule=f"r-{group.lower()}",
                group=group,
                priority=priority,
                conditions=[{"attribute": "url", "op": "prefix", "value": prefix}],
            )
        for group, people in groups.items():
            for person in people:
                self.emit(
                    tenant,
                    at,
                    "respondent.updated",
                    respondent=person,
                    groups=[group],
                    slots=self.random.choice([1, 2, 3]),
                    name=person.title(),
                )
                self.emit(
                    tenant,
                    at + timedelta(minutes=5),
                    "respondent.status",
                    respondent=person,
                    status="available",
                )

    def conversation(self, tenant: str, number: int, groups: dict[str, list[str]]) -> None:
        r = self.random
        at = DAY + timedelta(minutes=10 + r.randrange(8 * 60))
        # One visitor in ten comes from a page no rule covers: unrouted.
        group = "elsewhere" if r.random() < 0.1 else r.choice(list(groups))
        cid = f"{tenant}-c{number:03d}"
        self.emit(
            tenant,
            at,
            "conversation.started",
            conversation=cid,
            visitor=f"v{number}",
            attributes={
                "url": f"https://{tenant}.example/{group.lower()}/p{number}",
                "language": r.choice(["fr", "en", "de"]),
            },
        )
        people = groups.get(group, [])
        holder = r.choice(people) if people else None
        at += timedelta(minutes=1)
        self.emit(tenant, at, "message.posted", conversation=cid, author="visitor")
        if holder and r.random() < 0.7:
            at += timedelta(minutes=2)
            self.emit(
                tenant,
                at,
                "message.posted",
                conversation=cid,
                author="respondent",
                respondent=holder,
            )
        if r.random() < 0.15:
            at += timedelta(minutes=3)
            self.emit(tenant, at, "visitor.presence", conversation=cid, online=False)
        if r.random() < 0.1:
            at += timedelta(minutes=20)
            self.emit(
                tenant,
                at,
                "conversation.sale",
                conversation=cid,
                amount=round(r.uniform(20, 900), 2),
                currency="EUR",
            )
        if r.random() < 0.15:
            at += timedelta(minutes=5)
            self.emit(tenant, at, "conversation.rated", conversation=cid, score=r.randint(1, 5))
        at += timedelta(minutes=r.randrange(5, 40))
        self.emit(tenant, at, "conversation.closed", conversation=cid, by="respondent")

    def build(self) -> list[dict[str, object]]:
        for tenant, groups in SITES.items():
            self.configure(tenant, groups)
        for tenant, groups in SITES.items():
            for number in range(1, 31):
                self.conversation(tenant, number, groups)
        ordered = sorted(self.lines, key=lambda e: (e["time"], e["id"]))
        ordered.append(dict(ordered[-1]))  # a frontend resending: decides nothing new
        return ordered


def main() -> None:
    lines = [json.dumps(event, separators=(",", ":")) for event in Day().build()]
    lines.insert(len(lines) // 2, '{"specversion": "1.0", "id": "broken-1", "tenant": "shop-1"}')
    lines.insert(len(lines) // 3, "not json at all")
    path = Path(__file__).with_name("sample-day.jsonl")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} events to {path}")


if __name__ == "__main__":
    main()
