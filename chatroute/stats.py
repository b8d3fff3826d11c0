"""``chatroute stats``: per-respondent figures, computed by the domain from stored contacts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import select

from chatroute.bootstrap import Runtime
from chatroute.domain.contacts import respondent_figures
from chatroute.domain.model import Contact, Conversation, Respondent, TenantSettings

COLUMNS = (
    "tenant",
    "respondent",
    "contacts",
    "answered",
    "unanswered",
    "transfers_out",
    "snoozes",
    "satisfaction_count",
    "satisfaction_avg",
    "commission",
    "first_response_avg_s",
)


def respondent_rows(rt: Runtime, tenant: str | None = None) -> list[dict[str, Any]]:
    """One row per respondent (known or with contacts), by tenant then respondent."""
    rows: list[dict[str, Any]] = []
    with rt.sessions.begin() as session:
        query = select(TenantSettings).order_by(TenantSettings.tenant)
        if tenant is not None:
            query = query.where(TenantSettings.tenant == tenant)
        for settings in session.scalars(query):
            rows.extend(_tenant_rows(session, settings))
    return rows


def _tenant_rows(session: Any, settings: TenantSettings) -> list[dict[str, Any]]:
    tenant = settings.tenant
    contacts = list(session.scalars(select(Contact).where(Contact.tenant == tenant)))
    conversations = list(session.scalars(select(Conversation).where(Conversation.tenant == tenant)))
    known = session.scalars(select(Respondent.respondent_id).where(Respondent.tenant == tenant))
    figures = respondent_figures(contacts, conversations, settings)
    everyone = sorted(set(known) | set(figures))
    return [_row(tenant, rid, figures.get(rid)) for rid in everyone]


def _row(tenant: str, respondent: str, figures: Any) -> dict[str, Any]:
    values = asdict(figures) if figures is not None else {}
    row: dict[str, Any] = {"tenant": tenant, "respondent": respondent}
    for column in COLUMNS[2:]:
        row[column] = values.get(
            column, None if column.endswith("_avg") or column.endswith("_s") else 0
        )
    return row


def render_table(rows: list[dict[str, Any]]) -> str:
    """An aligned text table of ``rows`` for people."""
    cells = [list(COLUMNS)] + [[_cell(row[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
