"""Baselines measured in the same run as chatroute: what dramatiq itself does on this machine.

- ``noop``: a dramatiq actor that does nothing (the ceiling of any dramatiq design);
- ``naive``: an actor that does one PostgreSQL transaction per message (the design chatroute
  batches away from).

Loaded by ``dramatiq benchmarks.baseline`` with ``BENCH_AMQP_URL`` and ``BENCH_DATABASE_URL``
set; ``benchmarks.bench`` publishes the messages and times the drain.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import dramatiq
import psycopg

from chatroute.settings import Settings
from workers.broker import TypedRabbitmqBroker

# Queues of the type chatroute's run declares (CHATROUTE_QUEUE_TYPE), for like-for-like ratios.
broker = TypedRabbitmqBroker(
    url=os.environ["BENCH_AMQP_URL"],
    confirm_delivery=True,
    queue_type=Settings.from_env().queue_type,
)
dramatiq.set_broker(broker)
DONE = Path(os.environ.get("BENCH_DONE_FILE", "/tmp/chatroute-bench-done"))
_local = threading.local()  # one connection per worker thread


@dramatiq.actor(queue_name="bench.noop", max_retries=0)
def noop(n: int, last: bool = False) -> None:
    if last:
        DONE.write_text(str(n))


@dramatiq.actor(queue_name="bench.naive", max_retries=0)
def naive(n: int, last: bool = False) -> None:
    if getattr(_local, "connection", None) is None:
        _local.connection = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
    with _local.connection.transaction():
        _local.connection.execute("INSERT INTO bench_naive (n) VALUES (%s)", (n,))
    if last:
        DONE.write_text(str(n))
