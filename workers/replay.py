"""``chatroute replay``: the workers on the in-process broker, driven by a virtual clock."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from chatroute import bootstrap, service
from chatroute import stats as service_stats
from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.bootstrap import Runtime
from chatroute.clock import VirtualClock
from chatroute.settings import Settings
from chatroute.store import inbox, outbox, tables
from chatroute.store.outbox import OutgoingMessage


@dataclass
class Summary:
    events: int = 0


def replay(
    settings: Settings,
    lines: Iterable[bytes],
    out: IO[str],
    until: datetime | None = None,
    progress: IO[str] | None = None,
) -> Summary:
    """Apply each line in order, firing timers on the virtual clock; decisions go to ``out``."""
    settings = settings.with_(amqp_url=None)
    clock = VirtualClock()
    rt = bootstrap.install(bootstrap.build(settings, clock, migrate=True))
    from workers import broker

    stub = broker.install(settings)
    from workers import routing, stats, timers

    if not isinstance(stub, StubBroker):
        raise RuntimeError("replay needs the in-process broker; another one is installed")
    # Hand-offs to the worker thread happen per line: switch threads sooner than every 5 ms.
    sys.setswitchinterval(0.0002)
    summary = Summary()
    sink = _StdoutSink(out)
    worker = _worker(stub)

    def nudge(tenant: str, final: bool = False) -> None:
        # In-process, a failure is a bug: surface it at once instead of retrying with backoff.
        routing.apply_tenant.send_with_options(
            args=(tenant,), kwargs={"final": final}, max_retries=0
        )

    def settle() -> None:
        stub.join(broker.ROUTING_QUEUE, fail_fast=True)
        worker.join()
        _relay_all(rt, sink)

    swept = clock.now()
    for line in lines:
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue
        summary.events += 1
        moment = _event_time(body)
        if moment is not None:
            clock.advance_to(moment)
        for tenant in service.ingest(rt, [service.Incoming(body)]):
            nudge(tenant)
        if clock.now() > swept:
            # Only a moving clock makes timers due or waiting events expire.
            swept = clock.now()
            timers.sweep_once(rt, nudge)
        settle()
        if progress is not None and summary.events % 500 == 0:
            progress.write(f"\rreplay: {summary.events} events")
    if progress is not None:
        progress.write(f"\rreplay: {summary.events} events, done\n")
    if until is not None:
        clock.advance_to(until)
    timers.sweep_once(rt, nudge)
    settle()
    for tenant in _tenants_with_unapplied(rt):
        nudge(tenant, final=True)
    settle()
    # What the stats worker would do next: count the run, so ``chatroute stats`` shows it.
    for tenant in service_stats.stale_tenants(rt):
        stats.fold_tenant.send_with_options(args=(tenant,), max_retries=0)
    stub.join(broker.STATS_QUEUE, fail_fast=True)
    return summary


_workers: dict[int, Worker] = {}


def _worker(stub: StubBroker) -> Worker:
    """One worker thread per broker and process, reused by every replay in it."""
    if id(stub) not in _workers:
        _workers[id(stub)] = Worker(stub, worker_threads=1)
        _workers[id(stub)].start()
    return _workers[id(stub)]


def _event_time(body: bytes) -> datetime | None:
    try:
        raw = json.loads(body)["time"]
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


def _tenants_with_unapplied(rt: Runtime) -> list[str]:
    c = tables.inbox.c
    with rt.sessions.begin() as session:
        return list(session.scalars(select(c.tenant).where(c.state == inbox.NEW).distinct()))


class _StdoutSink:
    """Prints decisions as JSON lines; a rejected event's kept copy is not a decision."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, messages: list[OutgoingMessage]) -> None:
        for message in messages:
            if message.exchange != DECISIONS_EXCHANGE:
                continue
            self.out.write(message.body.decode() + "\n")
        self.out.flush()


def _relay_all(rt: Runtime, sink: _StdoutSink) -> None:
    with rt.engine.connect() as connection:
        while outbox.relay_once(connection, sink, rt.clock.now()):
            pass
