"""A realistic, valid event stream for benchmarks: a site's day of conversations.

Frontends only send what their users can do: a respondent transfers or snoozes a conversation
they hold. The simulator knows who holds what by running the pure domain (the in-memory view)
on every event it emits, and schedules each conversation's next steps on a clock, so the
stream is in time order like the real one.

A site may have a routing policy (contract v2, ``Policy``): business hours, rules with
overflow targets, queue caps, priorities, sticky routing, answer deadlines and idle closes.
Its respondents then also react to the decisions they see: they answer a conversation given
to them (sometimes too late) and come back after a pause for a missed answer. The default
profile's sites have none, and their events are exactly those of a v1 site.

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
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from chatroute.domain import lifecycle, routing
from chatroute.domain.hours import DAYS
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import AVAILABLE, Decision, State
from chatroute.errors import Rejected
from schemas.events import parse_event, to_command

START = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NEVER = datetime.max.replace(tzinfo=UTC)

Step = Callable[[datetime], None]
Span = tuple[float, float]  # a delay drawn uniformly between the two, in seconds
Target = tuple[str, int | None]  # (group, wait_s) of a rule's target


@dataclass(frozen=True)
class Policy:
    """A site's routing policy (contract v2); the default, everything off, is a v1 site.

    Groups are the site's ``g0``, ``g1``...; the rule of group ``g`` matches its pages.
    """

    sticky_within_s: int | None = None
    answer_within_s: int | None = None  # its respondents answer within 0.3..1.25x of it
    pause_on_no_answer: bool = False  # a paused respondent comes back 1..5 s later
    close_after_idle_s: int | None = None
    # Business hours of groups, (group, timezone, shape), around a minute that begins while
    # the day's conversations start (``straddle``): ``split`` is open but for that minute (a
    # split shift), ``opens`` opens at it, ``closes`` closes at it.
    hours: tuple[tuple[str, str, str], ...] = ()
    max_queue: tuple[tuple[str, int], ...] = ()  # (group, cap)
    targets: tuple[tuple[str, tuple[Target, ...]], ...] = ()  # (rule's group, its targets)
    priorities: bool = False  # some start with a priority, some are prioritized later
    returning: int = 0  # visitors per group, coming back (0: every conversation a new one)
    slots: int | None = None  # each respondent's, when not the site's (fewer: queues form)

    @property
    def v1(self) -> bool:
        return self == Policy()


@dataclass(frozen=True)
class Profile:
    """How a site's conversations unfold: how often each step happens and how long it takes.

    The default is a real site's day; ``CHAOS`` squeezes the same lifecycles into seconds, with
    more transfers, snoozes and respondents coming and going, so that every timer fires within
    a short run, and gives its sites routing policies (``policies``).
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
    # The sites' routing policies, site n taking the n-th (cycling); none: v1 sites.
    policies: tuple[Policy, ...] = ()

    def policy(self, site: int) -> Policy:
        return self.policies[site % len(self.policies)] if self.policies else Policy()


DAY_PROFILE = Profile()
# The chaos run's five sites: two route as in v1 (one with returning visitors), three use
# the routing policy, each another part of it.
CHAOS_POLICIES = (
    Policy(),
    Policy(  # business hours, overflow chains, queue caps, priorities, sticky routing
        sticky_within_s=20,
        hours=(("g1", "Europe/Paris", "split"), ("g2", "America/New_York", "opens")),
        max_queue=(("g3", 0), ("g4", 3)),
        targets=(
            ("g0", (("g0", 1), ("g1", 2), ("g2", None))),
            ("g1", (("g1", 3),)),  # closed from the boundary on; its last wait ends unrouted
            ("g2", (("g2", 1), ("g3", 2), ("g4", 3))),
            ("g3", (("g3", None), ("g4", None))),
            ("g4", (("g4", 1), ("g0", None))),
        ),
        priorities=True,
        returning=5,
        slots=2,
    ),
    Policy(  # answer deadline without pause, idle close, sticky routing, priorities
        sticky_within_s=30,
        answer_within_s=3,
        close_after_idle_s=10,
        priorities=True,
        returning=4,
    ),
    Policy(  # answer deadline with pause, idle close, hours, overflow, queue caps
        answer_within_s=3,
        pause_on_no_answer=True,
        close_after_idle_s=12,
        hours=(("g0", "Asia/Kolkata", "closes"), ("g4", "Europe/Paris", "split")),
        max_queue=(("g2", 2), ("g3", 0)),
        targets=(
            ("g0", (("g0", 1), ("g3", None))),
            ("g2", (("g2", 1), ("g1", 2), ("g0", None))),
            ("g4", (("g4", 1), ("g1", 1))),
        ),
        returning=3,  # without sticky routing: they come back to whoever is free
        slots=2,
    ),
    Policy(returning=4),  # v1 routing, returning visitors
)
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
    policies=CHAOS_POLICIES,
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
        policy: Policy | None = None,
    ) -> None:
        self.tenant = tenant
        self.profile = profile
        self.policy = policy or Policy()
        self.random = random.Random(seed)
        self.view = InMemoryTenantView(tenant)
        self.groups = [f"g{n}" for n in range(groups)]
        self.people = {
            g: [f"{g}-r{n:04d}" for n in range(respondents // groups)] for g in self.groups
        }
        self.slots = self.policy.slots or slots
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.plan: _Plan | None = None  # where reactions to decisions go (see ``react``)

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
        self.react(lifecycle.fire_due(self.view, at), at)
        try:
            decided = lifecycle.handle(self.view, to_command(parse_event(json.dumps(event))), at)
        except Rejected:
            return False
        self.react(decided, at)
        return True

    def react(self, decisions: list[Decision], at: datetime) -> None:
        """Respondents act on the decisions shown to them at ``at``: they answer what they
        are given (when the site has an answer deadline), and come back after a pause."""
        if self.policy.v1 or self.plan is None:
            return
        r, within = self.random, self.policy.answer_within_s
        for decision in decisions:
            data = decision.data
            if decision.type == "conversation.assigned" and within is not None:
                answer = self.answering(data["conversation"], data["respondent"])
                self.plan.add(at, iter([(r.uniform(0.3, within * 1.25), answer)]))
            elif decision.type == "respondent.paused":
                back = self.coming_back(data["respondent"])
                self.plan.add(at, iter([(r.uniform(1, 5), back)]))

    def answering(self, cid: str, who: str) -> Step:
        """``who`` answers ``cid`` if they still hold it and have not answered yet."""

        def step(at: datetime) -> None:
            if self.holder(cid, at) != who:
                return
            contact = routing.open_contact(self.view, cid)
            if contact is not None and contact.respondent == who and not contact.answered:
                self.emit(
                    at, "message.posted", conversation=cid, author="respondent", respondent=who
                )

        return step

    def coming_back(self, who: str) -> Step:
        """A paused respondent makes themselves available again (unless they already are)."""

        def step(at: datetime) -> None:
            self.react(lifecycle.fire_due(self.view, at), at)
            respondent = self.view.respondent(who)
            if respondent is not None and respondent.status != AVAILABLE:
                self.emit(at, "respondent.status", respondent=who, status=AVAILABLE)

        return step

    def is_closed(self, cid: str, at: datetime) -> bool:
        """Whether ``cid`` is closed at ``at`` (the engine may close it for idleness)."""
        self.react(lifecycle.fire_due(self.view, at), at)
        conversation = self.view.conversation(cid)
        return conversation is not None and conversation.state == State.CLOSED

    def configure(self, at: datetime, boundary: datetime | None = None) -> None:
        terms: dict[str, Any] = {"commission": {"mode": "percent", "rate": 0.05}}
        if self.profile.reassign_after_s is not None:
            terms["reassign_after_s"] = self.profile.reassign_after_s
        if self.profile.clock_skew_s is not None:
            terms["clock_skew_s"] = self.profile.clock_skew_s
        self.emit(at, "tenant.updated", **terms)
        self.configure_policy(at, boundary)
        targets = dict(self.policy.targets)
        for priority, group in enumerate(self.groups):
            condition = {"attribute": "url", "op": "prefix", "value": f"/{group}/"}
            where: dict[str, Any] = {"group": group}
            if group in targets:
                where = {
                    "targets": [
                        {"group": g} if wait_s is None else {"group": g, "wait_s": wait_s}
                        for g, wait_s in targets[group]
                    ]
                }
            self.emit(
                at,
                "rule.updated",
                rule=f"r-{group}",
                **where,
                priority=priority,
                conditions=[condition],
            )
        for group, people in self.people.items():
            for person in people:
                self.emit(
                    at, "respondent.updated", respondent=person, groups=[group], slots=self.slots
                )
                self.emit(at, "respondent.status", respondent=person, status="available")

    def configure_policy(self, at: datetime, boundary: datetime | None) -> None:
        """The v2 settings (after the first ``tenant.updated``, which sets the clock skew)
        and the groups' hours and queue caps; nothing for a v1 site."""
        policy = self.policy
        terms: dict[str, Any] = {}
        if policy.sticky_within_s is not None:
            terms["sticky_within_s"] = policy.sticky_within_s
        if policy.answer_within_s is not None:
            terms["answer_within_s"] = policy.answer_within_s
            terms["pause_on_no_answer"] = policy.pause_on_no_answer
        if policy.close_after_idle_s is not None:
            terms["close_after_idle_s"] = policy.close_after_idle_s
        if terms:
            self.emit(at, "tenant.updated", **terms)
        declared: dict[str, dict[str, Any]] = {}
        for group, timezone, shape in policy.hours:
            assert boundary is not None, "hours need the day's boundary"
            declared.setdefault(group, {})["hours"] = hours_around(timezone, shape, boundary)
        for group, cap in policy.max_queue:
            declared.setdefault(group, {})["max_queue"] = cap
        for group, fields in sorted(declared.items()):
            self.emit(at, "group.updated", group=group, **fields)

    def holder(self, cid: str, at: datetime) -> str | None:
        """Who holds ``cid`` at ``at``: timers due by then (a reassignment) fire first."""
        self.react(lifecycle.fire_due(self.view, at), at)
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
        r, p, policy = self.random, self.profile, self.policy
        cid = f"c{n:07d}"
        group = "nowhere" if r.random() < p.unrouted else r.choice(self.groups)
        url = f"/{group}/page-{r.randrange(500)}"
        # A returning visitor comes back to the same pages, so to the same group.
        who = f"v-{group}-{r.randrange(policy.returning)}" if policy.returning else f"v{n}"
        priority: dict[str, int] = {}
        if policy.priorities:
            priority["priority"] = r.choice((0, 0, 0, 0, 0, 0, 5, 10, -10, 100))

        def start(at: datetime) -> None:
            self.emit(
                at,
                "conversation.started",
                conversation=cid,
                visitor=who,
                attributes={"url": url},
                **priority,
            )

        def prioritize(at: datetime) -> None:
            if not self.is_closed(cid, at):
                level = r.choice((20, 50, -20, 0))
                self.emit(at, "conversation.prioritized", conversation=cid, priority=level)

        def visitor(at: datetime) -> None:
            if not self.is_closed(cid, at):  # the widget of a closed conversation is done
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
        if policy.priorities and r.random() < 0.2:
            yield r.uniform(0.1, 1.5), prioritize
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
        Site(
            f"site-{t}",
            groups=5,
            respondents=respondents,
            seed=seed + t,
            profile=profile,
            policy=profile.policy(t),
        )
        for t in range(tenants)
    ]
    opens = start + min(timedelta(minutes=1), span / 20)
    boundary = None
    if any(site.policy.hours for site in sites):
        opens, boundary = straddle(opens, span)
    for site in sites:
        site.configure(start, boundary)
    arrivals = random.Random(seed)
    plan = _Plan()
    for site in sites:
        site.plan = plan
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


def straddle(opens: datetime, span: timedelta) -> tuple[datetime, datetime]:
    """When conversations start (``opens``, delayed if need be) so that a minute starts while
    they do, 15 to 85% into ``span``, and that minute: business hours, in whole local minutes,
    then change during the day however short it is."""
    earliest, latest = span * 0.15, span * 0.85
    boundary = _next_minute(opens + earliest)
    if boundary - opens > latest:
        opens = boundary - latest
    return opens, boundary


def _next_minute(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(minutes=1)


def hours_around(timezone: str, shape: str, boundary: datetime) -> dict[str, Any]:
    """A group's ``hours`` that change at ``boundary`` (a whole minute): ``split``: open two
    hours before it and from a minute after it for two hours; ``opens``: open for two hours
    from it; ``closes``: open for two hours until it. Wall-clock local times in ``timezone``,
    split at local midnight; ``closed`` holds a date a week later (for the form's sake)."""
    local = boundary.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    around, minute = timedelta(hours=2), timedelta(minutes=1)
    spans = {
        "split": [(local - around, local), (local + minute, local + around)],
        "opens": [(local, local + around)],
        "closes": [(local - around, local)],
    }[shape]
    weekly: dict[str, list[list[str]]] = {}
    for begin, end in spans:
        while begin < end:
            midnight = datetime.combine(begin.date() + timedelta(days=1), time())
            until = min(end, midnight)
            last = "24:00" if until == midnight else f"{until:%H:%M}"
            weekly.setdefault(DAYS[begin.weekday()], []).append([f"{begin:%H:%M}", last])
            begin = until
    closed = [(local.date() + timedelta(days=7)).isoformat()]
    return {"timezone": timezone, "weekly": weekly, "closed": closed}


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
