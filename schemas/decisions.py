"""Outbound decisions of the wire contract (CONTRACT.md "Decisions out") as pydantic models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

# Decision ids are uuid5(NAMESPACE, tenant, cause, index): the same cause, the same ids.
NAMESPACE = uuid.UUID("6f3c1f1e-8d0a-4c55-9b8e-3c1a2f7b9d41")
SOURCE = "chatroute"


# The engine emits exactly the fields of these models ("forbid" catches a bug in what it
# writes), but the exported schema lets a reader take more: new fields may be added without a
# new version (CONTRACT.md, v2), and a frontend validating strictly must not break on them.
OPEN_TO_NEW_FIELDS: dict[str, Any] = {"additionalProperties": True}


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with "Z"; microseconds only when there are some (as ``isoformat``
    writes them: it runs for every time of every decision, and is faster than strftime)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat() + "Z"


# A time of a decision's data, written on the wire by format_time, wherever it is.
Moment = Annotated[AwareDatetime, PlainSerializer(format_time, return_type=str, when_used="json")]


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=OPEN_TO_NEW_FIELDS)


class Skipped(Data):
    """A target of the rule passed over, and why."""

    group: str
    why: Literal["closed", "queue_full"]


class Candidate(Data):
    """A respondent as the choice saw them, before the decision."""

    respondent: str
    load: Annotated[int, Field(ge=0)]
    slots: Annotated[int, Field(ge=0)]
    last_assigned_at: Moment | None  # null: never assigned


class Ineligible(Data):
    """The group's other members, each counted once, under the first reason that applies."""

    excluded: Annotated[int, Field(ge=0)]
    unavailable: Annotated[int, Field(ge=0)]
    full: Annotated[int, Field(ge=0)]


class Explain(Data):
    """Why the decision went where it went (contract v2); figures as before the decision."""

    rule: str | None  # null: not routed by a rule (transfer, wake, reassign, ...) or none matched
    target: Annotated[int, Field(ge=0)] | None  # 0-based index of the rule's target
    skipped: list[Skipped]
    # Up to 3 eligible respondents in choice order, the chosen one first; where no choice was
    # made, the one respondent (or none).
    candidates: Annotated[list[Candidate], Field(max_length=3)]
    eligible: Annotated[int, Field(ge=0)] | None  # null where no choice was made
    ineligible: Ineligible | None


AssignedCause = Literal["new", "queue", "transfer", "wake", "reassign", "overflow", "no_answer"]


class Assigned(Data):
    conversation: str
    respondent: str
    group: str
    cause: AssignedCause
    comment: str | None = None
    from_respondent: str | None = None
    sticky: Literal[True] | None = None  # present (true) only for a sticky assignment
    explain: Explain


class Queued(Data):
    conversation: str
    group: str
    position: Annotated[int, Field(ge=1)]
    # Why it joined the queue (contract v2).
    cause: Literal["new", "transfer", "wake", "reassign", "overflow", "no_answer"]
    explain: Explain


class Pending(Data):
    conversation: str
    respondent: str
    group: str
    reassign_at: Moment


class Snoozed(Data):
    conversation: str
    respondent: str
    until: Moment | None
    keep: bool


class Woken(Data):
    conversation: str
    cause: Literal["timer", "visitor_reply"]


class Unrouted(Data):
    conversation: str
    reason: str
    code: Literal["no_rule", "closed", "queue_full", "wait_timeout"]
    explain: Explain


class Closed(Data):
    """The engine closed it (contract v2: idle close)."""

    conversation: str
    cause: Literal["idle"]


class Paused(Data):
    """A respondent made unavailable by the engine (contract v2: answer deadline)."""

    respondent: str
    reason: Literal["no_answer"]
    conversation: str  # the one whose answer deadline they missed


class VisitorNotify(Data):
    conversation: str
    unread: Annotated[int, Field(ge=0)]


class EventRejected(Data):
    event_id: str | None
    type: str | None
    reason: str


DATA_MODELS: dict[str, type[Data]] = {
    "conversation.assigned": Assigned,
    "conversation.queued": Queued,
    "conversation.pending": Pending,
    "conversation.snoozed": Snoozed,
    "conversation.woken": Woken,
    "conversation.unrouted": Unrouted,
    "conversation.closed": Closed,
    "respondent.paused": Paused,
    "visitor.notify": VisitorNotify,
    "event.rejected": EventRejected,
}
DecisionType = Literal[
    "conversation.assigned",
    "conversation.queued",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.woken",
    "conversation.unrouted",
    "conversation.closed",
    "respondent.paused",
    "visitor.notify",
    "event.rejected",
]


class Decision(BaseModel):
    """The CloudEvents 1.0 envelope of a decision."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=OPEN_TO_NEW_FIELDS)
    specversion: Literal["1.0"]
    id: str
    source: str
    type: DecisionType
    time: AwareDatetime  # written by format_time; typed for the schema's "date-time"
    tenant: str
    causationid: str
    datacontenttype: Literal["application/json"]
    data: dict[str, Any]


def decision_id(tenant: str, cause_id: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{tenant}\x1f{cause_id}\x1f{index}"))


def make_decision(
    tenant: str, cause_id: str, index: int, time: datetime, type: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The JSON-ready envelope of one decision; ``data`` must fit the type's model."""
    model = DATA_MODELS[type].model_validate(data)
    dumped = model.model_dump(mode="json")
    if type == "conversation.assigned":
        if dumped["cause"] != "transfer":
            dumped.pop("comment")
            dumped.pop("from_respondent")
        if dumped["sticky"] is None:
            dumped.pop("sticky")
    return {
        "specversion": "1.0",
        "id": decision_id(tenant, cause_id, index),
        "source": SOURCE,
        "type": type,
        "time": format_time(time),
        "tenant": tenant,
        "causationid": cause_id,
        "datacontenttype": "application/json",
        "data": dumped,
    }
