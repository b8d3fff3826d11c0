"""The sweeper: nudges tenants whose timers are due or whose events were left waiting, and
has the stats worker count what changed.

Timers are rows of the store (its ``timers`` table); they fire inside the tenant's applying
transaction, so a nudge is only a hint and a duplicate nudge does nothing. Nothing waits in a
dramatiq delay, so RabbitMQ's ``consumer_timeout`` never meets a long timer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from chatroute import amqp, logs, stats
from chatroute.bootstrap import Runtime
from chatroute.store import due
from workers.broker import OUTAGES, keep_alive, outage

log = logs.get("chatroute.sweeper")


def due_tenants(rt: Runtime, lookahead: timedelta = timedelta(0)) -> dict[str, float]:
    """Tenants to nudge, with how many seconds from now (``store.due.due_tenants``)."""
    return due.due_tenants(rt.engine, rt.clock.now(), lookahead)


def sweep_once(rt: Runtime, nudge: Callable[[str], object]) -> int:
    """Nudge each tenant with work due now."""
    tenants = due_tenants(rt)
    for tenant in sorted(tenants):
        nudge(tenant)
    return len(tenants)


def run(
    rt: Runtime,
    nudge: Callable[[str], object],
    nudge_stats: Callable[[str], object],
    stop: threading.Event,
) -> None:
    """Sweep every ``sweep_interval_s`` until ``stop`` is set; errors are logged, not fatal.
    Every ``stats_interval_s``, tenants with conversations not counted yet get a stats nudge.

    A timer due before the next sweep is nudged by this loop at its due time, so it fires on
    time rather than up to one interval late. The sweeper keeps that short wait itself: a
    dramatiq delay would be released only on its worker's next idle wake-up (up to
    ``dramatiq_worker_timeout``, 1 s by default) and then take another trip through RabbitMQ.
    """
    interval = rt.settings.sweep_interval_s
    log.info("sweeper_started", interval_s=interval)
    counted_at = 0.0
    while not stop.is_set():
        started = time.monotonic()
        if started - counted_at >= rt.settings.stats_interval_s:
            counted_at = started
            _nudge_stats(rt, nudge_stats)
        try:
            waits = due_tenants(rt, timedelta(seconds=interval))
        except OUTAGES as error:
            log.warning("sweep_failed", **outage(error))
            waits = {}
        except Exception:
            log.exception("sweep_failed")
            waits = {}
        for tenant, wait_s in sorted(waits.items(), key=lambda item: (item[1], item[0])):
            if amqp.wait(stop, started + wait_s - time.monotonic(), _keep_nudges_alive):
                return
            if not _nudge(nudge, tenant):
                break  # the broker is away: the next sweep tries every tenant again
        amqp.wait(stop, started + interval - time.monotonic(), _keep_nudges_alive)


def _keep_nudges_alive() -> None:
    """The sweeper nudges through dramatiq's connection of this thread, idle between nudges
    (for as long as no timer comes due)."""
    keep_alive("sweeper")


def _nudge_stats(rt: Runtime, nudge_stats: Callable[[str], object]) -> None:
    try:
        tenants = stats.stale_tenants(rt)
    except OUTAGES as error:
        log.warning("stats_sweep_failed", **outage(error))
        return
    except Exception:
        log.exception("stats_sweep_failed")
        return
    for tenant in tenants:
        if not _nudge(nudge_stats, tenant):
            return


def _nudge(nudge: Callable[[str], object], tenant: str) -> bool:
    """Send the nudge; False when the broker is away (the rest of the sweep would fail too)."""
    try:
        nudge(tenant)
    except OUTAGES as error:
        log.warning("nudge_failed", tenant=tenant, **outage(error))
        return False
    except Exception:
        log.exception("nudge_failed", tenant=tenant)
    return True
