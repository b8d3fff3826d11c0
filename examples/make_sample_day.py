"""Writes ``examples/sample-day.jsonl``: a day on three sites, a few hundred events.

The events are what frontends would send. Each site's conversations are followed on the pure
domain (``chatroute.domain``, as ``benchmarks/workload.py`` does), so every respondent
message, transfer and snooze comes from the respondent who holds the conversation at that
moment; each respondent answers at their own pace (so their first-response times differ);
a respondent who stepped away answers nothing until they are back.

Three lines are there on purpose:

- two deliberate rejections, to show that an invalid line yields ``event.rejected`` (its body
  kept) and the replay goes on: ``not json at all`` (not JSON), and
  ``{"specversion": "1.0", "id": "broken-1", "tenant": "shop-1"}`` (no ``source``, ``type``,
  ``time`` or ``data``);
- the day's last event sent a second time, as a frontend resending after a lost confirm:
  the copy decides nothing.

Deterministic (seeded), so the file in the repository is what this script writes:
``.venv/bin/python examples/make_sample_day.py``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatroute.domain import lifecycle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import AVAILABLE, State
from chatroute.errors import Rejected
from schemas.events import parse_event, to_command

DAY = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SITES = {
    "shop-1": {"Smartphones": ["anna", "ben", "chloe"], "Laptops": ["dan", "eve"]},
    "shop-2": {"Support": ["farid", "gina", "hugo", "ines"]},
    "bank-7": {"Loans": ["jules", "kim"], "Cards": ["lea", "marc"], "Help": ["nora"]},
}
CONVERSATIONS_PER_SITE = 30
# Two respondents step away (not before, in minutes after midnight; for how long, minutes),
# at the first moment after that they hold a conversation they have not answered yet: ben
# for longer than the sites' reassign_after_s (1 h), so a colleague gets it (cause
# "reassign"); gina for less, so hers waits for her.
BREAKS = {"shop-1": ("ben", 12 * 60, 75), "shop-2": ("gina", 13 * 60, 40)}
# The deliberate rejections (see the module's docstring).
NOT_JSON = "not json at all"
INCOMPLETE = '{"specversion": "1.0", "id": "broken-1", "tenant": "shop-1"}'
PATH = Path(__file__).with_name("sample-day.jsonl")

# A conversation's steps: it yields the time it wants to go on at.
Steps = Generator[datetime, None, Any]


class Site:
    """One tenant: its configuration, its state on the pure domain and its events."""

    def __init__(self, day: Day, tenant: str, groups: dict[str, list[str]]) -> None:
        self.day = day
        self.tenant = tenant
        self.groups = groups
        self.view = InMemoryTenantView(tenant)
        self.random = day.random
        # Each respondent's usual delay before a first answer, in seconds.
        self.pace = {
            person: self.random.randint(30, 300) for people in groups.values() for person in people
        }
        self.delays: dict[tuple[str, int], int] = {}

    def emit(self, at: datetime, type_: str, **data: Any) -> None:
        """Record the event and apply it to the simulated state (timers due first)."""
        event = self.day.event(self.tenant, at, type_, data)
        lifecycle.fire_due(self.view, at)
        try:
            lifecycle.handle(self.view, to_command(parse_event(json.dumps(event))), at)
        except Rejected as error:  # a frontend would not send it: a bug of this script
            raise AssertionError(f"{event['id']} would be rejected: {error}") from None

    def configure(self) -> Steps:
        yield DAY
        self.emit(
            DAY,
            "tenant.updated",
            reassign_after_s=3600,
            commission={"mode": "percent", "rate": 0.05},
        )
        for priority, group in enumerate(self.groups):
            prefix = f"https://{self.tenant}.example/{group.lower()}"
            self.emit(
                DAY,
                "rule.updated",
                rule=f"r-{group.lower()}",
                group=group,
                priority=priority,
                conditions=[{"attribute": "url", "op": "prefix", "value": prefix}],
            )
        for group, people in self.groups.items():
            for person in people:
                self.emit(
                    DAY,
                    "respondent.updated",
                    respondent=person,
                    groups=[group],
                    slots=self.random.choice([1, 1, 2]),
                    name=person.title(),
                )
        yield DAY + timedelta(minutes=5)
        for person in self.pace:
            self.emit(
                DAY + timedelta(minutes=5),
                "respondent.status",
                respondent=person,
                status="available",
            )

    # ------------------------------------------------------------ what the frontend sees

    def holder(self, cid: str, at: datetime) -> str | None:
        """The respondent who holds ``cid`` at ``at`` and is at their desk, if any."""
        lifecycle.fire_due(self.view, at)  # a reassignment or a wake due by then
        conversation = self.view.conversation(cid)
        if conversation is None or conversation.state != State.ASSIGNED:
            return None
        respondent = self.view.respondent(conversation.respondent or "")
        if respondent is None or respondent.status != AVAILABLE:
            return None
        return respondent.respondent_id

    def state(self, cid: str, at: datetime) -> str:
        lifecycle.fire_due(self.view, at)
        conversation = self.view.conversation(cid)
        return conversation.state if conversation else State.CLOSED

    def first_answer_due(self, cid: str, who: str) -> datetime | None:
        """When ``who`` answers in their contact on ``cid``; None once they have answered."""
        contact = self.view.contacts(cid)[-1]
        if contact.answered:
            return None
        key = (cid, contact.number)
        if key not in self.delays:
            self.delays[key] = round(self.pace[who] * self.random.uniform(0.5, 1.5))
        return contact.started_at + timedelta(seconds=self.delays[key])

    def holds_unanswered(self, person: str, at: datetime) -> bool:
        lifecycle.fire_due(self.view, at)
        held = self.view.held_by(person, State.ASSIGNED)
        return any(not self.view.contacts(c.conversation_id)[-1].answered for c in held)

    def colleagues(self, who: str) -> list[str]:
        group = next(g for g, people in self.groups.items() if who in people)
        return [p for p in self.groups[group] if p != who]

    # ------------------------------------------------------------ a conversation's steps

    def held(
        self, cid: str, at: datetime
    ) -> Generator[datetime, None, tuple[datetime, str | None]]:
        """Wait (a minute at a time) until someone at their desk holds ``cid``; (time, who),
        who None when it never comes (unrouted, or still waiting after two hours)."""
        for _ in range(120):
            if (who := self.holder(cid, at)) is not None:
                return at, who
            if self.state(cid, at) in (State.UNROUTED, State.CLOSED):
                return at, None
            at += timedelta(minutes=1)
            yield at
        return at, None

    def answer(
        self, cid: str, at: datetime
    ) -> Generator[datetime, None, tuple[datetime, str | None]]:
        """The holder's message, at their pace after their contact started."""
        while True:
            at, who = yield from self.held(cid, at)
            if who is None:
                return at, None
            due = self.first_answer_due(cid, who)
            if due is None or due <= at:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )
                return at, who
            at = due
            yield at  # and look again: the conversation may have moved meanwhile

    def transfer(self, cid: str, at: datetime) -> Steps:
        at, who = yield from self.held(cid, at)
        if who is None:
            return at
        others = [g for g in self.groups if who not in self.groups[g]]
        if others and self.random.random() < 0.4:
            self.emit(
                at,
                "conversation.transferred",
                conversation=cid,
                respondent=who,
                to_group=self.random.choice(others),
                comment="not our products",
            )
        elif colleagues := self.colleagues(who):
            self.emit(
                at,
                "conversation.transferred",
                conversation=cid,
                respondent=who,
                to_respondent=self.random.choice(colleagues),
                comment="knows this model better",
            )
        return at

    def snooze(self, cid: str, at: datetime) -> Steps:
        at, who = yield from self.held(cid, at)
        if who is None:
            return at
        r = self.random
        until = at + timedelta(minutes=r.choice([15, 30, 60]))
        timed = r.random() < 0.6
        data = {"until": until.strftime("%Y-%m-%dT%H:%M:%SZ")} if timed else {}
        self.emit(
            at,
            "conversation.snoozed",
            conversation=cid,
            respondent=who,
            keep=r.random() < 0.75,
            **data,
        )
        if not timed or r.random() < 0.5:  # the visitor replies (before the timer, if any)
            at += timedelta(minutes=r.randint(5, 14))
            yield at
            self.emit(at, "message.posted", conversation=cid, author="visitor")
        else:
            at = until
            yield at
        return at

    def conversation(self, number: int) -> Steps:
        r = self.random
        at = DAY + timedelta(minutes=10 + r.randrange(8 * 60), seconds=r.randrange(60))
        yield at
        # One visitor in ten comes from a page no rule covers: unrouted.
        group = "elsewhere" if r.random() < 0.1 else r.choice(list(self.groups))
        cid = f"{self.tenant}-c{number:03d}"
        url = f"https://{self.tenant}.example/{group.lower()}/p{number}"
        self.emit(
            at,
            "conversation.started",
            conversation=cid,
            visitor=f"v{number}",
            attributes={"url": url, "language": r.choice(["fr", "en", "de"])},
        )
        at += timedelta(seconds=r.randint(15, 90))
        yield at
        self.emit(at, "message.posted", conversation=cid, author="visitor")
        if r.random() < 0.1:  # handed on before a word: an unanswered contact
            at += timedelta(seconds=r.randint(20, 90))
            yield at
            at = yield from self.transfer(cid, at)
        at, who = yield from self.answer(cid, at)
        if who is not None and r.random() < 0.12:
            at += timedelta(minutes=r.randint(2, 8))
            yield at
            at = yield from self.transfer(cid, at)
            at, who = yield from self.answer(cid, at)
        if who is not None and r.random() < 0.15:
            at += timedelta(minutes=r.randint(2, 8))
            yield at
            at = yield from self.snooze(cid, at)
            at += timedelta(seconds=30)
            yield at
            at, who = yield from self.answer(cid, at)
        if who is not None and r.random() < 0.15:  # the visitor leaves; the answer waits
            at += timedelta(minutes=r.randint(1, 4))
            yield at
            self.emit(at, "visitor.presence", conversation=cid, online=False)
            at += timedelta(minutes=r.randint(1, 5))
            yield at
            if (who := self.holder(cid, at)) is not None:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )
        if r.random() < 0.12:
            at += timedelta(minutes=r.randint(5, 25))
            yield at
            amount = round(r.uniform(20, 900), 2)
            self.emit(at, "conversation.sale", conversation=cid, amount=amount, currency="EUR")
        at += timedelta(minutes=r.randint(3, 30))
        yield at
        closer = self.holder(cid, at) or "visitor"
        self.emit(at, "conversation.closed", conversation=cid, by=closer)
        if r.random() < 0.2:
            at += timedelta(minutes=r.randint(1, 5))
            yield at
            self.emit(at, "conversation.rated", conversation=cid, score=r.randint(1, 5))

    def steps_away(self, person: str, start_min: int, minutes: int) -> Steps:
        at = DAY.replace(hour=0) + timedelta(minutes=start_min)
        yield at
        while not self.holds_unanswered(person, at):
            at += timedelta(minutes=1)
            yield at
        self.emit(at, "respondent.status", respondent=person, status="unavailable")
        at += timedelta(minutes=minutes)
        yield at
        self.emit(at, "respondent.status", respondent=person, status="available")


class Day:
    """Every site's steps, run in time order; the events in the order they were sent."""

    def __init__(self, seed: int = 17) -> None:
        self.random = random.Random(seed)
        self.events: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.plan: list[tuple[datetime, int, Iterator[datetime]]] = []
        self.order = itertools.count()

    def event(self, tenant: str, at: datetime, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        event = {
            "specversion": "1.0",
            "id": f"{tenant}-{next(self.ids):05d}",
            "source": f"desk/{tenant}",
            "type": type_,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tenant": tenant,
            "data": data,
        }
        self.events.append(event)
        return event

    def add(self, steps: Iterator[datetime]) -> None:
        if (at := next(steps, None)) is not None:
            heapq.heappush(self.plan, (at, next(self.order), steps))

    def build(self) -> list[dict[str, Any]]:
        sites = [Site(self, tenant, groups) for tenant, groups in SITES.items()]
        for site in sites:
            self.add(site.configure())
            if site.tenant in BREAKS:
                self.add(site.steps_away(*BREAKS[site.tenant]))
            for number in range(1, CONVERSATIONS_PER_SITE + 1):
                self.add(site.conversation(number))
        while self.plan:
            _, _, steps = heapq.heappop(self.plan)
            self.add(steps)
        assert [e["time"] for e in self.events] == sorted(e["time"] for e in self.events)
        return self.events


def lines() -> list[str]:
    """The file's lines: the day's events, the last one resent, the two deliberate rejections."""
    found = [json.dumps(event, separators=(",", ":")) for event in Day().build()]
    found.append(found[-1])  # a frontend resending the last event: it decides nothing new
    # The two deliberate rejections: each yields event.rejected, and the replay goes on.
    found.insert(len(found) // 2, INCOMPLETE)
    found.insert(len(found) // 3, NOT_JSON)
    return found


def main() -> None:
    written = lines()
    PATH.write_text("\n".join(written) + "\n")
    print(f"wrote {len(written)} lines to {PATH} (the last event resent, 2 deliberately invalid)")


if __name__ == "__main__":
    main()
