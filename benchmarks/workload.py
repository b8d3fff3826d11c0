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
from dataclasses import dataclass
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
NEVER = datetime.max.replace(tzinfo=UTC)

Step = Callable[[datetime], None]
Span = tuple[float, float]  # a delay drawn uniformly between the two, in seconds


@dataclass(frozen=True)
class Profile:
    """How a site's conversations unfold: how often each step happens and how long it takes.

    The default is a real site's day; ``CHAOS`` squeezes the same lifecycles into seconds, with
    more transfers, snoozes and respondents coming and going, so that every timer fires within
    a short run.
    """

    to_visitor: Span = (5, 40)
    to_answer: Span = (20, 120)
    transfers: float = 0.12
    to_transfer: Span = (30, 300)
    snoozes: float = 0.08
    to_snooze: Span = (30, 300)
    snooze_s: tuple[float, ...] = (900, 3600, 10800)
    to_reply_after_snooze: Span = (60, 7200)
    sales: float = 0.1
    to_sale: Span = (60, 600)
    to_close: Span = (60, 900)
    ratings: float = 0.3
    to_rating: Span = (5, 120)
    unrouted: float = 0.03
    reassign_after_s: int | None = None  # the tenant's setting; None: the default (24 h)
    clock_skew_s: int | None = None  # the tenant's setting; None: the default (5 s)
    # Mean time a respondent stays available before stepping away, and how long they are away;
    # None: nobody steps away.
    available_s: float | None = None
    away_s: Span = (0, 0)


DAY_PROFILE = Profile()
CHAOS = Profile(
    to_visitor=(0.2, 1.5),
    to_answer=(0.5, 3),
    transfers=0.3,
    to_transfer=(1, 6),
    snoozes=0.25,
    to_snooze=(1, 6),
    snooze_s=(2, 4, 8),
    to_reply_after_snooze=(1, 12),
    sales=0.2,
    to_sale=(1, 8),
    to_close=(2, 12),
    ratings=0.4,
    to_rating=(0.2, 3),
    unrouted=0.03,
    reassign_after_s=5,
    # The chaos run's frontends date their events ahead of the wall clock on purpose (see
    # tests/chaos/traffic.py): the tenants trust their clocks, so timers follow event times.
    clock_skew_s=3600,
    available_s=25,
    away_s=(1, 9),
)


class Site:
    """One tenant: groups of respondents, rules by page, and its conversations' lifecycles."""

    def __init__(
        self,
        tenant: str,
        groups: int,
        respondents: int,
        seed: int,
        slots: int = 3,
        profile: Profile = DAY_PROFILE,
    ) -> None:
        self.tenant = tenant
        self.profile = profile
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
        terms: dict[str, Any] = {"commission": {"mode": "percent", "rate": 0.05}}
        if self.profile.reassign_after_s is not None:
            terms["reassign_after_s"] = self.profile.reassign_after_s
        if self.profile.clock_skew_s is not None:
            terms["clock_skew_s"] = self.profile.clock_skew_s
        self.emit(at, "tenant.updated", **terms)
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

    def holder(self, cid: str, at: datetime) -> str | None:
        """Who holds ``cid`` at ``at``: timers due by then (a reassignment) fire first."""
        lifecycle.fire_due(self.view, at)
        conversation = self.view.conversation(cid)
        if conversation is None or conversation.state != State.ASSIGNED:
            return None
        return conversation.respondent

    def presence(self, respondent: str) -> Iterator[tuple[float, Step]]:
        """A respondent stepping away and coming back, for as long as the day lasts."""
        r, p = self.random, self.profile
        assert p.available_s is not None

        def status(value: str) -> Step:
            return lambda at: self.emit(
                at, "respondent.status", respondent=respondent, status=value
            )

        while True:
            yield r.expovariate(1 / p.available_s), status("unavailable")
            yield r.uniform(*p.away_s), status("available")

    def conversation(self, n: int) -> Iterator[tuple[float, Step]]:
        """The steps of conversation ``n``: (seconds after the previous step, action)."""
        r, p = self.random, self.profile
        cid = f"c{n:07d}"
        group = "nowhere" if r.random() < p.unrouted else r.choice(self.groups)
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
            if (who := self.holder(cid, at)) is not None:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )

        def transfer(at: datetime) -> None:
            if (who := self.holder(cid, at)) is None:
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
            if (who := self.holder(cid, at)) is None:
                return
            until = at + timedelta(seconds=r.choice(p.snooze_s))
            data: dict[str, Any] = (
                {"until": until.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} if r.random() < 0.7 else {}
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
        yield r.uniform(*p.to_visitor), visitor
        yield r.uniform(*p.to_answer), answer
        if r.random() < p.transfers:
            yield r.uniform(*p.to_transfer), transfer
            yield r.uniform(*p.to_answer), answer
        if r.random() < p.snoozes:
            yield r.uniform(*p.to_snooze), snooze
            yield r.uniform(*p.to_reply_after_snooze), visitor
            yield r.uniform(*p.to_answer), answer
        if r.random() < p.sales:
            yield r.uniform(*p.to_sale), sale
        yield r.uniform(*p.to_close), close
        if r.random() < p.ratings:
            yield r.uniform(*p.to_rating), rate


def day(
    conversations: int,
    tenants: int = 1,
    respondents: int = 500,
    seed: int = 1,
    span: timedelta = DAY,
    profile: Profile = DAY_PROFILE,
    start: datetime = START,
) -> list[dict[str, Any]]:
    """``conversations`` starting over ``span`` (a day) and ``tenants``, in time order.

    Respondents step away and come back (``profile.available_s``) until the last start."""
    sites = [
        Site(f"site-{t}", groups=5, respondents=respondents, seed=seed + t, profile=profile)
        for t in range(tenants)
    ]
    for site in sites:
        site.configure(start)
    arrivals = random.Random(seed)
    opens = start + min(timedelta(minutes=1), span / 20)
    plan = _Plan()
    for n in range(conversations):
        site = sites[n % tenants]
        plan.add(opens + span * arrivals.random(), site.conversation(n))
    if profile.available_s is not None:
        for site in sites:
            for person in sorted(p for people in site.people.values() for p in people):
                plan.add(opens, site.presence(person), ends=opens + span)
    plan.run()
    events = [e for site in sites for e in site.events]
    return sorted(events, key=lambda e: e["time"])


class _Plan:
    """Chains of steps, run in time order; a chain with an end stops there."""

    def __init__(self) -> None:
        self.pending: list[tuple[datetime, int, Step, Iterator[tuple[float, Step]], datetime]]
        self.pending = []
        self.order = itertools.count()

    def add(
        self, at: datetime, steps: Iterator[tuple[float, Step]], ends: datetime = NEVER
    ) -> None:
        """Schedule the chain's next step, ``at`` being the time of the step before it."""
        following = next(steps, None)
        if following is None:
            return
        delay, step = following
        when = at + timedelta(seconds=delay)
        if when <= ends:
            heapq.heappush(self.pending, (when, next(self.order), step, steps, ends))

    def run(self) -> None:
        while self.pending:
            at, _, step, steps, ends = heapq.heappop(self.pending)
            step(at)
            self.add(at, steps, ends)


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
