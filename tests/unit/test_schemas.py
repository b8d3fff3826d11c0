"""The wire contract's models: valid events parse, invalid ones get a precise reason."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatroute.domain import commands
from chatroute.errors import InvalidEvent
from schemas.decisions import format_time, make_decision
from schemas.events import best_effort_identity, parse_event, to_command
from schemas.export import JSON_DIR, export_all

VALID_DATA: dict[str, dict[str, Any]] = {
    "respondent.updated": {"respondent": "r1", "groups": ["G"], "slots": 2, "name": "Ann"},
    "respondent.status": {"respondent": "r1", "status": "available"},
    "rule.updated": {
        "rule": "x",
        "group": "G",
        "priority": 1,
        "conditions": [
            {"attribute": "lang", "op": "in", "value": ["fr", "be"]},
            {"attribute": "url", "op": "prefix", "value": "https://"},
        ],
    },
    "rule.deleted": {"rule": "x"},
    "tenant.updated": {"reassign_after_s": 60, "commission": {"mode": "per_contact", "amount": 2}},
    "conversation.started": {"conversation": "c1", "visitor": "v1", "attributes": {"a": "b"}},
    "message.posted": {"conversation": "c1", "author": "respondent", "respondent": "r1"},
    "visitor.presence": {"conversation": "c1", "online": False},
    "conversation.transferred": {
        "conversation": "c1",
        "respondent": "r1",
        "to_group": "G",
        "comment": "billing",
    },
    "conversation.snoozed": {
        "conversation": "c1",
        "respondent": "r1",
        "until": "2026-11-22T13:00:00+01:00",
        "keep": False,
    },
    "conversation.closed": {"conversation": "c1", "by": "r1"},
    "conversation.rated": {"conversation": "c1", "score": 5},
    "conversation.sale": {"conversation": "c1", "amount": 19.9, "currency": "EUR"},
}


def envelope(type_: str = "conversation.closed", **overrides: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "widget/shop-1",
        "type": type_,
        "time": "2026-11-22T10:00:00Z",
        "tenant": "shop-1",
        "data": VALID_DATA[type_],
        "ext": "ignored",
    }
    event.update(overrides)
    return event


def body(event: Any) -> bytes:
    return json.dumps(event).encode()


@pytest.mark.parametrize("type_", sorted(VALID_DATA))
def test_every_event_type_parses_into_its_domain_command(type_: str) -> None:
    event = parse_event(body(envelope(type_)))
    command = to_command(event)
    assert isinstance(command, commands.COMMANDS[type_])
    assert event.tenant == "shop-1" and event.time == datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_unknown_data_fields_are_ignored() -> None:
    event = parse_event(body(envelope(data={"conversation": "c1", "extra": [1, 2]})))
    assert to_command(event) == commands.ConversationClosed("c1")


def test_snooze_until_keeps_its_instant() -> None:
    command = to_command(parse_event(body(envelope("conversation.snoozed"))))
    assert command.until == datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (envelope(specversion="0.3"), "specversion: Input should be '1.0'"),
        ({k: v for k, v in envelope().items() if k != "id"}, "id: field required"),
        (envelope(id=""), "id: String should have at least 1 character"),
        (envelope(type="foo.bar"), "type: unknown event type"),
        (envelope(time="2026-11-22T10:00:00"), "time: Input should have timezone info"),
        (envelope(time="yesterday"), "time: Input should be a valid datetime"),
        (envelope(tenant="shop.1"), "tenant: letters, digits"),
        (envelope(tenant=7), "tenant: Input should be a valid string"),
        (envelope(data=[1]), "data: Input should be a valid dictionary"),
        (envelope(data={}), "data.conversation: field required"),
        (
            envelope("respondent.updated", data={"respondent": "r", "groups": [], "slots": -1}),
            "data.slots: Input should be greater than or equal to 0",
        ),
        (
            envelope("respondent.updated", data={"respondent": "r", "groups": [], "slots": "2"}),
            "data.slots: Input should be a valid integer",
        ),
        (
            envelope("respondent.updated", data={"respondent": "r", "groups": [], "slots": True}),
            "data.slots: Input should be a valid integer",
        ),
        (
            envelope("respondent.status", data={"respondent": "r", "status": "away"}),
            "data.status: Input should be 'available' or 'unavailable'",
        ),
        (
            envelope(
                "rule.updated",
                data={
                    "rule": "x",
                    "group": "G",
                    "priority": 1,
                    "conditions": [{"attribute": "a", "op": "in", "value": "fr"}],
                },
            ),
            "op 'in' takes a list",
        ),
        (
            envelope(
                "rule.updated",
                data={
                    "rule": "x",
                    "group": "G",
                    "priority": 1,
                    "conditions": [{"attribute": "a", "op": "regex", "value": "x"}],
                },
            ),
            "data.conditions.0.op",
        ),
        (
            envelope("message.posted", data={"conversation": "c", "author": "respondent"}),
            "respondent is required when author is 'respondent'",
        ),
        (
            envelope("conversation.transferred", data={"conversation": "c", "respondent": "r"}),
            "exactly one of to_respondent and to_group",
        ),
        (
            envelope(
                "conversation.transferred",
                data={
                    "conversation": "c",
                    "respondent": "r",
                    "to_group": "G",
                    "to_respondent": "b",
                },
            ),
            "exactly one of to_respondent and to_group",
        ),
        (
            envelope("conversation.rated", data={"conversation": "c", "score": 6}),
            "data.score: Input should be less than or equal to 5",
        ),
        (
            envelope("conversation.sale", data={"conversation": "c", "amount": -1}),
            "data.amount: Input should be greater than or equal to 0",
        ),
        (envelope("conversation.sale", data={"conversation": "c", "amount": "12"}), "data.amount"),
        (envelope("tenant.updated", data={"commission": {"mode": "bonus"}}), "data.commission"),
        (
            envelope("tenant.updated", data={"commission": {"mode": "percent", "rate": 2}}),
            "data.commission.rate: Input should be less than or equal to 1",
        ),
    ],
)
def test_invalid_events_are_rejected_naming_the_field(event: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        parse_event(body(event))
    assert reason in rejected.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid JSON"),
        (b"[1]", "an event is a JSON object, not list"),
        (b"\xff\xfe", "body is not UTF-8"),
        (b'{"a": NaN}', "invalid JSON"),
        (b"[" * 60_000, "nested too deeply"),
        (b" " * 70_000, "event larger than 64 KiB (70000 bytes)"),
    ],
)
def test_bodies_that_are_not_events_are_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        parse_event(raw)
    assert reason in rejected.value.reason


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {k: st.just(v) for k, v in envelope().items() if k != "data"},
            optional={
                "data": st.dictionaries(st.text(max_size=12), st.integers() | st.text(max_size=5))
            },
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_input_parses_or_is_rejected_never_crashes(raw: bytes) -> None:
    try:
        parse_event(raw)
    except InvalidEvent as rejected:
        assert rejected.reason
    assert isinstance(best_effort_identity(raw), tuple)


NUL_ERROR = "must not contain the character U+0000"
TIME_RANGE = "must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z"
SNOOZE = {"conversation": "c", "respondent": "r"}


# Found by the hostile-input fuzz (#6): each of these passed validation, then failed to store
# (PostgreSQL text holds no U+0000, columns are 32-bit, datetimes end at year 9999), which
# stopped the gateway or set the event aside as an "internal error".
@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (envelope(id="e\u0000"), f"id: {NUL_ERROR}"),
        (envelope(id="e\ud800"), "id: not valid Unicode (a lone surrogate"),
        (
            envelope("conversation.started", data={"conversation": "c", "visitor": "v\u0000"}),
            f"data.visitor: {NUL_ERROR}",
        ),
        (
            envelope(
                "respondent.updated", data={"respondent": "r", "groups": ["\u0000"], "slots": 1}
            ),
            f"data.groups.0: {NUL_ERROR}",
        ),
        (
            envelope("respondent.updated", data={"respondent": "r", "groups": [], "slots": 2**31}),
            "data.slots: Input should be less than or equal to 2147483647",
        ),
        (
            envelope("rule.updated", data={"rule": "x", "group": "G", "priority": -(2**31) - 1}),
            "data.priority: Input should be greater than or equal to -2147483648",
        ),
        (
            envelope("tenant.updated", data={"reassign_after_s": 10**20}),
            "data.reassign_after_s: Input should be less than or equal to 2147483647",
        ),
        (envelope(time="9999-12-31T23:59:59-01:00"), f"time: {TIME_RANGE}"),
        (envelope(time="0001-01-01T00:00:00+01:00"), f"time: {TIME_RANGE}"),
        (
            envelope("conversation.snoozed", data={**SNOOZE, "until": "9999-12-31T00:00:00Z"}),
            f"data.until: {TIME_RANGE}",
        ),
    ],
)
def test_values_no_column_can_store_are_rejected_naming_the_field(event: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        parse_event(body(event))
    assert reason in rejected.value.reason


def test_a_reason_naming_a_key_from_the_body_is_storable_text() -> None:
    # The location and a discriminator's tag come from the body: U+0000 or a lone surrogate
    # in the reason broke the inbox insert on PostgreSQL.
    started = {"conversation": "c", "visitor": "v", "attributes": {"k\u0000\ud800": 1}}
    commission = {"commission": {"mode": "\u0000\udc00"}}
    for event in (
        envelope("conversation.started", data=started),
        envelope("tenant.updated", data=commission),
    ):
        with pytest.raises(InvalidEvent) as rejected:
            parse_event(body(event))
        assert "\x00" not in rejected.value.reason
        rejected.value.reason.encode("utf-8")


def test_best_effort_identity_keeps_only_storable_strings_of_utf8_bodies() -> None:
    event = envelope()
    assert best_effort_identity(json.dumps(event).encode("utf-16")) == (None, None, None)
    odd = {"tenant": "t", "id": "e\u0000", "type": "x\ud800"}
    assert best_effort_identity(json.dumps(odd).encode()) == ("t", None, None)


def test_best_effort_identity_reads_what_it_can() -> None:
    assert best_effort_identity(b'{"tenant": "t", "id": 5, "type": "x"}') == ("t", None, "x")
    assert best_effort_identity(b"garbage") == (None, None, None)


def an_explanation(last_assigned_at: datetime | None = None) -> dict[str, Any]:
    candidate = {"respondent": "r1", "load": 0, "slots": 2, "last_assigned_at": last_assigned_at}
    return {
        "rule": "all",
        "target": 0,
        "skipped": [],
        "candidates": [candidate],
        "eligible": 1,
        "ineligible": {"excluded": 0, "unavailable": 3, "full": 1},
    }


def test_decisions_get_deterministic_ids_and_rfc3339_times() -> None:
    at = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    data = {
        "conversation": "c1",
        "respondent": "r1",
        "group": "G",
        "cause": "new",
        "comment": None,
        "from_respondent": None,
        "explain": an_explanation(at.replace(microsecond=5)),
    }
    first = make_decision("t", "e1", 0, at, "conversation.assigned", data)
    again = make_decision("t", "e1", 0, at, "conversation.assigned", data)
    other = make_decision("t", "e1", 1, at, "conversation.assigned", data)
    assert first == again and first["id"] != other["id"]
    assert first["time"] == "2026-11-22T10:00:00Z" and first["causationid"] == "e1"
    assert "comment" not in first["data"]
    shown = first["data"]["explain"]["candidates"][0]
    assert shown["last_assigned_at"] == "2026-11-22T10:00:00.000005Z"  # times at any depth
    assert format_time(at.replace(microsecond=5)) == "2026-11-22T10:00:00.000005Z"


def test_a_transfer_decision_carries_comment_and_from_respondent() -> None:
    at = datetime(2026, 11, 22, 10, tzinfo=UTC)
    data = {
        "conversation": "c1",
        "respondent": "b",
        "group": "G",
        "cause": "transfer",
        "comment": None,
        "from_respondent": "a",
        "explain": an_explanation(),
    }
    decision = make_decision("t", "e1", 0, at, "conversation.assigned", data)
    assert decision["data"]["comment"] is None and decision["data"]["from_respondent"] == "a"


def test_a_decision_that_does_not_fit_its_model_is_a_bug() -> None:
    with pytest.raises(ValueError):
        make_decision(
            "t",
            "e",
            0,
            datetime.now(UTC),
            "conversation.queued",
            {"conversation": "c", "group": "G", "position": 0},
        )


def test_committed_json_schemas_are_current(tmp_path: Path) -> None:
    for fresh in export_all(tmp_path):
        committed = JSON_DIR / fresh.name
        assert committed.exists(), f"{committed} missing: run python -m schemas.export"
        assert committed.read_text() == fresh.read_text(), "stale: run python -m schemas.export"


@pytest.mark.parametrize("recursion_limit", [1000, 5000])
def test_how_deep_a_body_may_nest_does_not_depend_on_the_process(recursion_limit: int) -> None:
    # Found by the gateway fuzz through the broker: a body nested 1,970 deep was "nested too
    # deeply" in the gateway and "Expecting value" under hypothesis (a higher recursion
    # limit), and its tenant and id were read in one process and not the other
    deep = b'{"tenant": "shop-1", "id": "e1", "x": ' + b"[" * 1970 + b"]" * 1970 + b"}"
    unclosed = b"[" * 1970
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit)
    try:
        for body in (deep, unclosed):
            with pytest.raises(InvalidEvent) as rejected:
                parse_event(body)
            assert rejected.value.reason == "invalid JSON: nested too deeply (more than 64 levels)"
        assert best_effort_identity(deep) == (None, None, None)
    finally:
        sys.setrecursionlimit(limit)


def test_nesting_up_to_the_limit_is_fine_and_brackets_in_strings_do_not_count() -> None:
    event = envelope(data={"conversation": "c1", "x": _nested(62), "y": "[" * 100})
    assert to_command(parse_event(body(event))) == commands.ConversationClosed("c1")


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_one_level_past_the_limit_is_rejected_however_few_brackets_it_takes() -> None:
    # The bracket count decides without a scan up to MAX_DEPTH brackets: 63 levels of
    # arrays in the data object (itself level 2) make 65.
    event = envelope(data={"conversation": "c1", "x": _nested(63)})
    with pytest.raises(InvalidEvent) as rejected:
        parse_event(body(event))
    assert rejected.value.reason == "invalid JSON: nested too deeply (more than 64 levels)"
