"""The sweeper: nudges tenants whose timers are due or whose events were left waiting.

Timers are rows (``chatroute.store.tables.timers``); they fire inside the tenant's applying
transaction, so a nudge is only a hint and a duplicate nudge does nothing. Nothing waits in a
dramatiq delay, so RabbitMQ's ``consumer_timeout`` never meets a long timer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from chatroute import logs
from chatroute.bootstrap import Runtime
from chatroute.domain.model import TimerState
from chatroute.store import inbox, tables

log = logs.get("chatroute.sweeper")

# An event left unapplied this long was missed by its nudge (a crash) or waits for its
# conversation: nudge its tenant again.
WAITING_AFTER = timedelta(seconds=1)


def due_tenants(rt: Runtime) -> set[str]:
    """Tenants with a timer due now, or an event received a while ago and still unapplied."""
    now = rt.clock.now()
    t = tables.timers.c
    with rt.engine.connect() as connection:
        query = select(t.tenant).where(t.state == TimerState.ARMED, t.due <= now).distinct()
        timers_due = set(connection.scalars(query))
        return timers_due | set(inbox.tenants_waiting(connection, now - WAITING_AFTER))


def sweep_once(rt: Runtime, nudge: Callable[[str], object]) -> int:
    tenants = due_tenants(rt)
    for tenant in sorted(tenants):
        nudge(tenant)
    return len(tenants)


def run(rt: Runtime, nudge: Callable[[str], object], stop: threading.Event) -> None:
    """Sweep every ``sweep_interval_s`` until ``stop`` is set; errors are logged, not fatal."""
    log.info("sweeper_started", interval_s=rt.settings.sweep_interval_s)
    while not stop.is_set():
        try:
            sweep_once(rt, nudge)
        except Exception:
            log.exception("sweep_failed")
        stop.wait(rt.settings.sweep_interval_s)
