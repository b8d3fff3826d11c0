"""Maps the domain's dataclasses onto the tables, so the domain never imports SQLAlchemy."""

from __future__ import annotations

import threading

from sqlalchemy.orm import registry

from chatroute.domain import model
from chatroute.store import tables

mapper_registry = registry()
_mapped = threading.Lock()
_done = False


def start_mappers() -> None:
    """Map once per process; later calls do nothing."""
    global _done
    with _mapped:
        if _done:
            return
        _map_all()
        _done = True


def _map_all() -> None:
    m = mapper_registry.map_imperatively
    m(model.TenantSettings, tables.tenants)
    m(model.Respondent, tables.respondents, version_id_col=tables.respondents.c.version)
    m(model.Group, tables.groups)
    m(model.Rule, tables.rules, properties={"group": tables.rules.c.group_id})
    m(
        model.Conversation,
        tables.conversations,
        properties={"group": tables.conversations.c.group_id},
    )
    m(model.QueueEntry, tables.queue_entries, properties={"group": tables.queue_entries.c.group_id})
    m(
        model.PendingHold,
        tables.pending_holds,
        properties={"group": tables.pending_holds.c.group_id},
    )
    m(model.Contact, tables.contacts, properties={"group": tables.contacts.c.group_id})
    m(model.Timer, tables.timers)
