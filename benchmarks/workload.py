"""A realistic, valid event stream for benchmarks: a site's day of conversations.

Frontends only send what their users can do: a respondent transfers or snoozes a conversation
they hold. The simulator knows who holds what by running the pure domain (the in-memory view)
on every event it emits, and schedules each conversation's next steps on a clock, so the
stream is in time order like the real one.

    python -m benchmarks.workload --conversations 100000 --out day.jsonl
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatroute.domain import lifecycle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import State
from chatroute.errors import Rejected
from schemas.events import parse_event, to_command

START = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)

Step = Callable[[datetime], None]


class Site:
    """One tenant: groups of respondents, rules by page, and its conversations' lifecycles."""

    def __init__(
        self, tenant: str, groups: int, respondents: int, seed: int, slots: int = 3
    ) -> None:
        self.tenant = tenant
        self.random = random.Random(seed)
        self.view = InMemoryTenantView(tenant)
        self.groups = [f"g{n}" for n in range(groups)]
        self.people = {
            g: [f"{g}-r{n:04d}" for n in range(respondents // groups)] for g in self.groups
        }
        self.slots = slots
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def emit(self, at: datetime, type_: str, **data: Any) -> bool:
        """Record the event and apply it to the simulated state; False when it was refused."""
        event = {
            "specversion": "1.0",
            "id": f"{self.tenant}-{next(self.ids):07d}",
            "source": f"desk/{self.tenant}",
            "type": type_,
            "time": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tenant": self.tenant,
            "data": data,
        }
        self.events.append(event)
        lifecycle.fire_due(self.view, at)
        try:
            lifecycle.handle(self.view, to_command(parse_event(json.dumps(event))), at)
        except Rejected:
            return False
        return True

    def configure(self, at: datetime) -> None:
        self.emit(at, "tenant.updated", commission={"mode": "percent", "rate": 0.05})
        for priority, group in enumerate(self.groups):
            condition = {"attribute": "url", "op": "prefix", "value": f"/{group}/"}
            self.emit(
                at,
                "rule.updated",
                rule=f"r-{group}",
                group=group,
                priority=priority,
                conditions=[condition],
            )
        for group, people in self.people.items():
            for person in people:
                self.emit(
                    at, "respondent.updated", respondent=person, groups=[group], slots=self.slots
                )
                self.emit(at, "respondent.status", respondent=person, status="available")

    def holder(self, cid: str) -> str | None:
        conversation = self.view.conversation(cid)
        if conversation is None or conversation.state != State.ASSIGNED:
            return None
        return conversation.respondent

    def conversation(self, n: int) -> Iterator[tuple[float, Step]]:
        """The steps of conversation ``n``: (seconds after the previous step, action)."""
        r = self.random
        cid = f"c{n:07d}"
        group = "nowhere" if r.random() < 0.03 else r.choice(self.groups)
        url = f"/{group}/page-{r.randrange(500)}"

        def start(at: datetime) -> None:
            self.emit(
                at,
                "conversation.started",
                conversation=cid,
                visitor=f"v{n}",
                attributes={"url": url},
            )

        def visitor(at: datetime) -> None:
            self.emit(at, "message.posted", conversation=cid, author="visitor")

        def answer(at: datetime) -> None:
            if (who := self.holder(cid)) is not None:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )

        def transfer(at: datetime) -> None:
            if (who := self.holder(cid)) is None:
                return
            if r.random() < 0.5:
                target = r.choice(self.groups)
                self.emit(
                    at,
                    "conversation.transferred",
                    conversation=cid,
                    respondent=who,
                    to_group=target,
                    comment="other team",
                )
                return
            colleagues = [p for p in self.people[who.split("-")[0]] if p != who]
            if colleagues:
                self.emit(
                    at,
                    "conversation.transferred",
                    conversation=cid,
                    respondent=who,
                    to_respondent=r.choice(colleagues),
                    comment="expert",
                )

        def snooze(at: datetime) -> None:
            if (who := self.holder(cid)) is None:
                return
            until = at + timedelta(minutes=r.choice([15, 60, 180]))
            data: dict[str, Any] = (
                {"until": until.strftime("%Y-%m-%dT%H:%M:%SZ")} if r.random() < 0.7 else {}
            )
            self.emit(
                at,
                "conversation.snoozed",
                conversation=cid,
                respondent=who,
                keep=r.random() < 0.8,
                **data,
            )

        def sale(at: datetime) -> None:
            self.emit(
                at, "conversation.sale", conversation=cid, amount=round(r.uniform(10, 500), 2)
            )

        def rate(at: datetime) -> None:
            self.emit(at, "conversation.rated", conversation=cid, score=r.randint(1, 5))

        def close(at: datetime) -> None:
            self.emit(at, "conversation.closed", conversation=cid, by="respondent")

        yield 0, start
        yield r.uniform(5, 40), visitor
        yield r.uniform(20, 120), answer
        if r.random() < 0.12:
            yield r.uniform(30, 300), transfer
            yield r.uniform(20, 120), answer
        if r.random() < 0.08:
            yield r.uniform(30, 300), snooze
            yield r.uniform(60, 7200), visitor
            yield r.uniform(20, 120), answer
        if r.random() < 0.1:
            yield r.uniform(60, 600), sale
        yield r.uniform(60, 900), close
        if r.random() < 0.3:
            yield r.uniform(5, 120), rate


def day(
    conversations: int,
    tenants: int = 1,
    respondents: int = 500,
    seed: int = 1,
    span: timedelta = DAY,
) -> list[dict[str, Any]]:
    """``conversations`` starting over ``span`` (a day) and ``tenants``, in time order."""
    sites = [
        Site(f"site-{t}", groups=5, respondents=respondents, seed=seed + t) for t in range(tenants)
    ]
    for site in sites:
        site.configure(START)
    arrivals = random.Random(seed)
    pending: list[tuple[datetime, int, Iterator[tuple[float, Step]]]] = []
    order = itertools.count()
    for n in range(conversations):
        site = sites[n % tenants]
        at = START + timedelta(minutes=1) + span * arrivals.random()
        heapq.heappush(pending, (at, next(order), site.conversation(n)))
    while pending:
        at, _, steps = heapq.heappop(pending)
        _, step = next(steps)
        step(at)
        following = next(steps, None)
        if following is not None:
            delay, action = following
            heapq.heappush(
                pending, (at + timedelta(seconds=delay), next(order), _chain(action, steps))
            )
    events = [e for site in sites for e in site.events]
    return sorted(events, key=lambda e: e["time"])


def _chain(first: Step, rest: Iterator[tuple[float, Step]]) -> Iterator[tuple[float, Step]]:
    yield 0, first
    yield from rest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--respondents", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    events = day(args.conversations, args.tenants, args.respondents)
    with args.out.open("w") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    print(f"wrote {len(events)} events to {args.out}")


if __name__ == "__main__":
    main()
