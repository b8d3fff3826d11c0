"""Backpressure: a backlog of events while the workers are stopped, then the drain.

    python -m benchmarks.backpressure --events 200000

On private RabbitMQ, PostgreSQL and Redis servers (``tests/chaos/servers.py``), with the
gateway and the sweeper running but no routing or stats worker, five publishers send
``--events`` events (a simulated day of five sites) as fast as the broker confirms them. The
gateway records them in the inbox; nothing applies them. Every second the run samples each
process's memory (PSS: shared pages counted once, so PostgreSQL's shared buffers are not
counted once per backend). Then four routing worker processes and the stats worker start, and
the run measures how long they take to apply every event and send every decision.

It prints, per process kind, the memory when a quarter, half, three quarters and all of the
events were published, the peak while the backlog waited and the peak during the drain: a
bounded process keeps the same figure however long the backlog grows.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import func, select, text

from benchmarks.workload import day
from chatroute.amqp import GATEWAY_QUEUE
from chatroute.publish import Publisher
from chatroute.store import db, tables
from tests.chaos.servers import Servers
from tests.e2e.harness import Pipeline
from workers.broker import ROUTING_QUEUE, STATS_QUEUE

WORKER = ("worker", "--processes", "1", "--threads", "2", "--queues", "chatroute.routing")
STATS = ("worker", "--processes", "1", "--threads", "1", "--queues", "chatroute.stats")


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children[ppid].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def listener(port: int) -> int:
    """The pid of the process listening on ``port`` on 127.0.0.1."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split("pid=")[1].split(",")[0])


class Sampler:
    """Samples the memory of each kind of process once a second, in MiB, and the depth of
    the broker's queues."""

    def __init__(self, kinds: dict[str, list[int]], amqp_url: str) -> None:
        self.kinds = kinds  # kind -> root pids (each counted with its descendants)
        self.amqp_url = amqp_url
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.depths: dict[str, int] = defaultdict(int)  # the deepest each queue was
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.now()))
            self._depths()
            self._stop.wait(1.0)

    def _depths(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError:
            return
        for queue in (GATEWAY_QUEUE, ROUTING_QUEUE, STATS_QUEUE):
            try:  # a queue appears when its first consumer or message declares it
                depth = connection.channel().queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker:
                depth = 0
            self.depths[queue] = max(self.depths[queue], depth)
        connection.close()

    def now(self) -> dict[str, float]:
        return {
            kind: sum(pss_kib(p) for root in roots for p in descendants(root)) / 1024
            for kind, roots in self.kinds.items()
        }

    def peak(self, since: float, until: float) -> dict[str, float]:
        peak: dict[str, float] = defaultdict(float)
        for at, sample in self.samples:
            if since <= at <= until:
                for kind, mib in sample.items():
                    peak[kind] = max(peak[kind], mib)
        return dict(peak)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def workload(events: int) -> dict[str, list[bytes]]:
    """``events`` events of five sites starting now (no timer falls due), by tenant: as many
    conversations as it takes, over two hours, so that most are answered, not queued."""
    conversations = events // 5
    while True:
        generated = day(
            conversations,
            tenants=5,
            respondents=500,
            span=timedelta(hours=2),
            start=datetime.now(UTC),
        )
        if len(generated) >= events:
            break
        conversations = int(conversations * events / len(generated) * 1.02)
    by_tenant: dict[str, list[bytes]] = defaultdict(list)
    for event in generated[:events]:
        by_tenant[event["tenant"]].append(json.dumps(event, separators=(",", ":")).encode())
    return by_tenant


def publish(amqp_url: str, by_tenant: dict[str, list[bytes]], progress: list[int]) -> None:
    def send(bodies: list[bytes]) -> None:
        publisher = Publisher(amqp_url)
        for body in bodies:
            publisher.publish(body)
            progress[0] += 1
        publisher.close()

    threads = [threading.Thread(target=send, args=(b,)) for b in by_tenant.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def counts(engine: Any) -> tuple[int, int, int]:
    """Events recorded, events still unapplied, decisions not sent."""
    i, o = tables.inbox.c, tables.outbox.c
    with engine.connect() as connection:
        recorded = connection.scalar(select(func.count()).select_from(tables.inbox))
        new = connection.scalar(select(func.count()).where(i.state == "new"))
        unsent = connection.scalar(select(func.count()).where(o.sent_at.is_(None)))
    return int(recorded or 0), int(new or 0), int(unsent or 0)


def measure(events: int, say: Any) -> dict[str, Any]:
    servers = Servers()
    servers.start()
    work = Path(tempfile.mkdtemp(prefix="chatroute-backpressure-"))
    pipeline = Pipeline(servers.postgres.url, servers.rabbit.url, work)
    pipeline.env |= {"CHATROUTE_REDIS_URL": servers.redis.url}
    engine = db.make_engine(servers.postgres.url)
    try:
        pipeline.migrate()
        pipeline.spawn("gateway", "gateway")
        pipeline.spawn("sweeper", "sweeper")
        by_tenant = workload(events)
        total = sum(len(b) for b in by_tenant.values())
        servers_pids = {
            "rabbitmq": [listener(servers.rabbit.port)],
            "postgresql": [listener(servers.postgres.port)],
            "redis": [listener(servers.redis.port)],
        }
        sampler = Sampler(
            {
                "gateway": [pipeline.children["gateway"].pid],
                "sweeper": [pipeline.children["sweeper"].pid],
                **servers_pids,
            },
            servers.rabbit.url,
        )
        sampler.start()
        progress = [0]
        say(f"publishing {total} events with no worker running")
        began = time.monotonic()
        publisher = threading.Thread(target=publish, args=(servers.rabbit.url, by_tenant, progress))
        publisher.start()
        quarters: dict[str, dict[str, float]] = {}
        for share in (0.25, 0.5, 0.75, 1.0):
            while progress[0] < share * total and publisher.is_alive():
                time.sleep(0.2)
            quarters[f"{int(share * 100)}%"] = sampler.now()
        publisher.join()
        published_s = time.monotonic() - began
        while counts(engine)[0] < total:
            time.sleep(0.5)
        recorded_s = time.monotonic() - began
        quarters["recorded"] = sampler.now()
        say(
            f"published in {published_s:.0f} s, all recorded in {recorded_s:.0f} s; "
            "starting workers"
        )
        backlog = sampler.peak(began, time.monotonic())
        drain_began = time.monotonic()
        for n in range(4):
            pipeline.spawn(f"worker-{n}", *WORKER)
        pipeline.spawn("stats", *STATS)
        sampler.kinds["workers"] = [pipeline.children[f"worker-{n}"].pid for n in range(4)]
        sampler.kinds["stats worker"] = [pipeline.children["stats"].pid]
        while True:
            _, new, unsent = counts(engine)
            if new == 0 and unsent == 0:
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_began
        drain = sampler.peak(drain_began, time.monotonic())
        with engine.connect() as connection:
            inbox_mb = connection.scalar(text("SELECT pg_total_relation_size('inbox')")) / 2**20
        sampler.stop()
        return {
            "events": total,
            "published_s": round(published_s, 1),
            "recorded_s": round(recorded_s, 1),
            "drain_s": round(drain_s, 1),
            "drain_events_per_s": round(total / drain_s),
            "inbox_mb": round(inbox_mb, 1),
            "memory_mib_at": {k: _rounded(v) for k, v in quarters.items()},
            "peak_mib_backlog": _rounded(backlog),
            "peak_mib_drain": _rounded(drain),
            "deepest_queues": dict(sampler.depths),
        }
    finally:
        pipeline.stop()
        engine.dispose()
        servers.stop()


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in figures.items()}


def report(result: dict[str, Any]) -> None:
    kinds = list(result["peak_mib_drain"])
    columns = [*result["memory_mib_at"], "peak backlog", "peak drain"]
    print(f"{'process (PSS, MiB)':<20}" + "".join(f"{c:>14}" for c in columns))
    for kind in kinds:
        row = [result["memory_mib_at"][c].get(kind) for c in result["memory_mib_at"]]
        row += [result["peak_mib_backlog"].get(kind), result["peak_mib_drain"].get(kind)]
        print(f"{kind:<20}" + "".join(f"{'-' if v is None else v:>14}" for v in row))
    print("deepest queues: " + ", ".join(f"{q} {n}" for q, n in result["deepest_queues"].items()))
    print(
        f"backpressure: events={result['events']} published_s={result['published_s']} "
        f"recorded_s={result['recorded_s']} drain_s={result['drain_s']} "
        f"drain_events_per_s={result['drain_events_per_s']} inbox_mb={result['inbox_mb']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # Stopped by a signal, it still stops its private servers (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args.events, lambda line: print(f"backpressure: {line}", file=sys.stderr))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
