"""``chatroute route``: who would get a new conversation with these attributes now, seen
through the engine's own routing in a read-only transaction (``store.unit.looking``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chatroute.bootstrap import Runtime
from chatroute.domain import lifecycle
from chatroute.domain.commands import ConversationStarted
from chatroute.store.unit import looking
from schemas.decisions import make_decision

PLACED = ("conversation.assigned", "conversation.queued", "conversation.unrouted")


def route(
    rt: Runtime,
    tenant: str,
    attributes: Mapping[str, str],
    at: datetime,
    *,
    visitor: str | None = None,
    priority: int = 0,
) -> dict[str, Any] | None:
    """The contract's answer for a conversation started at ``at``; None for an unknown tenant.
    Raises ``errors.Rejected`` where the event itself would be rejected (a bad priority)."""
    # Ids no frontend sends: the conversation is new, and without --visitor it has no past.
    preview = f"chatroute-route:{uuid.uuid4()}"
    started = ConversationStarted(preview, visitor or preview, dict(attributes), priority)
    with looking(rt.sessions, tenant) as view:
        if view is None:
            return None
        decided = lifecycle.handle(view, started, at)
    placed = next(d for d in decided if d.type in PLACED)
    data = make_decision(tenant, preview, 0, at, placed.type, placed.data)["data"]
    why = data["explain"]
    answer = {
        "rule": why["rule"],
        "target": why["target"],
        "group": data.get("group"),
        "respondent": data.get("respondent"),
        "position": data.get("position"),
    }
    if "code" in data:
        answer["code"] = data["code"]
    return answer | {"explain": why}
