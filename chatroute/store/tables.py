"""Every table of the engine. Alembic's migrations are the only way they are created."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Seq = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only
Id = String(200)
JsonList: Any = MutableList.as_mutable(JSON())
JsonDict: Any = MutableDict.as_mutable(JSON())
# Values the domain only ever replaces whole (a rule's targets, a group's hours, an overflow
# path): no change tracking, whose weak references cost a loaded row more than the rest of
# it. ``None`` is SQL NULL (the JSON ``null`` otherwise).
JsonValueOrNull = JSON(none_as_null=True)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _tenant() -> Column[str]:
    return Column("tenant", Id, primary_key=True)


tenants = Table(
    "tenants",
    metadata,
    _tenant(),
    Column("reassign_after_s", Integer, nullable=False, server_default="86400"),
    Column("commission_mode", String(20), nullable=False, server_default="percent"),
    Column("commission_rate", Float, nullable=False, server_default="0"),
    Column("commission_amount", Float, nullable=False, server_default="0"),
    Column("counter", BigInteger, nullable=False, server_default="0"),
    # Apart from ``counter`` (which numbers queue places and timers, so decisions stay the
    # same however events are batched): numbers changes for the stats worker.
    Column("stats_counter", BigInteger, nullable=False, default=0, server_default="0"),
    Column("clock_skew_s", Integer, nullable=False, default=5, server_default="5"),
    Column("effective_at", UTCDateTime),
    Column("adjusted_events", BigInteger, nullable=False, default=0, server_default="0"),
    # Routing policy v2: all off by default (model.TenantSettings).
    Column("sticky_within_s", Integer, nullable=False, default=0, server_default="0"),
    Column("answer_within_s", Integer),
    Column("pause_on_no_answer", Boolean, nullable=False, default=False, server_default=false()),
    Column("close_after_idle_s", Integer),
    Column("idle_since", UTCDateTime),
    # Moved on by every applying transaction: a process that kept the tenant's state since its
    # own last one uses it only while this is the version it wrote (store.unit.KeptViews).
    Column("version", BigInteger, nullable=False, default=0, server_default="0"),
)

respondents = Table(
    "respondents",
    metadata,
    _tenant(),
    Column("respondent_id", Id, primary_key=True),
    Column("groups", JsonList, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("name", Text),
    Column("load", Integer, nullable=False),
    Column("last_assigned_at", UTCDateTime),
    Column("version", Integer, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    _tenant(),
    Column("group_id", Id, primary_key=True),
    Column("respondent_id", Id, primary_key=True),
    Column("position", Integer, nullable=False),
)

# Each group's members counted, unavailable and full (``store.census``): explanations count a
# group's ineligible members from it instead of walking the group.
# Which tenants each frontend's RabbitMQ user may publish events for (``chatroute
# publishers``; ``chatroute.intake``). No row at all: every publisher may publish for every
# tenant, the single-tenant default.
publishers = Table(
    "publishers",
    metadata,
    Column("publisher", Id, primary_key=True),
    Column("tenant", Id, primary_key=True),
)

group_census = Table(
    "group_census",
    metadata,
    _tenant(),
    Column("group_id", Id, primary_key=True),
    Column("members", Integer, nullable=False),
    Column("unavailable", Integer, nullable=False),
    Column("full", Integer, nullable=False),
)

# Declared groups (``group.updated``): a group need not be declared to be used.
groups = Table(
    "groups",
    metadata,
    _tenant(),
    Column("group_id", Id, primary_key=True),
    Column("hours", JsonValueOrNull),  # hours.Hours.to_json(); null: always open
    Column("max_queue", Integer),  # null: unlimited
)

rules = Table(
    "rules",
    metadata,
    _tenant(),
    Column("rule_id", Id, primary_key=True),
    Column("group_id", Id, nullable=False),  # the first target's group
    Column("priority", Integer, nullable=False),
    Column("conditions", JsonList, nullable=False),
    Column("targets", JsonValueOrNull),  # null: the v1 form, one target: group_id
)

conversations = Table(
    "conversations",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("visitor", Id, nullable=False),
    Column("attributes", JsonDict, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("state", String(20), nullable=False),
    Column("group_id", Id),
    Column("respondent", Id),
    Column("visitor_online", Boolean, nullable=False),
    Column("unread", Integer, nullable=False),
    Column("snooze_until", UTCDateTime),
    Column("snooze_keep", Boolean, nullable=False),
    Column("rating", Integer),
    Column("sales", Float, nullable=False),
    Column("contacts", Integer, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("queued_at", UTCDateTime),
    # The tenant's stats_counter when a change to it or its contacts last committed: the stats
    # worker folds the conversations above its checkpoint (see ``store.figures``).
    Column("stats_seq", BigInteger, nullable=False, default=0, server_default="0"),
    # When that change committed (the applying transaction's time): how late the stats worker
    # is, read from the oldest conversation above its checkpoint.
    Column("stats_changed_at", UTCDateTime),
    # Routing policy v2 (model.Conversation).
    Column("priority", Integer, nullable=False, default=0, server_default="0"),
    Column("rule_targets", JsonValueOrNull),
    Column("target", Integer),
    Column("rule_id", Id),
    Column("excluded", Id),
    Column("active_at", UTCDateTime),
    Column("unrouted_code", String(20)),
    Column("close_cause", String(20)),
    Column("overflows", JsonValueOrNull),
    Index("ix_conversations_holder", "tenant", "respondent", "state"),
    Index("ix_conversations_stats", "tenant", "stats_seq"),
    Index("ix_conversations_visitor", "tenant", "visitor"),  # sticky routing's lookup
)

queue_entries = Table(
    "queue_entries",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("group_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("priority", Integer, nullable=False, default=0, server_default="0"),
    # model.QueueEntry leaves it None for "queued_at": the view fills it in when enqueued.
    Column("joined_at", UTCDateTime, nullable=False),
    Column("cause", String(20), nullable=False, default="new", server_default="new"),
    Column("excluded", Id),
)
# A group's queue in QueueEntry.order_key order: the head is the first row of the range.
Index(
    "ix_queue_entries_order",
    queue_entries.c.tenant,
    queue_entries.c.group_id,
    queue_entries.c.priority.desc(),
    queue_entries.c.joined_at,
    queue_entries.c.seq,
)

pending_holds = Table(
    "pending_holds",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("respondent", Id, nullable=False),
    Column("group_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("reassign_at", UTCDateTime, nullable=False),
    Column("cause", String(20), nullable=False),
    Column("comment", Text),
    Column("from_respondent", Id),
    Index("ix_pending_holds_order", "tenant", "respondent", "seq"),
)

contacts = Table(
    "contacts",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("respondent", Id, nullable=False),
    Column("group_id", Id),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("end_reason", String(20)),
    Column("answered", Boolean, nullable=False),
    Column("first_response_at", UTCDateTime),
    Column("snoozes", Integer, nullable=False),
    Index("ix_contacts_respondent", "tenant", "respondent"),
)

timers = Table(
    "timers",
    metadata,
    _tenant(),
    Column("timer_id", Id, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("conversation_id", Id, nullable=False),
    Column("due", UTCDateTime, nullable=False),
    Column("respondent", Id),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_timers_due", "state", "due"),  # the sweeper: any tenant's due timers
    Index("ix_timers_tenant_due", "tenant", "state", "due"),  # one tenant's next timers
    Index("ix_timers_conversation", "tenant", "conversation_id"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("tenant", Id, nullable=False),
    Column("event_id", Id, nullable=False),
    Column("type", String(64), nullable=False),
    Column("conversation_id", Id),
    Column("event_time", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("reason", Text),
    Column("applied_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    # Set when the event's effective time differs from ``event_time`` (see domain.timing).
    Column("effective_at", UTCDateTime),
    # A rejected body over 64 KiB keeps only its head in ``body``: its whole size and SHA-256
    # (store.kept); both null when ``body`` is whole.
    Column("body_size", Integer),
    Column("body_sha256", String(64)),
    UniqueConstraint("tenant", "event_id"),
    Index("ix_inbox_unapplied", "state", "tenant", "seq"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("decision_id", String(100), nullable=False, unique=True),
    Column("tenant", Id, nullable=False),
    Column("exchange", String(100), nullable=False),
    Column("routing_key", String(300), nullable=False),
    # The decision's conversation, for ``chatroute history``.
    Column("conversation_id", Id),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Index("ix_outbox_conversation", "tenant", "conversation_id"),
    Index(
        "ix_outbox_unsent",
        "seq",
        postgresql_where=text("sent_at IS NULL"),
        sqlite_where=text("sent_at IS NULL"),
    ),
)

# A tenant's routing state: what applying its events reads and writes.
ROUTING_STATE = (
    tenants,
    respondents,
    memberships,
    group_census,
    groups,
    rules,
    conversations,
    queue_entries,
    pending_holds,
    contacts,
    timers,
)

# ---------------------------------------------------------------- statistics (the stats worker)

stats_checkpoints = Table(
    "stats_checkpoints",
    metadata,
    _tenant(),
    Column("seq", BigInteger, nullable=False),  # conversations up to here are folded
    Column("commission", String(100), nullable=False),  # the terms they were folded under
)

contact_figures = Table(
    "contact_figures",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("respondent", Id, nullable=False),
    Column("group_id", Id),
    Column("started_at", UTCDateTime, nullable=False),
    Column("day", String(10), nullable=False),  # started_at's UTC date, YYYY-MM-DD
    Column("answered", Integer, nullable=False),
    Column("transferred", Integer, nullable=False),
    Column("transferred_to", Id),
    Column("snoozes", Integer, nullable=False),
    Column("rating", Integer),
    Column("commission", Float, nullable=False),
    Column("first_response_s", Float),
    Index("ix_contact_figures_started", "tenant", "started_at"),
)

conversation_figures = Table(
    "conversation_figures",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("group_id", Id),
    Column("started_at", UTCDateTime, nullable=False),
    Column("day", String(10), nullable=False),
    Column("queued", Integer, nullable=False),
    Column("wait_s", Float),
    Column("unrouted", Integer, nullable=False),
    # no_rule | closed | queue_full | wait_timeout; null when routed (contract v2).
    Column("unrouted_code", String(20)),
    Index("ix_conversation_figures_started", "tenant", "started_at"),
)

# A conversation's overflow moves (contract v2): out of ``from_group``'s queue, into
# ``to_group`` (null: no later target took it, ``wait_timeout``). Dated by the conversation.
overflow_figures = Table(
    "overflow_figures",
    metadata,
    _tenant(),
    Column("conversation_id", Id, primary_key=True),
    Column("number", Integer, primary_key=True),  # 1 for its first move, then 2, 3, ...
    Column("from_group", Id, nullable=False),
    Column("to_group", Id),
    Column("started_at", UTCDateTime, nullable=False),
    Column("day", String(10), nullable=False),
    Index("ix_overflow_figures_started", "tenant", "started_at"),
)
