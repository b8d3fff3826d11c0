"""Writes ``examples/sample-day.jsonl``: a day on four sites, several hundred events.

The events are what frontends would send. Each site's conversations are followed on the pure
domain (``chatroute.domain``, as ``benchmarks/workload.py`` does), so every respondent
message, transfer and snooze comes from the respondent who holds the conversation at that
moment; each respondent answers at their own pace (so their first-response times differ);
a respondent who stepped away answers nothing until they are back.

Three sites (shop-1, shop-2, bank-7) use contract v1 only. The fourth, travel-4 (see
``PolicySite``), uses the routing policy of contract v2: groups with Paris business hours (a
split shift; a closed date) and queue caps (0 on one, 3 on another), rules whose targets
overflow after a wait (a chain of three), priorities on starts and
``conversation.prioritized``, returning visitors routed back to whom they spoke to
(``sticky_within_s``), an answer deadline that pauses a respondent who never answers
(``answer_within_s``, ``pause_on_no_answer``) and conversations closed for idleness
(``close_after_idle_s``). It has its own random generator and event ids, so the three v1
sites send exactly what they sent before it came; the events of all four are merged in time
order.

Three lines are there on purpose:

- two deliberate rejections, to show that an invalid line yields ``event.rejected`` (its body
  kept) and the replay goes on: ``not json at all`` (not JSON), and
  ``{"specversion": "1.0", "id": "broken-1", "tenant": "shop-1"}`` (no ``source``, ``type``,
  ``time`` or ``data``);
- the v1 sites' last event sent a second time, right after it, as a frontend resending after
  a lost confirm: the copy decides nothing.

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
from chatroute.domain.hours import DAYS
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

# The fourth site, on contract v2's routing policy (see the module's docstring).
POLICY_TENANT = "travel-4"
POLICY_SEED = 30
POLICY_GROUPS = {
    "Bookings": ["paul", "rosa", "sami"],
    "Backup": ["vic", "wen"],
    "Callback": ["xavi"],
    "Events": ["yann"],
}
POLICY_SLOTS = {"paul": 2, "rosa": 2}
SILENT = "sami"  # never answers: the deadline moves his conversations on and pauses him
# When SILENT says he is back (after midnight UTC): before the morning rush, late morning,
# after lunch and mid-afternoon.
SILENT_RETURNS = [timedelta(hours=h, minutes=m) for h, m in ((9, 41), (11, 5), (13, 20), (15, 30))]
STICKY_WITHIN_S = 4 * 3600
ANSWER_WITHIN_S = 180
CLOSE_AFTER_IDLE_S = 1800
# Paris keeps UTC+1 in November: the desks open 08:00-11:30 and 13:00-17:00 UTC.
SPLIT_SHIFT = {
    "timezone": "Europe/Paris",
    "weekly": {day: [["09:00", "12:30"], ["14:00", "18:00"]] for day in DAYS},
}
POLICY_GROUP_SETTINGS: dict[str, dict[str, Any]] = {
    "Bookings": {"hours": SPLIT_SHIFT, "max_queue": 3},
    "Backup": {"max_queue": 0},  # real-time only: a free respondent, else the next target
    "Callback": {"hours": None},
    "Events": {  # its desk is closed on the day of the fair
        "hours": {
            "timezone": "Europe/Paris",
            "weekly": {day: [["10:00", "19:00"]] for day in DAYS},
            "closed": ["2026-11-22", "2026-12-25"],
        },
    },
}
# rule: (priority, page, targets); the pages no rule covers are unrouted (code no_rule).
POLICY_RULES: dict[str, tuple[int, str, list[dict[str, Any]]]] = {
    "r-bookings": (
        0,
        "bookings",
        [
            {"group": "Bookings", "wait_s": 300},
            {"group": "Backup"},
            {"group": "Callback", "wait_s": 900},
        ],
    ),
    "r-events": (1, "events", [{"group": "Events"}, {"group": "Bookings", "wait_s": 600}]),
}
POLICY_CONVERSATIONS = 40
# Rushes, each (start, seconds between starts, pages): in the morning the Bookings queue fills
# up and every target of r-bookings is busy; in the afternoon Backup is free for the overflow.
RUSHES = [
    (DAY + timedelta(hours=1, minutes=38), 40, ["bookings", "bookings", "events"] * 6),
    (DAY + timedelta(hours=6, minutes=40), 30, ["bookings"] * 6),
]

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
        self.emit(DAY, "tenant.updated", **self.settings())
        self.declare_routing()
        for group, people in self.groups.items():
            for person in people:
                self.emit(
                    DAY,
                    "respondent.updated",
                    respondent=person,
                    groups=[group],
                    slots=self.slots(person),
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

    def settings(self) -> dict[str, Any]:
        return {"reassign_after_s": 3600, "commission": {"mode": "percent", "rate": 0.05}}

    def declare_routing(self) -> None:
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

    def slots(self, person: str) -> int:
        return self.random.choice([1, 1, 2])

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

    def plan(self) -> list[Steps]:
        """Every step of the site's day, in the order they are planned."""
        planned = [self.configure()]
        if self.tenant in BREAKS:
            planned.append(self.steps_away(*BREAKS[self.tenant]))
        planned += [self.conversation(n) for n in range(1, CONVERSATIONS_PER_SITE + 1)]
        return planned


class PolicySite(Site):
    """The fourth site, on the routing policy of contract v2 (the three others use none of it).

    A travel agency whose desks keep Paris hours: rules with overflow chains, queue caps,
    priorities, returning visitors routed to whom they spoke to, an answer deadline that
    pauses a respondent who never answers, and conversations closed after being idle.
    """

    def __init__(self, day: Day, tenant: str, groups: dict[str, list[str]]) -> None:
        super().__init__(day, tenant, groups)
        # Quicker than the deadline (ANSWER_WITHIN_S), but for SILENT, who never answers.
        self.pace = {person: self.random.randint(20, 70) for person in self.pace}
        self.finished: list[str] = []  # visitors whose conversation closed, in that order

    def plan(self) -> list[Steps]:
        planned = [self.configure(), self.silent_desk()]
        planned += [self.conversation(n) for n in range(1, POLICY_CONVERSATIONS + 1)]
        number = POLICY_CONVERSATIONS
        for start, every, pages in RUSHES:
            for n, page in enumerate(pages):
                number += 1
                at = start + timedelta(seconds=every * n)
                planned.append(self.conversation(number, at, page))
        return planned

    def settings(self) -> dict[str, Any]:
        return {
            "reassign_after_s": 3600,
            "commission": {"mode": "per_contact", "amount": 2.0},
            "sticky_within_s": STICKY_WITHIN_S,
            "answer_within_s": ANSWER_WITHIN_S,
            "pause_on_no_answer": True,
            "close_after_idle_s": CLOSE_AFTER_IDLE_S,
        }

    def declare_routing(self) -> None:
        for group, settings in POLICY_GROUP_SETTINGS.items():
            self.emit(DAY, "group.updated", group=group, **settings)
        for rule, (priority, page, targets) in POLICY_RULES.items():
            prefix = f"https://{self.tenant}.example/{page}"
            self.emit(
                DAY,
                "rule.updated",
                rule=rule,
                targets=targets,
                priority=priority,
                conditions=[{"attribute": "url", "op": "prefix", "value": prefix}],
            )

    def slots(self, person: str) -> int:
        return POLICY_SLOTS.get(person, 1)

    def silent_desk(self) -> Steps:
        """SILENT, paused for missing the deadline, says they are back now and then."""
        for moment in SILENT_RETURNS:
            at = DAY.replace(hour=0) + moment
            yield at
            lifecycle.fire_due(self.view, at)  # a deadline missed by now pauses him first
            respondent = self.view.respondent(SILENT)
            if respondent is not None and respondent.status != AVAILABLE:
                self.emit(at, "respondent.status", respondent=SILENT, status="available")

    def answer(
        self, cid: str, at: datetime
    ) -> Generator[datetime, None, tuple[datetime, str | None]]:
        """As on the other sites, but SILENT never answers: the deadline moves it on."""
        while True:
            at, who = yield from self.held(cid, at)
            if who is None:
                return at, None
            if who == SILENT:
                at += timedelta(minutes=1)
                yield at
                continue
            due = self.first_answer_due(cid, who)
            if due is None or due <= at:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )
                return at, who
            at = due
            yield at

    def visitor(self, number: int, page: str) -> str:
        """A returning visitor now and then: one whose booking conversation ended earlier."""
        if page == "bookings" and self.finished and self.random.random() < 0.25:
            return self.random.choice(self.finished[-6:])
        return f"w{number}"

    def conversation(  # type: ignore[override]
        self, number: int, at: datetime | None = None, page: str | None = None
    ) -> Steps:
        r = self.random
        if at is None:
            at = DAY + timedelta(minutes=10 + r.randrange(10 * 60), seconds=r.randrange(60))
        yield at
        if page is None:
            page = r.choices(["bookings", "events", "elsewhere"], [75, 18, 7])[0]
        cid = f"{self.tenant}-c{number:03d}"
        visitor = self.visitor(number, page)
        started: dict[str, Any] = {
            "conversation": cid,
            "visitor": visitor,
            "attributes": {
                "url": f"https://{self.tenant}.example/{page}/p{number}",
                "language": r.choice(["fr", "en", "de"]),
            },
        }
        if r.random() < 0.2:  # a member of the loyalty programme goes first in queues
            started["priority"] = 10
        self.emit(at, "conversation.started", **started)
        at += timedelta(seconds=r.randint(15, 90))
        yield at
        if self.state(cid, at) == State.CLOSED:
            return
        self.emit(at, "message.posted", conversation=cid, author="visitor")
        if self.state(cid, at) == State.QUEUED and r.random() < 0.5:
            # still waiting a few minutes later: the frontend moves it up its queue
            at += timedelta(minutes=r.randint(2, 4))
            yield at
            if self.state(cid, at) == State.QUEUED:
                self.emit(at, "conversation.prioritized", conversation=cid, priority=50)
        at, who = yield from self.answer(cid, at)
        if r.random() < 0.15:  # the visitor goes quiet and nobody closes: idle, it closes
            return
        if who is not None and r.random() < 0.2:
            at += timedelta(minutes=r.randint(5, 15))
            yield at
            amount = round(r.uniform(200, 3000), 2)
            self.emit(at, "conversation.sale", conversation=cid, amount=amount, currency="EUR")
        at += timedelta(minutes=r.randint(2, 12))
        yield at
        if self.state(cid, at) != State.CLOSED:
            closer = self.holder(cid, at) or "visitor"
            self.emit(at, "conversation.closed", conversation=cid, by=closer)
        if page == "bookings":
            self.finished.append(visitor)
        if r.random() < 0.25:
            at += timedelta(minutes=r.randint(1, 5))
            yield at
            self.emit(at, "conversation.rated", conversation=cid, score=r.randint(1, 5))


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

    def build(self, policy: bool = False) -> list[dict[str, Any]]:
        """The three v1 sites' day, or (``policy``) the v2 site's."""
        if policy:
            sites: list[Site] = [PolicySite(self, POLICY_TENANT, POLICY_GROUPS)]
        else:
            sites = [Site(self, tenant, groups) for tenant, groups in SITES.items()]
        for site in sites:
            for steps in site.plan():
                self.add(steps)
        while self.plan:
            _, _, steps = heapq.heappop(self.plan)
            self.add(steps)
        assert [e["time"] for e in self.events] == sorted(e["time"] for e in self.events)
        return self.events


def lines() -> list[str]:
    """The file's lines: the four sites' events in time order, the three v1 sites' last event
    resent right after it, the two deliberate rejections."""
    v1 = Day().build()
    v2 = Day(POLICY_SEED).build(policy=True)
    found = [
        json.dumps(event, separators=(",", ":"))
        for event in heapq.merge(v1, v2, key=lambda event: event["time"])
    ]
    last = json.dumps(v1[-1], separators=(",", ":"))
    # A frontend resending an event: it decides nothing new.
    found.insert(found.index(last) + 1, last)
    # The two deliberate rejections: each yields event.rejected, and the replay goes on.
    found.insert(len(found) // 2, INCOMPLETE)
    found.insert(len(found) // 3, NOT_JSON)
    return found


def main() -> None:
    written = lines()
    PATH.write_text("\n".join(written) + "\n")
    print(f"wrote {len(written)} lines to {PATH} (an event resent, 2 deliberately invalid)")


if __name__ == "__main__":
    main()
