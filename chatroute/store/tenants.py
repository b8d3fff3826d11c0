"""Tenant rows: the intake adds one the first time a tenant's event arrives."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatroute.store import tables
from chatroute.store.inbox import insert_ignoring_duplicates


def ensure(session: Session, tenants: Collection[str]) -> None:
    """Add a row for each of ``tenants`` that has none, without waiting for any other
    transaction that holds an existing row.

    A routing transaction holds its tenant's row locked and changed until it commits; an
    ``INSERT ... ON CONFLICT`` of that tenant would wait for the commit (the uniqueness check
    waits for the row version in progress), so the intake, and every tenant behind it, would
    go at the busiest tenant's pace. A plain SELECT reads committed rows without waiting; only
    the tenants it does not find are inserted, and no routing transaction can hold a row that
    was never committed.
    """
    if not tenants:
        return
    c = tables.tenants.c
    known = set(session.scalars(select(c.tenant).where(c.tenant.in_(tenants))))
    rows = [{"tenant": tenant} for tenant in sorted(set(tenants) - known)]
    insert_ignoring_duplicates(session.connection(), tables.tenants, rows)
