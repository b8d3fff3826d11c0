"""Inbound events of the wire contract (CONTRACT.md "Events in") as pydantic v2 models."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from itertools import accumulate
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chatroute.domain import hours
from chatroute.domain.commands import COMMANDS, Command
from chatroute.errors import InvalidEvent

MAX_EVENT_BYTES = 65536
MAX_DEPTH = 64  # nesting of arrays and objects; the contract's deepest is 5
TOO_DEEP = f"invalid JSON: nested too deeply (more than {MAX_DEPTH} levels)"
# A string, or what is left of an unterminated one: each try matches, so the scan is linear.
_STRING = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"

# Stored integers are 32-bit columns; times leave room for 68 years of reassign_after_s.
INT32_MAX = 2**31 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; a lone surrogate (a "\ud800" escape) is refused
    # by pydantic's own str check before this runs.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the character U+0000")
    return value


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise PydanticCustomError(
            "time_range", "must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z"
        )
    return value


Id = Annotated[str, Field(min_length=1, max_length=200, strict=True), AfterValidator(_storable)]
Text = Annotated[str, Field(max_length=10_000, strict=True), AfterValidator(_storable)]
Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Moment = Annotated[AwareDatetime, AfterValidator(_in_range)]


class Data(BaseModel):
    """Base of every event's ``data``: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RespondentUpdated(Data):
    respondent: Id
    groups: list[Id]
    slots: Count
    name: Text | None = None


class RespondentStatus(Data):
    respondent: Id
    status: Literal["available", "unavailable"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    attribute: Id
    op: Literal["eq", "in", "prefix", "contains"]
    value: Text | list[Text]

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' takes a list of strings as value")
        if self.op != "in" and not isinstance(self.value, str):
            raise ValueError(f"op {self.op!r} takes a string as value")
        return self


class Target(BaseModel):
    """One target of a rule (contract v2): its group, and how long a conversation waits in
    its queue before trying the next target (absent: it waits there)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    group: Id
    wait_s: Annotated[StrictInt, Field(gt=0, le=INT32_MAX)] | None = None


class RuleUpdated(Data):
    rule: Id
    group: Id | None = None
    targets: Annotated[list[Target], Field(min_length=1)] | None = None
    priority: Annotated[StrictInt, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exactly_one_of_group_and_targets(self) -> RuleUpdated:
        if (self.group is None) == (self.targets is None):
            raise ValueError("exactly one of group and targets is required")
        return self


class RuleDeleted(Data):
    rule: Id


class PercentCommission(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    mode: Literal["percent"]
    rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class PerContactCommission(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    mode: Literal["per_contact"]
    amount: Money


Commission = Annotated[PercentCommission | PerContactCommission, Field(discriminator="mode")]


Seconds = Annotated[StrictInt, Field(gt=0, le=INT32_MAX)]


class TenantUpdated(Data):
    """Fields left out keep their value; ``answer_within_s`` and ``close_after_idle_s`` take
    null to turn them off (the commands tell left out from null)."""

    reassign_after_s: Count | None = None
    commission: Commission | None = None
    # How far an event's own time is trusted from when it was received (contract v2, Time).
    clock_skew_s: Count | None = None
    sticky_within_s: Count | None = None
    answer_within_s: Seconds | None = None
    pause_on_no_answer: StrictBool | None = None
    close_after_idle_s: Seconds | None = None


def _valid_hours(value: Any) -> Any:
    try:
        parsed = hours.parse(value)
    except hours.InvalidHours as error:
        # The field's path is already "data.hours": "hours.weekly.mon: ..." -> "weekly.mon: ..."
        reason = error.reason.removeprefix("hours").lstrip(".: ")
        raise PydanticCustomError("invalid_hours", "{reason}", {"reason": reason}) from None
    return None if parsed is None else parsed.to_json()


_TIME = {"type": "string", "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"}
_INTERVAL = {"type": "array", "prefixItems": [_TIME, _TIME], "minItems": 2, "maxItems": 2}
HOURS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "description": "Local wall-clock intervals [start, end) per day in an IANA zone",
            "properties": {
                "timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris"},
                "weekly": {
                    "type": "object",
                    "properties": {
                        day: {"type": "array", "items": _INTERVAL} for day in hours.DAYS
                    },
                    "additionalProperties": False,
                },
                "closed": {"type": "array", "items": {"type": "string", "format": "date"}},
            },
            "required": ["timezone"],
        },
        {"type": "null"},
    ],
    "default": None,
    "title": "Hours",
}


class GroupUpdated(Data):
    """A group's settings (contract v2); fields left out keep their value, null resets."""

    group: Id
    hours: Annotated[
        dict[str, Any] | None, AfterValidator(_valid_hours), WithJsonSchema(HOURS_SCHEMA)
    ] = None
    max_queue: Count | None = None


Priority = Annotated[StrictInt, Field(ge=-100, le=100)]


class ConversationStarted(Data):
    conversation: Id
    visitor: Id
    attributes: dict[str, Text] = Field(default_factory=dict)
    priority: Priority = 0


class ConversationPrioritized(Data):
    conversation: Id
    priority: Priority


class MessagePosted(Data):
    conversation: Id
    author: Literal["visitor", "respondent"]
    respondent: Id | None = None

    @model_validator(mode="after")
    def _respondent_when_author_is(self) -> MessagePosted:
        if self.author == "respondent" and self.respondent is None:
            raise ValueError("respondent is required when author is 'respondent'")
        return self


class VisitorPresence(Data):
    conversation: Id
    online: StrictBool


class ConversationTransferred(Data):
    conversation: Id
    respondent: Id
    to_respondent: Id | None = None
    to_group: Id | None = None
    comment: Text | None = None

    @model_validator(mode="after")
    def _exactly_one_target(self) -> ConversationTransferred:
        if (self.to_respondent is None) == (self.to_group is None):
            raise ValueError("exactly one of to_respondent and to_group is required")
        return self


class ConversationSnoozed(Data):
    conversation: Id
    respondent: Id
    until: Moment | None = None
    keep: StrictBool = True


class ConversationClosed(Data):
    conversation: Id
    by: Id | None = None


class ConversationRated(Data):
    conversation: Id
    score: Annotated[StrictInt, Field(ge=1, le=5)]


class ConversationSale(Data):
    conversation: Id
    amount: Money
    currency: Annotated[str, Field(max_length=16), AfterValidator(_storable)] | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("amount must be a number")
        return value


DATA_MODELS: dict[str, type[Data]] = {
    "respondent.updated": RespondentUpdated,
    "respondent.status": RespondentStatus,
    "rule.updated": RuleUpdated,
    "rule.deleted": RuleDeleted,
    "tenant.updated": TenantUpdated,
    "group.updated": GroupUpdated,
    "conversation.started": ConversationStarted,
    "conversation.prioritized": ConversationPrioritized,
    "message.posted": MessagePosted,
    "visitor.presence": VisitorPresence,
    "conversation.transferred": ConversationTransferred,
    "conversation.snoozed": ConversationSnoozed,
    "conversation.closed": ConversationClosed,
    "conversation.rated": ConversationRated,
    "conversation.sale": ConversationSale,
}
EventType = Literal[
    "respondent.updated",
    "respondent.status",
    "rule.updated",
    "rule.deleted",
    "tenant.updated",
    "group.updated",
    "conversation.started",
    "conversation.prioritized",
    "message.posted",
    "visitor.presence",
    "conversation.transferred",
    "conversation.snoozed",
    "conversation.closed",
    "conversation.rated",
    "conversation.sale",
]


class Envelope(BaseModel):
    """The CloudEvents 1.0 structured-mode envelope; extension attributes are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    specversion: Literal["1.0"]
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=1000, strict=True)]
    type: EventType
    time: Moment
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN, strict=True)]
    data: dict[str, Any]


class Event(BaseModel):
    """A valid event: the envelope's fields with ``data`` typed for its ``type``."""

    model_config = ConfigDict(frozen=True)
    id: str
    source: str
    type: str
    time: datetime
    tenant: str
    data: Data


def parse_event(body: bytes | str) -> Event:
    """Validate ``body``; raises ``InvalidEvent`` with a precise reason, and nothing else."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than 64 KiB ({len(raw)} bytes)")
    document = _json_object(raw)
    envelope = _validated(Envelope, document, "")
    data = _validated(DATA_MODELS[envelope.type], envelope.data, "data.")
    return Event(
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=envelope.time,
        tenant=envelope.tenant,
        data=data,
    )


def _json_object(raw: bytes) -> dict[str, Any]:
    document = parse_json(raw, "body")
    if not isinstance(document, dict):
        raise InvalidEvent(f"an event is a JSON object, not {type(document).__name__}")
    return document


def parse_json(raw: bytes, what: str) -> Any:
    """The JSON value of ``raw`` (``what`` names it in a reason: "body is not UTF-8"), read as
    an event's body is; raises ``InvalidEvent``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"{what} is not UTF-8: {error.reason} at byte {error.start}") from None
    if too_deep(text):
        raise InvalidEvent(TOO_DEEP)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # not reached: too_deep is far below any recursion limit
        raise InvalidEvent(TOO_DEEP) from None
    except ValueError as error:
        raise InvalidEvent(f"invalid JSON: {error}") from None


def too_deep(text: str) -> bool:
    """Whether ``text``'s arrays and objects nest deeper than ``MAX_DEPTH`` (brackets in
    strings aside). Checked before parsing: where ``json.loads`` gives up depends on the
    process's recursion limit and stack, and the same body must get the same reason in
    every process (the gateway, replay)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # the common case, without the scan: nesting needs as many brackets
    brackets = _BRACKET.findall(_STRING.sub("", text))
    if len(brackets) <= MAX_DEPTH:
        return False
    steps = (1 if bracket in "[{" else -1 for bracket in brackets)
    return max(accumulate(steps)) > MAX_DEPTH


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], document: Any, prefix: str) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InvalidEvent(_reason(error, prefix)) from None
    except RecursionError:
        raise InvalidEvent(f"{prefix or 'event'}: nested too deeply") from None


def _reason(error: ValidationError, prefix: str) -> str:
    """The first problem, as "field.path: message" (the envelope's type names the list)."""
    first = error.errors(include_url=False, include_input=False)[0]
    parts = [_printable(str(part))[:60] for part in first["loc"] if not _is_union_tag(part)]
    location = ".".join(parts)
    message = _printable(_message(first))
    return f"{prefix}{location}: {message}" if location else f"{prefix.rstrip('.')}: {message}"


def _message(first: Any) -> str:
    if first["type"] == "missing":
        return "field required"
    if first["loc"] == ("type",) and first["type"] == "literal_error":
        return "unknown event type"
    if first["type"] == "string_unicode":
        return "not valid Unicode (a lone surrogate escape such as \\ud800)"
    if first["loc"] == ("tenant",) and first["type"] == "string_pattern_mismatch":
        return "letters, digits, '-' and '_' only, at most 100 (it is part of a routing key)"
    return str(first["msg"])


def _printable(text: str) -> str:
    """``text`` with U+0000 and lone surrogates escaped: a reason is stored and published,
    and a dict key or a tag in it comes from the body."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        "[" in part or part in ("str", "list[str]", "percent", "per_contact")
    )


def to_command(event: Event) -> Command:
    """The domain command for a valid event (plain dicts and lists, no pydantic). Fields the
    event left out take the command's defaults: where null means something (a setting
    turned off), the command tells it from left out."""
    fields = event.data.model_dump(exclude_unset=True)
    return COMMANDS[event.type](**fields)


def canonical_json(body: str) -> str:
    """``body``'s JSON value written one way (keys sorted, no spaces, ASCII), or ``body``
    itself when it is not JSON: two bodies are the same event when these are equal. Types stay
    apart (``1``, ``1.0`` and ``true`` differ, as validation tells them apart)."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return body


def best_effort_identity(body: bytes | str) -> tuple[str | None, str | None, str | None]:
    """(tenant, id, type) from any body, each None when absent or not a string a database
    can store (U+0000, lone surrogates); never raises. A body that is not UTF-8 has none
    (``json.loads`` alone would read UTF-16 too, whose text is full of U+0000)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        document = None if too_deep(text) else json.loads(text)
    except (ValueError, RecursionError):
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    return tuple(_string(document.get(key)) for key in ("tenant", "id", "type"))  # type: ignore[return-value]


def _string(value: Any) -> str | None:
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return None
    return value
