"""Events per second through the real pipeline (RabbitMQ, PostgreSQL, gateway, workers).

The traffic is published while the gateway is down, then the pipeline drains the backlog
(gateway start-up included, about a second): throughput not bounded by the publishers.

    python -m benchmarks.pipeline --processes 1 --processes 4 --events 6000 --tenants 6

Publishes a workload of conversation lifecycles (start, messages, close) for several tenants,
then measures the time from the first publish until every event is applied and every decision
has reached ``chat.decisions``. Prints one line per worker-process count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, text

from tests.builders import Events
from tests.conftest import PG_ADMIN_URL
from tests.e2e.harness import DecisionLog, Pipeline, Vhost, _session_members, lines, wait_until
from tests.e2e.test_pipeline import inbox_states


def workload(tenants: int, events: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Configuration, then lifecycles of 4 events (start, 2 messages, close) per conversation."""
    setup, traffic, decisions = [], [], 0
    per_tenant = events // tenants // 4
    for t in range(tenants):
        shop = Events(f"bench-{t}")
        shop.rule("all", "Support")
        for r in range(20):
            shop.respondent(f"r{r:02d}", ["Support"], slots=5)
        setup += shop.lines
        shop.lines = []
        for n in range(per_tenant):
            conversation = f"c{n:05d}"
            shop.start(conversation)
            shop.event("message.posted", conversation=conversation, author="visitor")
            shop.event(
                "message.posted", conversation=conversation, author="respondent", respondent="r00"
            )
            shop.event("conversation.closed", conversation=conversation)
        traffic += shop.lines
        decisions += per_tenant
    return setup, traffic, decisions


def _settled(database: str, total: int) -> bool:
    states = inbox_states(database)
    return states["new"] == 0 and sum(states.values()) == total


# Coalesced nudges, as deployed (compose.yaml): a database of its own, emptied per run, since
# a claim left by an earlier run's vanished vhost would hold back this run's first nudges.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def with_redis(pipeline: Pipeline) -> Pipeline:
    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    pipeline.env["CHATROUTE_REDIS_URL"] = BENCH_REDIS_URL
    return pipeline


def fresh_database() -> str:
    name = f"chatroute_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def measure(processes: int, threads: int, tenants: int, events: int) -> dict[str, float]:
    vhost, database = Vhost(), fresh_database()
    log_dir = Path(tempfile.mkdtemp(prefix="chatroute-bench-"))
    pipeline = with_redis(
        Pipeline(database, vhost.url, log_dir, processes=processes, threads=threads)
    )
    decisions = DecisionLog(vhost.url)
    setup, traffic, expected = workload(tenants, events)
    pipeline.start()
    try:
        pipeline.publish(lines(setup))
        wait_until(lambda: inbox_states(database)["applied"] == len(setup), 120, "setup")
        total = len(setup) + len(traffic)
        # Published while the gateway is down, so the pipeline drains a backlog: sustained
        # throughput, not the publishers' pace.
        pipeline.stop_gateway()
        publishing = time.monotonic()
        pipeline.publish(lines(traffic), publishers=2)
        published = time.monotonic() - publishing
        pipeline.start_gateway()
        kinds = process_kinds(pipeline)
        before = {kind: cpu_seconds(pids) for kind, pids in kinds.items()}
        started = time.monotonic()
        wait_until(lambda: _settled(database, total), 600, "traffic applied")
        applied = time.monotonic() - started
        wait_until(lambda: len(decisions.decisions) >= expected, 120, "decisions")
        decided = time.monotonic() - started
        cpu = {
            kind: cpu_seconds(pids) - before[kind] for kind, pids in process_kinds(pipeline).items()
        }
    finally:
        pipeline.stop()
        decisions.stop()
        vhost.delete()
    return {
        "processes": processes,
        "events": len(traffic),
        "rejected": inbox_states(database)["rejected"],
        "publish_s": published,
        "applied_s": applied,
        "decided_s": decided,
        "events_per_s": len(traffic) / decided,
        **{f"cpu_ms_per_event_{kind}": 1000 * s / len(traffic) for kind, s in cpu.items()},
    }


def process_kinds(pipeline: Pipeline) -> dict[str, list[int]]:
    """The pids of each process kind: the pipeline's own by session, the servers by name."""
    kinds = {
        name: _session_members([os.getsid(child.pid)]) for name, child in pipeline.children.items()
    }
    for kind, pattern in (("rabbitmq", "beam.smp"), ("postgresql", "^postgres")):
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
        kinds[kind] = [int(pid) for pid in found.split()]
    return kinds


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds used so far by ``pids``."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, action="append")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--events", type=int, default=6000)
    args = parser.parse_args()
    for processes in args.processes or [1, 4]:
        figures = measure(processes, args.threads, args.tenants, args.events)
        print(
            "pipeline: "
            + " ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
