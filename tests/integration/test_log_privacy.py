"""Logs hold ids, never what people wrote or are: no comment, name, attribute value, e-mail
address, message text or raw body reaches a log line, even at DEBUG and even when the event is
rejected for that very value (a reason may quote it; the log gets only the reason's kind)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import Events, jsonl
from tests.integration.test_cli import chatroute

EMAIL = "alice.secret@example.com"
COMMENT = "Comment-7q2: call her back"
NAME = "Name-7q2 Surname"
ATTRIBUTE = "https://shop.example/Attribute-7q2"
TEXT = "Text-7q2 my order never came"
BODY = "Raw-Body-7q2"
PRIVATE = [EMAIL, COMMENT, NAME, ATTRIBUTE, TEXT, BODY, "7q2"]


def private_day() -> tuple[Events, list[bytes]]:
    """A day whose valid events carry private values, and events rejected because of one."""
    shop = Events("shop-1")
    shop.rule("all", "G", conditions=[{"attribute": "email", "op": "contains", "value": EMAIL}])
    for rid in ("a", "b"):
        shop.event("respondent.updated", respondent=rid, groups=["G"], slots=2, name=NAME)
        shop.event("respondent.status", respondent=rid, status="available")
    shop.event("conversation.started", conversation="c1", visitor="v1",
               attributes={"email": EMAIL, "url": ATTRIBUTE})  # fmt: skip
    shop.event("message.posted", conversation="c1", author="visitor", text=TEXT)
    shop.event("conversation.transferred", conversation="c1", respondent="a",
               to_respondent="b", comment=COMMENT)  # fmt: skip
    shop.event("conversation.transferred", conversation="c1", respondent="b",
               to_respondent="nobody", comment=COMMENT)  # fmt: skip
    # Rejected for the private value itself
    shop.event("tenant.updated", commission={"mode": EMAIL, "rate": 0.1})
    shop.event("conversation.rated", conversation="c1", score=EMAIL)
    shop.event("respondent.status", respondent="a", status=EMAIL)
    shop.event("conversation.started", conversation="c2", visitor="v2", attributes={EMAIL: 5})
    shop.event("message.posted", conversation="c9", author="visitor", text=TEXT)  # never starts
    garbage = [
        json.dumps({"tenant": "shop-1", "id": "garbage-1", "type": EMAIL}).encode(),
        json.dumps({"tenant": EMAIL, "id": "garbage-2", "type": "conversation.closed"}).encode(),
        f"not json {BODY} {EMAIL}".encode(),
    ]
    return shop, garbage


def event_id(shop: Events, type_: str) -> str:
    return str(next(event["id"] for event in shop.lines if event["type"] == type_))


def test_no_private_value_reaches_the_logs(tmp_path: Path) -> None:
    # Given a day full of private values, some events rejected because of them
    shop, garbage = private_day()
    (tmp_path / "day.jsonl").write_bytes(jsonl(shop.lines) + b"\n".join(garbage) + b"\n")
    # When it is replayed with every log line on
    env = {"CHATROUTE_LOG_LEVEL": "DEBUG", "CHATROUTE_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    result = chatroute("replay", "day.jsonl", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    # Then the logs name the events and what kind of reason rejected them ...
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    rejected = {entry["event_id"]: entry for entry in logs if entry["event"] == "event_rejected"}
    assert rejected[event_id(shop, "tenant.updated")]["reason"] == "data.commission"
    assert rejected[event_id(shop, "conversation.rated")]["reason"] == "data.score"
    assert rejected["garbage-1"]["type"] is None
    assert {"event_applied", "event_waits_for_conversation"} <= {e["event"] for e in logs}
    # ... and hold none of the private values
    for value in PRIVATE:
        assert value not in result.stderr, value
    # (they did reach the frontend, where the contract says so: the transfer's comment, and
    # a reason quoting the value that was rejected)
    assert COMMENT in result.stdout and f"Input tag '{EMAIL}'" in result.stdout
