"""What PostgreSQL sees per event: statements, round trips, transactions, rows, WAL bytes.

    python -m benchmarks.pgload                  # 4,000 events of 4 tenants, both shapes
    python -m benchmarks.pgload --events 20000 --json pgload.json

Runs the bench's workload (conversation lifecycles: a start, two messages, a close) through
the engine's own steps in this process, on a fresh PostgreSQL database: the gateway's intake,
the routing transactions, the relay's looks (publishing to nothing: AMQP is not measured
here), in two shapes:

- ``quiet``: every event alone (low load): its own intake, applying transaction and relay
  look;
- ``busy``: the gateway takes 50 events at a time, then each tenant with events applies them
  and the relay takes what they decided (high load: batches amortize the fixed costs).

Per event it reports what the engine sent (statements on both of its engines, pool pings,
BEGIN/COMMIT) and what PostgreSQL did (transactions committed, rows inserted, updated and
deleted, WAL bytes written), from the database's own counters read after every backend of the
run has ended (PostgreSQL counts a backend's rows when it reports them). Run it on an
otherwise idle server: WAL is counted for the whole cluster.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from benchmarks.pipeline import fresh_database, workload
from chatroute import apply, bootstrap, intake, logs
from chatroute.settings import Settings
from chatroute.store import outbox
from tests.e2e.harness import lines

SHAPES = {"quiet": 1, "busy": 50}  # events the gateway takes in at once


def measure(shape: str, events: int, tenants: int, database: str | None = None) -> dict[str, Any]:
    """Per-event figures of ``events`` of ``tenants`` in ``shape``, on ``database`` (an empty
    PostgreSQL database; None: a new one)."""
    database = database or fresh_database()
    rt = bootstrap.build(Settings(database_url=database), migrate=True)
    setup, traffic, decided = workload(tenants, events)
    _run(rt, lines(setup), len(setup))
    sent: Counter[str] = Counter()
    with _counting(rt.engine, sent, main=True), _counting(rt.units.lone, sent, main=False):
        before = _server_counters(database)
        started = time.perf_counter()
        _run(rt, lines(traffic), SHAPES[shape])
        elapsed = time.perf_counter() - started
        rt.engine.dispose()  # every backend ends, and reports its rows
    after = _server_counters(database)
    per = len(traffic)
    figures = {f"{name}_per_event": value / per for name, value in sent.items()}
    figures |= {f"{k}_per_event": (after[k] - before[k]) / per for k in after}
    figures["round_trips_per_event"] = sum(sent.values()) / per
    figures["events_per_s"] = per / elapsed  # one thread, no AMQP: the apply path's own pace
    return {"shape": shape, "events": per, "decisions": decided, **figures}


def _run(rt: bootstrap.Runtime, bodies: list[bytes], at_once: int) -> None:
    """``bodies`` through intake, apply and relay, ``at_once`` per gateway batch."""
    with outbox.leading(rt.engine) as relay:
        assert relay is not None
        for start in range(0, len(bodies), at_once):
            batch = [intake.Incoming(body) for body in bodies[start : start + at_once]]
            for tenant in sorted(intake.ingest(rt, batch)):
                while apply.apply_tenant(rt, tenant):
                    pass
            while outbox.relay_once(relay, lambda _: None, rt.clock.now()):
                pass


@contextmanager
def _counting(engine: Engine, sent: Counter[str], *, main: bool) -> Iterator[None]:
    """Count what ``engine`` sends: statements, and on the main engine (transactions,
    pre-ping) its pings, BEGINs and COMMITs, each a round trip."""
    count = lambda what: lambda *_: sent.update([what])  # noqa: E731
    hooks: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", count("statements"))
    ]
    if main:
        hooks += [
            (engine, "begin", count("begins")),
            (engine, "commit", count("commits")),
            (engine.pool, "checkout", count("pings")),  # each checkout pings first
        ]
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        yield
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)


def _server_counters(database: str) -> dict[str, float]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = connection.execute(
            text(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        ).one()
    engine.dispose()
    names = ("transactions", "rows_inserted", "rows_updated", "rows_deleted", "wal_bytes")
    return dict(zip(names, (float(value) for value in row), strict=True))


def report(results: list[dict[str, Any]]) -> str:
    keys = [k for k in results[0] if k.endswith("_per_event") or k == "events_per_s"]
    rows = [f"{'per event':34}" + "".join(f"{r['shape']:>12}" for r in results)]
    rows += [f"{key.removesuffix('_per_event'):34}" + "".join(f"{r[key]:12.2f}" for r in results)
             for key in keys]  # fmt: skip
    shapes = " ".join(f"{r['shape']}:events={r['events']}" for r in results)
    return "\n".join([*rows, f"pgload: {shapes}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING")
    results = [measure(shape, args.events, args.tenants) for shape in SHAPES]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
