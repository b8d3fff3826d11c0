"""``chatroute whatif``'s pure parts: how a change file enters a recorded day, and how the
recording's respondents' actions become their holders' in the change's run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chatroute.domain.commands import (
    ConversationSnoozed,
    ConversationStarted,
    ConversationTransferred,
    MessagePosted,
    RespondentStatus,
    RespondentUpdated,
    RuleUpdated,
)
from chatroute.domain.lifecycle import handle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import AVAILABLE
from chatroute.domain.whatif import holders_act
from chatroute.tools.whatif import InvalidChange, changed, read_change
from tests.builders import Events

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def lines(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps(event).encode() for event in events]


def day() -> tuple[Events, Events]:
    shop, bank = Events("shop-1"), Events("bank-7")
    bank.event("tenant.updated", reassign_after_s=60)
    shop.event("tenant.updated", reassign_after_s=3600, sticky_within_s=600)
    shop.rule("all", "G")
    shop.respondent("anna", ["G"])
    shop.start("c1")
    shop.event("respondent.status", respondent="anna", status="unavailable")
    return shop, bank


def change_of(*events: dict[str, Any]) -> Any:
    return read_change(lines(*events))


def test_change_events_come_before_their_tenants_first_event_dated_like_it() -> None:
    # Given a recorded day of two tenants, and a change for one of them
    shop, bank = day()
    recorded = lines(*bank.lines[:1], *shop.lines)
    extra = Events("shop-1", now=T0.replace(hour=3))
    extra.respondent("bob", ["G"], slots=2)
    change = change_of(*extra.lines)
    # When the change is applied
    out = [json.loads(line) for line in changed(recorded, change)]
    # Then the other tenant's events are as recorded, and the change's come right before the
    # tenant's first event, at its time, with ids of their own
    assert out[0] == bank.lines[0]
    added = out[1:3]
    assert [e["type"] for e in added] == ["respondent.updated", "respondent.status"]
    assert {e["time"] for e in added} == {shop.lines[0]["time"]}
    assert [e["id"] for e in added] == [
        f"whatif-{n}-{e['id']}" for n, e in enumerate(extra.lines, 1)
    ]
    assert out[3:] == shop.lines
    assert change.unapplied() == []


def test_a_recorded_event_that_would_undo_the_change_is_left_out() -> None:
    # Given a change of anna's status and of the rule, and a day that sets both
    shop, _ = day()
    change = change_of(
        {**shop.lines[3], "id": "x1"},  # anna available
        {**shop.lines[1], "id": "x2", "data": {**shop.lines[1]["data"], "priority": 1}},
    )
    # When the change is applied
    out = [json.loads(line) for line in changed(lines(*shop.lines), change)]
    kept = [e for e in out if not e["id"].startswith("whatif-")]
    # Then the day's rule.updated of that rule and anna's status events are left out, the rest
    # (her respondent.updated, the tenant's settings, the conversation) stays
    assert [e["type"] for e in kept] == [
        "tenant.updated",
        "respondent.updated",
        "conversation.started",
    ]


def test_a_tenant_setting_the_change_sets_is_taken_out_of_the_recorded_settings() -> None:
    # Given a change of one setting, and a day whose tenant.updated sets two
    shop, _ = day()
    change = change_of({**shop.lines[0], "id": "x", "data": {"sticky_within_s": 0}})
    # When the change is applied
    out = [json.loads(line) for line in changed(lines(*shop.lines), change)]
    # Then the recorded event keeps only the other setting
    recorded = [e for e in out if e["type"] == "tenant.updated" and e["id"] == shop.lines[0]["id"]]
    assert recorded[0]["data"] == {"reassign_after_s": 3600}
    # And a recorded tenant.updated that sets nothing else is left out whole
    only = change_of(
        {**shop.lines[0], "id": "y", "data": {"sticky_within_s": 0, "reassign_after_s": 5}}
    )
    out = [json.loads(line) for line in changed(lines(*shop.lines), only)]
    assert [e["id"] for e in out if e["type"] == "tenant.updated"] == ["whatif-1-y"]


def test_lines_that_are_not_events_pass_as_they_are_and_a_tenant_without_events_is_named() -> None:
    shop, _ = day()
    change = change_of(
        {**shop.lines[1], "id": "x"},
        {**shop.lines[1], "id": "y", "tenant": "nobody"},
    )
    out = list(changed([b"not json", b"[1, 2]", *lines(*shop.lines)], change))
    assert out[:2] == [b"not json", b"[1, 2]"]
    assert change.unapplied() == ["nobody"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{", "line 2: invalid JSON"),
        (
            json.dumps(
                {**Events("shop-1").event("conversation.started", conversation="c", visitor="v")}
            ).encode(),
            "line 2: conversation.started is not a change",
        ),
    ],
)
def test_a_change_file_line_that_is_not_a_configuration_event_is_refused(
    line: bytes, message: str
) -> None:
    good = json.dumps(
        Events("shop-1").event("respondent.status", respondent="a", status="available")
    )
    with pytest.raises(InvalidChange) as refused:
        read_change([good.encode(), line])
    assert str(refused.value).startswith(message)


# ---------------------------------------------------------------- holders act


def assigned_to_bob() -> InMemoryTenantView:
    """c1 assigned to bob, the one available member of G (anna is away)."""
    view = InMemoryTenantView("shop-1")
    for command in (
        RuleUpdated("all", group="G"),
        RespondentUpdated("anna", ["G"], 1),
        RespondentUpdated("bob", ["G"], 1),
        RespondentStatus("bob", AVAILABLE),
        ConversationStarted("c1", "v1", {}),
    ):
        handle(view, command, T0)
    conversation = view.conversation("c1")
    assert conversation is not None and conversation.respondent == "bob"
    return view


@pytest.mark.parametrize(
    "action",
    [
        MessagePosted("c1", "respondent", "anna"),
        ConversationTransferred("c1", "anna", to_group="G"),
        ConversationSnoozed("c1", "anna"),
    ],
)
def test_a_recorded_respondents_action_is_the_holders_in_a_what_if_run(action: Any) -> None:
    view = assigned_to_bob()
    recast = holders_act(view, action)
    assert recast.respondent == "bob"
    assert type(recast) is type(action)
    assert {k: v for k, v in vars(recast).items() if k != "respondent"} == {
        k: v for k, v in vars(action).items() if k != "respondent"
    }


@pytest.mark.parametrize(
    "action",
    [
        MessagePosted("c1", "visitor"),  # not a respondent's
        MessagePosted("c1", "respondent", "bob"),  # the holder's already
        MessagePosted("c9", "respondent", "anna"),  # no such conversation: refused as it is
        RespondentStatus("anna", AVAILABLE),  # not an action on a conversation
    ],
)
def test_other_commands_are_left_as_they_are(action: Any) -> None:
    assert holders_act(assigned_to_bob(), action) is action


def test_an_action_on_a_conversation_nobody_holds_is_left_as_it_is() -> None:
    view = assigned_to_bob()
    handle(view, ConversationSnoozed("c1", "bob"), T0)
    action = MessagePosted("c1", "respondent", "anna")
    assert holders_act(view, action) is action
