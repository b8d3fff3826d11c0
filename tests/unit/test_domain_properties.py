"""Properties of the domain over random event sequences (docs/semantics.md as a whole).

A few respondents, groups and conversations; each step advances the clock, fires the timers
due (in order), applies one command and fires what that command armed already due, the way
the workers do. After every step the invariants below must hold.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatroute.domain import routing
from chatroute.domain.commands import (
    Command,
    ConversationClosed,
    ConversationPrioritized,
    ConversationRated,
    ConversationSale,
    ConversationSnoozed,
    ConversationStarted,
    ConversationTransferred,
    GroupUpdated,
    MessagePosted,
    RespondentStatus,
    RespondentUpdated,
    RuleUpdated,
    TenantUpdated,
    VisitorPresence,
)
from chatroute.domain.lifecycle import fire_due, handle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import (
    AVAILABLE,
    UNAVAILABLE,
    Conversation,
    Decision,
    State,
    TimerKind,
)
from chatroute.errors import Rejected

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
REASSIGN_AFTER_S = 3600
RESPONDENTS = ["r1", "r2", "r3"]
GROUPS = ["g1", "g2"]
CONVERSATIONS = ["c1", "c2", "c3", "c4", "c5", "c6"]
# The language a conversation starts with when the run opens it (not by a generated start).
LANGUAGES = dict(zip(CONVERSATIONS, ["fr", "en", "fr", "en-gb", "fr", "de"], strict=True))
# Routing policy v2 is on: deadlines, stickiness, overflow chains (idle close and the
# groups' hours and caps change during a run).
ANSWER_WITHIN_S = 45 * 60
SETUP: list[Command] = [
    TenantUpdated(
        reassign_after_s=REASSIGN_AFTER_S, sticky_within_s=1800, answer_within_s=ANSWER_WITHIN_S
    ),
    RuleUpdated(
        "fr",
        priority=1,
        conditions=[{"attribute": "lang", "op": "eq", "value": "fr"}],
        targets=[{"group": "g1", "wait_s": 900}, {"group": "g2"}],
    ),
    RuleUpdated(
        "en",
        priority=2,
        conditions=[{"attribute": "lang", "op": "prefix", "value": "e"}],
        targets=[{"group": "g2", "wait_s": 600}, {"group": "g1", "wait_s": 1200}],
    ),
]
OPEN = {"timezone": "Europe/Paris", "weekly": {"sun": [["00:00", "24:00"]]}}  # T0 is a Sunday
CLOSED = {"timezone": "UTC", "weekly": {}}

HOLDER = "<holder>"  # resolved when applied: whoever holds the conversation then
TOGGLE = "<toggle>"  # resolved when applied: the status the respondent does not have
ACTED_BY = (ConversationTransferred, ConversationSnoozed, MessagePosted)

respondents = st.sampled_from(RESPONDENTS)
actors = st.sampled_from([HOLDER, HOLDER, HOLDER, *RESPONDENTS])
conversations = st.sampled_from(CONVERSATIONS)
groups = st.sampled_from([*GROUPS, "g9"])
member_of = st.lists(st.sampled_from(GROUPS), unique=True, max_size=2)
some_groups = st.lists(st.sampled_from(GROUPS), unique=True, min_size=1, max_size=2)
started = st.builds(
    ConversationStarted,
    conversations,
    st.sampled_from(["v", "w"]),
    st.fixed_dictionaries({"lang": st.sampled_from(["fr", "en", "en-gb", "de"])}),
    st.sampled_from([0, 0, 5, -5]),
)
# The moves that change where conversations are come twice as often as the rest.
FREQUENT = [
    st.builds(RespondentStatus, respondents, st.sampled_from([AVAILABLE, TOGGLE, TOGGLE])),
    st.builds(ConversationTransferred, conversations, actors, to_respondent=respondents),
    st.builds(ConversationTransferred, conversations, actors, to_group=groups),
    st.builds(ConversationSnoozed, conversations, actors, keep=st.booleans()),
]
OCCASIONAL = [
    st.builds(RespondentUpdated, respondents, member_of, st.integers(0, 2)),
    started,
    st.builds(MessagePosted, conversations, st.sampled_from(["visitor", "respondent"]), actors),
    st.builds(VisitorPresence, conversations, st.booleans()),
    st.builds(ConversationClosed, conversations),
    st.builds(ConversationRated, conversations, st.integers(1, 5)),
    st.builds(ConversationSale, conversations, st.floats(0, 100)),
    st.builds(ConversationPrioritized, conversations, st.sampled_from([-1, 0, 7])),
    st.builds(
        TenantUpdated,
        close_after_idle_s=st.sampled_from([None, 45 * 60, 90 * 60]),
        pause_on_no_answer=st.booleans(),
    ),
]
GATES = st.builds(
    GroupUpdated,
    st.sampled_from(GROUPS),
    st.sampled_from([OPEN, CLOSED, None]),
    st.sampled_from([None, 0, 1]),
)
COMMANDS = st.one_of(*FREQUENT, *FREQUENT, *OCCASIONAL, GATES, GATES)
ROSTER = st.tuples(
    *(
        st.builds(RespondentUpdated, st.just(rid), some_groups, st.integers(1, 2))
        for rid in RESPONDENTS
    )
)
# (who is configured, who starts available, how many conversations are open at the start)
CREW = st.tuples(
    ROSTER,
    st.lists(respondents, unique=True, min_size=1, max_size=3),
    st.integers(0, len(CONVERSATIONS) // 2),
)
# (minutes the clock moves first, the command, minutes until a snooze's wake or None)
STEPS = st.lists(
    st.tuples(st.sampled_from([0, 0, 1, 10, 30, 61]), COMMANDS, st.none() | st.integers(0, 90)),
    min_size=5,
    max_size=40,
)
Step = tuple[int, Command, int | None]
Crew = tuple[tuple[RespondentUpdated, ...], list[str], int]


class Run:
    """Applies steps to an in-memory tenant and checks the invariants after each one."""

    def __init__(
        self, roster: tuple[RespondentUpdated, ...], available: list[str], opened: int
    ) -> None:
        self.view = InMemoryTenantView("t")
        self.now = T0
        self.decisions: list[Decision] = []
        setup = [*SETUP, *roster, *(RespondentStatus(rid, AVAILABLE) for rid in available)]
        for command in setup:
            handle(self.view, command, self.now)
        for cid in CONVERSATIONS[:opened]:
            self._open(cid)

    def step(self, minutes: int, command: Command, wake_in: int | None) -> None:
        self.now += timedelta(minutes=minutes)
        self._record(fire_due(self.view, self.now))
        self._start_if_new(command)
        self._apply(self._resolve(command, wake_in))
        self._record(fire_due(self.view, self.now))
        check_state(self.view, self.now)

    def _start_if_new(self, command: Command) -> None:
        """Open a conversation a step names first: unknown ones are the runner's business."""
        cid = getattr(command, "conversation", None)
        if cid in LANGUAGES and self.view.conversation(cid) is None:
            self._open(cid)

    def _open(self, cid: str) -> None:
        started = ConversationStarted(cid, "v", {"lang": LANGUAGES[cid]})
        self._record(handle(self.view, started, self.now))

    def _resolve(self, command: Command, wake_in: int | None) -> Command:
        """Replace the placeholders by what they stand for now."""
        if isinstance(command, ACTED_BY) and command.respondent == HOLDER:
            conversation = self.view.conversations.get(command.conversation)
            holder = conversation.respondent if conversation else None
            command = dataclasses.replace(command, respondent=holder or "r1")
        if isinstance(command, RespondentStatus) and command.status == TOGGLE:
            current = self.view.respondents[command.respondent].status
            status = UNAVAILABLE if current == AVAILABLE else AVAILABLE
            command = dataclasses.replace(command, status=status)
        if isinstance(command, ConversationSnoozed) and wake_in is not None:
            command = dataclasses.replace(command, until=self.now + timedelta(minutes=wake_in))
        return command

    def _apply(self, command: Command) -> None:
        before = state(self.view)
        try:
            self._record(handle(self.view, command, self.now))
        except Rejected:
            assert state(self.view) == before, f"{command} was rejected but changed the state"

    def _record(self, decisions: list[Decision]) -> None:
        check_assignments(self.view, decisions)
        self.decisions += decisions


def state(view: InMemoryTenantView) -> dict[str, Any]:
    """Everything the view holds, by value (not its indexes, nor its journal of what it handed
    out, nor the timers armed since its caller last looked)."""
    public = {
        name: value
        for name, value in vars(view).items()
        if not name.startswith("_") and name != "lately_armed"
    }
    return copy.deepcopy(public | {"settings": view.settings()})


def check_assignments(view: InMemoryTenantView, decisions: list[Decision]) -> None:
    """Nobody receives a conversation beyond their slots."""
    for decision in decisions:
        if decision.type == "conversation.assigned":
            respondent = view.respondents[decision.data["respondent"]]
            assert respondent.load <= respondent.slots, decision


def check_state(view: InMemoryTenantView, now: datetime) -> None:
    """Every invariant of the tenant's state at ``now``, timers due having fired."""
    check_loads(view)
    for conversation in view.conversations.values():
        check_place(view, conversation, now)
        check_contacts(view, conversation)
    check_no_strays(view)
    check_queue_order(view)
    check_nobody_idle_while_queued(view)


def check_loads(view: InMemoryTenantView) -> None:
    """Load equals the number of conversations assigned to the respondent."""
    held = Counter(c.respondent for c in view.conversations.values() if c.state == State.ASSIGNED)
    assert {rid: r.load for rid, r in view.respondents.items()} == {
        rid: held[rid] for rid in view.respondents
    }


def check_place(view: InMemoryTenantView, conversation: Conversation, now: datetime) -> None:
    """Every open conversation is in exactly one place, with the timers that place implies."""
    cid, state = conversation.conversation_id, conversation.state
    entry, hold = view.queue_entry(cid), view.hold(cid)
    timers = Counter(t.kind for t in view.armed_timers(cid))
    assert (entry is not None) == (state == State.QUEUED), cid
    assert (hold is not None) == (state == State.PENDING), cid
    assert (conversation.respondent is not None) == (
        state in (State.ASSIGNED, State.PENDING, State.SNOOZED)
    )
    if state != State.CLOSED:
        unrouted = state == State.UNROUTED
        assert (conversation.unrouted_code is not None) == unrouted, cid
        assert (conversation.group is None) == (conversation.unrouted_code == "no_rule"), cid
    if entry is not None:
        assert entry.group == conversation.group
    if hold is not None:
        assert (hold.respondent, hold.group) == (conversation.respondent, conversation.group)
        assert hold.reassign_at > now, "a hold outlived its reassignment"
    assert timers[TimerKind.REASSIGN] == _reassignments_expected(view, conversation)
    assert timers[TimerKind.WAKE] == (
        state == State.SNOOZED and conversation.snooze_until is not None
    )
    assert timers[TimerKind.OVERFLOW] == _overflow_expected(conversation), cid
    assert timers[TimerKind.ANSWER] == _deadline_expected(view, conversation), cid
    watched = state not in (State.CLOSED, State.SNOOZED)
    idle_on = view.settings().close_after_idle_s is not None
    assert timers[TimerKind.IDLE] == (watched and idle_on), cid
    assert all(t.due > now for t in view.armed_timers(cid)), "a due timer was not fired"


def _overflow_expected(conversation: Conversation) -> int:
    """A conversation waits for its overflow only in a queue of its rule with a wait."""
    if conversation.state != State.QUEUED or conversation.target is None:
        return 0
    targets = conversation.rule_targets
    assert targets is not None, "it waits at a target of a rule it did not keep"
    return int(targets[conversation.target].get("wait_s") is not None)


def _deadline_expected(view: InMemoryTenantView, conversation: Conversation) -> int:
    """An answer deadline runs exactly while it is assigned and its contact unanswered."""
    if conversation.state != State.ASSIGNED:
        return 0
    contact = routing.open_contact(view, conversation.conversation_id)
    return int(contact is not None and not contact.answered)


def _reassignments_expected(view: InMemoryTenantView, conversation: Conversation) -> int:
    if conversation.state == State.PENDING:
        return 1
    if conversation.state == State.ASSIGNED and conversation.respondent is not None:
        return int(view.respondents[conversation.respondent].status == UNAVAILABLE)
    return 0


def check_contacts(view: InMemoryTenantView, conversation: Conversation) -> None:
    """Contacts are numbered 1..n; only the last may be open, and only for the current holder."""
    contacts = view.contacts(conversation.conversation_id)
    assert [c.number for c in contacts] == list(range(1, conversation.contacts + 1))
    assert all(c.ended_at is not None for c in contacts[:-1])
    current = routing.open_contact(view, conversation.conversation_id)
    if conversation.state in (State.ASSIGNED, State.SNOOZED):
        assert current is not None
    if current is not None:
        assert current.respondent == conversation.respondent, "an open contact lost its holder"


def check_queue_order(view: InMemoryTenantView) -> None:
    """Each queue holds its conversations' priorities, and positions rank them 1..n in the
    contract's order (priority, joined time, order of joining)."""
    by_group: dict[str, list[Any]] = {}
    for entry in view.queue.values():
        assert entry.priority == view.conversations[entry.conversation_id].priority, entry
        assert entry.joined_at is not None and entry.joined_at <= entry.queued_at, entry
        by_group.setdefault(entry.group, []).append(entry)
    for entries in by_group.values():
        ordered = sorted(entries, key=lambda e: (-e.priority, e.joined_at, e.seq))
        positions = [view.queue_position(e) for e in ordered]
        assert positions == list(range(1, len(entries) + 1))


def check_no_strays(view: InMemoryTenantView) -> None:
    """Queue entries and holds belong to conversations queued, respectively pending."""
    states = {cid: c.state for cid, c in view.conversations.items()}
    assert all(states.get(cid) == State.QUEUED for cid in view.queue)
    assert all(states.get(cid) == State.PENDING for cid in view.holds)


def check_nobody_idle_while_queued(view: InMemoryTenantView) -> None:
    """A queued conversation never waits while a member of its group who may take it is free
    (the one who missed its deadline may not); nor does a hold."""
    for entry in view.queue.values():
        free = [r for r in view.free_respondents(entry.group) if r.respondent_id != entry.excluded]
        assert free == [], entry
    for hold in view.holds.values():
        assert not routing.is_free(view.respondents[hold.respondent]), hold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CREW, STEPS)
def test_invariants_hold_after_every_step(crew: Crew, steps: list[Step]) -> None:
    run = Run(*crew)
    for step in steps:
        run.step(*step)


@settings(max_examples=30, deadline=None)
@given(CREW, STEPS)
def test_the_same_events_decide_the_same_things(crew: Crew, steps: list[Step]) -> None:
    first, second = Run(*crew), Run(*crew)
    for step in steps:
        first.step(*step)
        second.step(*step)
    assert first.decisions == second.decisions
