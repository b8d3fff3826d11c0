"""Decision writing: domain decisions become outbox rows with deterministic ids (a decision
made again, by a retry or a replay, gets the same id), and a rejected event its
``event.rejected`` decision and the copy of its body kept in ``chat.events.rejected``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chatroute import logs
from chatroute.domain.model import Decision
from chatroute.errors import reason_kind
from chatroute.store import outbox
from chatroute.store.kept import keep
from schemas.decisions import make_decision
from schemas.events import DATA_MODELS

log = logs.get("chatroute.decisions")

# The tenant of a message whose own cannot be used (unreadable, or not a valid name).
UNKNOWN_TENANT = "unknown"


@dataclass
class DecisionWriter:
    """Turns domain decisions into outbox rows with deterministic ids, in decision order."""

    created_at: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(
        self, tenant: str, cause_id: str, time: datetime, decisions: Sequence[Decision]
    ) -> None:
        for index, decision in enumerate(decisions):
            envelope = make_decision(tenant, cause_id, index, time, decision.type, decision.data)
            self.rows.append(outbox.decision_row(envelope, self.created_at))
        self.count += len(decisions)

    def reject(
        self,
        tenant: str,
        event_id: str | None,
        type_: str | None,
        body: bytes,
        reason: str,
        time: datetime,
        cause: str | None = None,
        origin: outbox.Origin | None = None,
    ) -> None:
        """``cause`` (the decision's causationid) defaults to the event's id. Without a usable
        tenant an id identifies nothing: garbage bodies that share one are different messages,
        each kept; a repeat of the same bytes (the whole body, however much is kept) is one."""
        kept = keep(body)
        if cause is None:
            keyed = event_id is not None and tenant != UNKNOWN_TENANT
            cause = event_id if keyed else "body:" + kept.sha256
        data = {"event_id": event_id, "type": type_, "reason": reason}
        envelope = make_decision(tenant, cause, 0, time, "event.rejected", data)
        self.rows.append(outbox.decision_row(envelope, self.created_at))
        self.rows.append(
            outbox.rejected_copy_row(envelope["id"], tenant, kept, reason, self.created_at, origin)
        )
        self.count += 1
        # The reason's kind only: a reason may quote a value of the event (see reason_kind);
        # the whole reason is in the decision and on the inbox row.
        kind = type_ if type_ in DATA_MODELS else None  # a garbage body's "type" is anything
        log.warning(
            "event_rejected",
            tenant=tenant,
            event_id=event_id,
            type=kind,
            reason=reason_kind(reason),
        )
