"""What the chaos run publishes, and the publishers that do it.

The events come from the pure-domain simulator (``benchmarks.workload`` with the ``CHAOS``
profile): five sites whose conversations are transferred, snoozed, rated and sold on while
respondents step away and come back. Two sites route as in v1; three use the routing policy
of contract v2 (business hours that change during the run, overflow chains, queue caps,
priorities, returning visitors with sticky routing, answer deadlines with and without pauses,
idle closes). Some events are sent twice (a frontend's resend), some are garbage.
Publishers run at once, one per site: a site's events reach the engine in the order of their
times, as from one frontend.

Why so: the engine fires a timer before the first event timed after it; the pipeline fires
it also when the wall clock reaches it, ``chatroute replay`` when the latest event time seen
does. The two clocks agree on every order when a tenant's events arrive in time order and
ahead of the wall clock. So event times run ``lead_s`` ahead: each event is published
``lead_s`` before its ``time``, and as long as none takes longer than that to arrive, every
event timed before a timer is in before the timer falls due by the wall clock. The replay can
then be the oracle. (The engine trusts an event's time only within its tenant's
``clock_skew_s`` of its reception: the chaos sites set it to an hour, so their events keep
their times, as in the replay, which takes each line's time as its reception time.)
(Events of one tenant arriving out of time order, or later than that, and a timer falling
due among them, may legitimately apply in another order: the contract says
a timer fires before any event timed after it, not after every event timed before it.)
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.workload import CHAOS, day
from chatroute.publish import Publisher

CANARY_TENANT = "canary"


@dataclass(frozen=True)
class Message:
    """One publish: ``at_s`` seconds after the traffic starts, of ``body``."""

    at_s: float
    body: bytes
    shard: str  # messages of one shard go through one publisher, in order: the tenant
    key: tuple[str, str] | None = None  # (tenant, id) of an event with both
    garbage: bool = False


@dataclass
class Traffic:
    messages: list[Message]
    events: int  # distinct events (valid or not) among the messages
    duplicates: int
    garbage: int
    # Every timer the events can arm is due by then (an event-time moment).
    horizon: datetime
    last_event_time: datetime
    # When the first conversation starts, after the sites' configuration (the simulator may
    # wait for a minute to begin while they start: see ``benchmarks.workload.straddle``).
    opens_s: float = 0.0


def build(
    conversations: int,
    tenants: int,
    span_s: float,
    first_time: datetime,
    seed: int,
    duplicates: float = 0.05,
    garbage: float = 0.005,
) -> Traffic:
    """The schedule: the simulated events, resends of ``duplicates`` of them and ``garbage``.

    ``first_time`` is the first event's ``time``; it is published at ``at_s`` 0."""
    events = day(
        conversations,
        tenants=tenants,
        respondents=30,
        seed=seed,
        span=timedelta(seconds=span_s),
        profile=CHAOS,
        start=first_time,
    )
    r = random.Random(seed)
    messages = [_message(event, first_time) for event in events]
    copies = [_resent(m, r) for m in r.sample(messages, int(len(messages) * duplicates))]
    junk = [_garbage(n, r, events, first_time) for n in range(int(len(events) * garbage))]
    last = max(_time(e) for e in events)
    tail = timedelta(seconds=_longest_timer_s() + 1)
    schedule = sorted(messages + copies + junk, key=lambda m: m.at_s)
    opens = min(_time(e) for e in events if e["type"] == "conversation.started")
    return Traffic(
        schedule,
        len(events) + len(junk),
        len(copies),
        len(junk),
        last + tail,
        last,
        (opens - first_time).total_seconds(),
    )


def _longest_timer_s() -> float:
    """The longest chain of timers after the last event: the longest timer (a snooze's
    wake-up, an answer deadline, an idle close, a rule's waits one after the other), then a
    reassignment (the wake finds its respondent away, or the deadline pauses them)."""
    assert CHAOS.reassign_after_s is not None
    longest = [max(CHAOS.snooze_s)]
    for policy in CHAOS.policies:
        longest += [policy.answer_within_s or 0, policy.close_after_idle_s or 0]
        longest += [sum(wait_s or 0 for _, wait_s in chain) for _, chain in policy.targets]
    return max(longest) + CHAOS.reassign_after_s


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def _message(event: dict[str, Any], first_time: datetime) -> Message:
    at_s = (_time(event) - first_time).total_seconds()
    body = json.dumps(event, separators=(",", ":")).encode()
    return Message(at_s, body, event["tenant"], (event["tenant"], event["id"]))


def _resent(original: Message, r: random.Random) -> Message:
    return Message(
        original.at_s + r.uniform(0.05, 3.0), original.body, original.shard, original.key
    )


def _garbage(n: int, r: random.Random, events: list[dict[str, Any]], first: datetime) -> Message:
    """A message a frontend should never send: each kind is rejected with its own reason."""
    event = r.choice([e for e in events if e["type"] == "conversation.started"])
    tenant, conversation = event["tenant"], event["data"]["conversation"]
    at_s = (_time(event) - first).total_seconds() + 0.01
    bad = {**event, "id": f"junk-{n}"}
    kind = n % 5
    if kind == 0:
        body = json.dumps(bad).encode()[:-7]  # cut short: not JSON
    elif kind == 1:
        body = json.dumps({**bad, "data": {"visitor": "v"}}).encode()  # no conversation
    elif kind == 2:
        body = json.dumps({**bad, "type": "conversation.exploded"}).encode()
    elif kind == 3:  # a conversation that never starts: waits, then is rejected
        ghost = {"conversation": f"ghost-{n}", "author": "visitor"}
        body = json.dumps({**bad, "type": "message.posted", "data": ghost}).encode()
    else:  # someone who does not hold it transfers it
        data = {"conversation": conversation, "respondent": "nobody", "to_group": "g0"}
        body = json.dumps({**bad, "type": "conversation.transferred", "data": data}).encode()
    key = None if kind == 0 else (tenant, bad["id"])
    return Message(at_s, body, tenant, key, garbage=True)


@dataclass
class Publishing:
    """A thread per shard (tenant) sending ``traffic`` on its schedule from ``started``."""

    amqp_url: str
    traffic: Traffic
    started: float
    lateness: list[float] = field(default_factory=list)  # seconds behind schedule, per message
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        shares: dict[str, list[Message]] = {}
        for message in self.traffic.messages:
            shares.setdefault(message.shard, []).append(message)
        self._threads = [threading.Thread(target=self._send, args=(s,)) for s in shares.values()]
        for thread in self._threads:
            thread.start()

    def _send(self, share: list[Message]) -> None:
        publisher = Publisher(self.amqp_url, retry_s=0.25, give_up_after_s=120)
        try:
            for message in share:
                wait = self.started + message.at_s - time.time()
                if wait > 0:
                    time.sleep(wait)
                self.lateness.append(max(0.0, -wait))
                publisher.publish(message.body)
        except Exception as error:  # reported: a publisher that gave up loses events
            self.errors.append(repr(error))
        finally:
            self.retries += publisher.retries
            publisher.close()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


class Canary:
    """Publishes a probe event every ``every_s`` to a tenant of its own; each becomes a
    ``conversation.unrouted``. Probes sent during an outage wait; the engine has recovered
    when a probe is decided as fast as usual again."""

    def __init__(self, amqp_url: str, name: str, every_s: float = 0.25) -> None:
        self.amqp_url = amqp_url
        self.name = name  # probes' ids start with it: another canary's are other events
        self.every_s = every_s
        self.sent: list[tuple[float, str]] = []  # (time.time() the publish began, event id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        publisher = Publisher(self.amqp_url, retry_s=0.1, give_up_after_s=300)
        n = 0
        while not self._stop.wait(self.every_s):
            n += 1
            began = time.time()
            event_id = f"{self.name}-{n}"
            publisher.publish(_canary_event(event_id, event_id))
            self.sent.append((began, event_id))
        publisher.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def recovery_s(
        self, fault_at: float, decided: Callable[[str], float | None], normal_s: float = 1.0
    ) -> float | None:
        """Seconds from ``fault_at`` until a probe sent after it was decided within
        ``normal_s`` of being sent: until the engine was back to normal."""
        for began, event_id in self.sent:
            arrived = decided(event_id) if began >= fault_at else None
            if arrived is not None and arrived - began <= normal_s:
                return arrived - fault_at
        return None


def _canary_event(event_id: str, conversation: str) -> bytes:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "chaos/canary",
        "type": "conversation.started",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tenant": CANARY_TENANT,
        "data": {"conversation": conversation, "visitor": "probe", "attributes": {}},
    }
    return json.dumps(event).encode()
