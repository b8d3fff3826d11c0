"""The in-memory view's journal and indexes (``chatroute.domain.memory``), over the random
event sequences of the domain's properties: a rolled-back transaction or savepoint leaves the
view as it was and the run goes on as if it never happened, and every index answers what a
walk over all the objects answers."""

from __future__ import annotations

from hypothesis import given, settings

from chatroute.domain import routing
from chatroute.domain.memory import InMemoryTenantView, recency
from chatroute.domain.model import AVAILABLE, QueueEntry, State
from tests.unit.test_domain_properties import CREW, STEPS, Crew, Run, Step, state


def replayed(crew: Crew, *parts: list[Step]) -> Run:
    run = Run(*crew)
    for step in (s for part in parts for s in part):
        run.step(*step)
    return run


@settings(max_examples=60, deadline=None)
@given(CREW, STEPS, STEPS, STEPS)
def test_a_rolled_back_transaction_leaves_the_view_as_it_was(
    crew: Crew, before: list[Step], undone: list[Step], after: list[Step]
) -> None:
    # Given a view some steps into a run
    run = replayed(crew, before)
    run.view.next_transaction()
    kept, now, decided = state(run.view), run.now, len(run.decisions)
    # When a transaction applies more steps and is rolled back
    run.view.begin()
    for step in undone:
        run.step(*step)
    run.view.rollback()
    run.now, run.decisions = now, run.decisions[:decided]
    # Then the view is as it was, and goes on deciding what a run without them decides
    assert state(run.view) == kept
    for step in after:
        run.step(*step)
    assert run.decisions == replayed(crew, before, after).decisions


@settings(max_examples=60, deadline=None)
@given(CREW, STEPS, STEPS, STEPS)
def test_a_rolled_back_savepoint_undoes_only_its_own_steps(
    crew: Crew, kept: list[Step], undone: list[Step], after: list[Step]
) -> None:
    # Given a transaction that applied some steps
    run = Run(*crew)
    run.view.begin()
    for step in kept:
        run.step(*step)
    # When a savepoint applies more, is rolled back, and the transaction goes on and commits
    now, decided = run.now, len(run.decisions)
    run.view.begin()
    for step in undone:
        run.step(*step)
    run.view.rollback()
    run.now, run.decisions = now, run.decisions[:decided]
    for step in after:
        run.step(*step)
    run.view.commit()
    # Then it holds and decided what the steps outside the savepoint alone do
    twin = replayed(crew, kept, after)
    assert run.decisions == twin.decisions
    assert state(run.view) == state(twin.view)


@settings(max_examples=60, deadline=None)
@given(CREW, STEPS)
def test_the_indexes_answer_as_a_walk_over_every_object(crew: Crew, steps: list[Step]) -> None:
    run = Run(*crew)
    for n, step in enumerate(steps):
        run.step(*step)
        if n % 2:
            run.view.next_transaction()  # the indexes catch up with what was handed out
        check_indexes(run.view)


def check_indexes(view: InMemoryTenantView) -> None:
    conversations = list(view.conversations.values())
    for rid, respondent in view.respondents.items():
        for held in (State.ASSIGNED, State.PENDING, State.SNOOZED):
            walked = sorted(
                c.conversation_id for c in conversations if c.respondent == rid and c.state == held
            )
            assert [c.conversation_id for c in view.held_by(rid, held)] == walked
        holds = [h for h in view.holds.values() if h.respondent == rid]
        assert view.oldest_hold(rid) == min(holds, key=lambda h: h.seq, default=None)
        served = [e for e in view.queue.values() if e.group in respondent.groups]
        head = min((e for e in served if e.excluded != rid), key=QueueEntry.order_key, default=None)
        assert view.queue_head(respondent.groups, rid) == head
    for entry in view.queue.values():
        ahead = [
            e
            for e in view.queue.values()
            if e.group == entry.group and e.order_key() < entry.order_key()
        ]
        assert view.queue_position(entry) == len(ahead) + 1
    groups = {g for r in view.respondents.values() for g in r.groups}
    for group in groups:
        free = [
            r
            for r in view.respondents.values()
            if group in r.groups and r.status == AVAILABLE and r.load < r.slots
        ]
        best = sorted(free, key=routing.candidate_key)[:3]
        given_ = view.free_respondents(group)
        assert all(r in given_ for r in best) and all(r in free for r in given_)
    for visitor in {c.visitor for c in conversations}:
        answered = [
            contact
            for c in conversations
            if c.visitor == visitor
            for contact in view.contacts(c.conversation_id)
            if contact.answered
        ]
        assert view.last_answered_contact(visitor) == max(answered, key=recency, default=None)
