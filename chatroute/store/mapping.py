"""Maps the domain's dataclasses onto the tables, so the domain never imports SQLAlchemy."""

from __future__ import annotations

import threading
from dataclasses import fields

from sqlalchemy import Table
from sqlalchemy.orm import registry

from chatroute.domain import model
from chatroute.store import census, tables

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
        census.watch()
        _done = True


# The domain's fields whose columns have another name; every other field is its column.
COLUMN_OF = {"group": "group_id"}
# Each class of the domain's state and its table.
TABLE_OF: dict[type, Table] = {
    model.TenantSettings: tables.tenants,
    model.Respondent: tables.respondents,
    model.Group: tables.groups,
    model.Rule: tables.rules,
    model.Conversation: tables.conversations,
    model.QueueEntry: tables.queue_entries,
    model.PendingHold: tables.pending_holds,
    model.Contact: tables.contacts,
    model.Timer: tables.timers,
}


def _map_all() -> None:
    for kind, table in TABLE_OF.items():
        own = {f.name for f in fields(kind)}
        renamed = {f: table.c[c] for f, c in COLUMN_OF.items() if f in own}
        # A respondent's version guards slot accounting against a concurrent writer.
        version = table.c.version if kind is model.Respondent else None
        mapper_registry.map_imperatively(kind, table, properties=renamed, version_id_col=version)
