"""The real pipeline for end-to-end tests: a RabbitMQ vhost of its own, a PostgreSQL
database of its own, and ``chatroute gateway``, ``worker`` and ``sweeper`` as processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import select

from chatroute import amqp
from chatroute.amqp import DECISIONS_EXCHANGE, connect
from chatroute.publish import publish_bodies
from chatroute.settings import CLASSIC, Settings
from chatroute.store import db, tables
from schemas.events import best_effort_identity
from tests.builders import Events

ROOT = Path(__file__).resolve().parents[2]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class Vhost:
    """A throw-away RabbitMQ vhost, so no test sees another's queues."""

    def __init__(self) -> None:
        self.name = f"chatroute-test-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)


class DecisionLog:
    """Collects every message published to ``chat.decisions`` (in arrival order).

    With ``queue`` it consumes a durable queue of that name and acknowledges each message once
    recorded, reconnecting whenever the broker goes away: a broker restart loses nothing. A
    message redelivered after a lost acknowledgement is recorded again, as any consumer sees it.
    """

    def __init__(self, amqp_url: str, queue: str | None = None, queue_type: str = CLASSIC) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.queue_type = queue_type  # of ``queue``: quorum on a cluster, to outlive a node
        self.decisions: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.time() of each decision's arrival
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("decision consumer did not start")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except (pika.exceptions.AMQPError, OSError):
                if self.queue is None:
                    raise  # an exclusive queue died with its connection: decisions were lost
                self._stop.wait(0.5)

    def _consume(self) -> None:
        connection = connect(self.amqp_url)  # any node of a cluster
        channel = connection.channel()
        # Only what it binds to: the engine declares its queues, of the type it is set to.
        channel.exchange_declare(DECISIONS_EXCHANGE, exchange_type="topic", durable=True)
        if self.queue is None:
            queue = channel.queue_declare("", exclusive=True).method.queue
        else:
            arguments = amqp.typed(self.queue_type, {})
            queue = channel.queue_declare(
                self.queue, durable=True, arguments=arguments
            ).method.queue
        channel.queue_bind(queue, DECISIONS_EXCHANGE, routing_key="#")
        self._ready.set()
        auto_ack = self.queue is None
        for method, _props, body in channel.consume(
            queue, auto_ack=auto_ack, inactivity_timeout=0.2
        ):
            if self._stop.is_set():
                break
            if method is not None:
                self.arrived.append(time.time())
                self.decisions.append(json.loads(body))
                if not auto_ack:
                    channel.basic_ack(method.delivery_tag)
        connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def has(self, kind: str) -> bool:
        return any(d["type"] == kind for d in self.decisions)


class Pipeline:
    """gateway + worker (``processes`` x ``threads``) + sweeper against PostgreSQL."""

    def __init__(
        self, database_url: str, amqp_url: str, log_dir: Path, processes: int = 4, threads: int = 2
    ) -> None:
        self.env = {
            **os.environ,
            "CHATROUTE_DATABASE_URL": database_url,
            "CHATROUTE_AMQP_URL": amqp_url,
            "CHATROUTE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        self.amqp_url = amqp_url
        self.log_dir = log_dir
        self.processes = processes
        self.threads = threads
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> None:
        """Start ``chatroute *args`` as ``name``, in a session of its own (logs to name.log)."""
        log = (self.log_dir / f"{name}.log").open("ab")
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "workers.cli", "migrate"],
            env=self.env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )

    def start(self) -> None:
        self.migrate()
        self.start_gateway()
        self.start_workers()
        self.spawn("sweeper", "sweeper")

    def start_gateway(self) -> None:
        self.spawn("gateway", "gateway")

    def stop_gateway(self) -> None:
        """SIGTERM the gateway and wait: events published meanwhile wait in ``chat.gateway``."""
        gateway = self.children.pop("gateway")
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(30)

    def kill_workers(self) -> None:
        """SIGKILL ``chatroute worker`` and every process it started: all workers are down."""
        self.kill("worker")

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and every process it started (its whole session)."""
        child = self.children.pop(name)
        for pid in _session_members([child.pid]):  # its session id: it leads a new session
            os.kill(pid, signal.SIGKILL)
        child.wait(10)

    def start_workers(self) -> None:
        self.spawn(
            "worker", "worker", "--processes", str(self.processes), "--threads", str(self.threads)
        )

    def worker_pids(self) -> list[int]:
        """The dramatiq worker processes (grandchildren of ``chatroute worker``)."""
        out = subprocess.run(
            ["pgrep", "-f", "dramatiq workers.main"], capture_output=True, text=True
        ).stdout
        session = os.getsid(self.children["worker"].pid)
        pids = [int(p) for p in out.split()]
        return [p for p in pids if _sid(p) == session and p != self.children["worker"].pid]

    def stop(self) -> None:
        """SIGTERM every process of each child's session, then SIGKILL what is left."""
        sessions = [os.getsid(c.pid) for c in self.children.values() if _sid(c.pid) is not None]
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(5)
        for pid in _session_members(sessions):
            os.kill(pid, signal.SIGKILL)

    def publish(self, bodies: list[bytes], publishers: int = 1) -> None:
        """Publish ``bodies`` from ``publishers`` connections at once. Each conversation's
        events go through one publisher, in order, as a frontend sends them."""
        shares: list[list[bytes]] = [[] for _ in range(publishers)]
        for body in bodies:
            shares[zlib.crc32(_conversation_key(body)) % publishers].append(body)
        # A publisher ahead of the gateway declares the topology: of the pipeline's queue type.
        queue_type = Settings.from_env(self.env).queue_type
        threads = [
            threading.Thread(target=publish_bodies, args=(share, self.amqp_url, queue_type))
            for share in shares
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


@contextmanager
def running(pipeline: Pipeline, decisions_url: str) -> Iterator[DecisionLog]:
    """``pipeline`` started, with a log of its decisions; both stopped afterwards."""
    log = DecisionLog(decisions_url)
    pipeline.start()
    try:
        yield log
    finally:
        pipeline.stop()
        log.stop()


def one_conversation(tenant: str = "shop-1") -> list[bytes]:
    """The smallest stream through the whole pipeline: a rule, a respondent, a conversation
    assigned to them (a decision to publish, a contact to count)."""
    shop = Events(tenant)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    return lines(shop.lines)


def _conversation_key(body: bytes) -> bytes:
    try:
        event = json.loads(body)
        return f"{event['tenant']}/{event['data'].get('conversation', '')}".encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return b""


def _session_members(sessions: list[int]) -> list[int]:
    """Processes still alive in ``sessions`` (a dramatiq worker may outlive its parent)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _sid(int(entry.name)) in sessions:
            members.append(int(entry.name))
    return members


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def spare_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def lines(events: Iterable[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def received_times(database_url: str) -> dict[tuple[str, str], datetime]:
    """When the pipeline received each event it recorded, by (tenant, event id)."""
    return inbox_by_event(database_url, "received_at")


def inbox_by_event(database_url: str, column: str) -> dict[tuple[str, str], Any]:
    """``column`` of each inbox row (``seq``: its place in arrival order), by (tenant, event
    id)."""
    c = tables.inbox.c
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(select(c.tenant, c.event_id, c[column])).all()
    engine.dispose()
    return {(tenant, event_id): value for tenant, event_id, value in rows}


def stamped(
    bodies: Iterable[bytes], received: dict[tuple[str, str], datetime]
) -> list[bytes | tuple[bytes, datetime]]:
    """``bodies`` for ``chatroute replay``, each stamped with the moment the pipeline received
    it (a body it recorded under no tenant and id stays as it is)."""
    out: list[bytes | tuple[bytes, datetime]] = []
    for body in bodies:
        tenant, event_id, _ = best_effort_identity(body)
        moment = received.get((tenant or "", event_id or ""))
        out.append(body if moment is None else (body, moment))
    return out
