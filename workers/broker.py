"""Chooses the global dramatiq broker, once, before any actor is defined."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker, dq_name, xq_name
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware
from sqlalchemy.exc import DBAPIError

from chatroute import amqp, logs
from chatroute.settings import Settings

log = logs.get("chatroute.broker")

ROUTING_QUEUE = "chatroute.routing"
STATS_QUEUE = "chatroute.stats"
# Below RabbitMQ's consumer_timeout (30 min by default): a message held longer kills the channel.
ACTOR_TIME_LIMIT_MS = 120_000
MAX_BACKOFF_MS = 30_000
# A server went away (RabbitMQ, directly or under dramatiq, or the database): a process logs a
# warning, reconnects and goes on; nothing is lost (see each caller).
DETAIL_CHARS = 300
OUTAGES = (
    pika.exceptions.AMQPError,
    dramatiq.errors.ConnectionFailed,
    dramatiq.errors.ConnectionClosed,
    DBAPIError,
    OSError,
)


def outage(error: BaseException) -> dict[str, object]:
    """What went away, for a log line: the error's type, RabbitMQ's reply when it gave one, and
    the client's or server's own words (an access refusal, a refused connection): never the
    SQL statement, nor a URL, which may hold a password."""
    found: dict[str, object] = {"error": type(error).__name__}
    if getattr(error, "reply_code", None) is not None:
        found["reply"] = f"{error.reply_code} {getattr(error, 'reply_text', '')}"  # type: ignore[attr-defined]
    words = error.orig if isinstance(error, DBAPIError) else error
    if str(words):
        found["detail"] = str(words)[:DETAIL_CHARS]
    return found


class TypedRabbitmqBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker, declaring each of its queues (the queue, its delay queue
    ``.DQ`` and its dead-letter queue ``.XQ``) of the deployment's queue type.

    dramatiq builds a queue's arguments in its private ``_declare_*queue`` methods, called only
    from ``_ensure_queue``, which retries them on a closed channel: overriding those three is
    the narrowest change. Each declares through ``amqp.declare_queue``, with dramatiq's own
    arguments plus ``x-queue-type``, and so keeps a queue of the other type already there.
    They follow dramatiq 2.x (pyproject pins the major version). Its ``parameters`` (a
    cluster's nodes) are filtered at each read, see below."""

    def __init__(self, *, queue_type: str, **options: Any) -> None:
        super().__init__(**options)
        self.queue_type = queue_type

    # dramatiq reads ``parameters`` at each connection it opens (its consumers' too): the
    # nodes whose names resolve then (see ``amqp.resolving``).
    @property  # type: ignore[override]
    def parameters(self) -> list[pika.ConnectionParameters]:
        return amqp.resolving(self._nodes)

    @parameters.setter
    def parameters(self, nodes: Any) -> None:
        self._nodes = nodes if isinstance(nodes, list) else [nodes]

    def _declare_queue(self, queue_name: str) -> None:
        self._declare(queue_name, self._build_queue_arguments(queue_name))

    def _declare_dq_queue(self, queue_name: str) -> None:
        self._declare(dq_name(queue_name), self._build_queue_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> None:
        # A fixed TTL, as dramatiq's: messages expire from the head of the queue.
        self._declare(xq_name(queue_name), {"x-message-ttl": DEAD_MESSAGE_TTL})

    def _declare(self, name: str, arguments: dict[str, Any]) -> None:
        amqp.declare_queue(
            self._open_channel, name, self.queue_type, lambda kind: amqp.typed(kind, arguments)
        )

    def _open_channel(self) -> Any:
        if not self.channel.is_open:  # closed by a refused declare
            del self.channel
        return self.channel


class WorkerRabbitmqBroker(TypedRabbitmqBroker):
    """dramatiq's RabbitMQ broker for worker processes, whose threads publish rarely (a
    consumer declaring its queue at start, a retry, a delayed message come due): each closes
    its connection once done. Left open, it would idle unserviced (pika answers heartbeats only
    inside its calls), RabbitMQ would close it, and dramatiq would open another at the next
    use without a word."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        try:
            return super().consume(queue_name, prefetch, timeout)
        finally:
            del self.connection  # this thread's; the consumer has a connection of its own

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        try:
            return super().enqueue(message, delay=delay)
        finally:
            del self.connection


_lock = threading.Lock()
_installed: dramatiq.Broker | None = None


class LogContext(Middleware):
    """Binds the actor, message id and tenant to every log line of a message's handling."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        tenant = message.args[0] if message.args else None
        structlog.contextvars.bind_contextvars(
            actor=message.actor_name, message_id=message.message_id, tenant=tenant
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        structlog.contextvars.clear_contextvars()


class ProcessLog(Middleware):
    """Logs a worker process's start, once it consumes its queues, and its stop."""

    ROLE = "worker_process"

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        logs.process_started(self.ROLE, queues=sorted(worker.consumers))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        logs.process_stopped(self.ROLE)


class FrozenBoot(Middleware):
    """Moves what a worker process built at start (modules, models, tables, the engine) out
    of the garbage collector's reach: a full collection walked its ~114k objects in about
    50 ms, inside whichever batch it fell on."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        gc.collect()
        gc.freeze()


def build(settings: Settings, *, worker: bool = False) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms when ``amqp_url`` is set, else the in-process broker.
    A ``worker`` process (``dramatiq workers.main``) also logs its start and stop, and counts
    its messages for Prometheus when ``worker_metrics_port`` is set."""
    broker: dramatiq.Broker
    if settings.amqp_url:
        kind = WorkerRabbitmqBroker if worker else TypedRabbitmqBroker
        broker = kind(
            url=amqp.node_urls(settings.amqp_url),
            confirm_delivery=True,
            queue_type=settings.queue_type,
        )
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(LogContext())
    if worker:
        broker.add_middleware(ProcessLog())
        broker.add_middleware(FrozenBoot())
    if worker and settings.amqp_url and settings.worker_metrics_port is not None:
        # Imported only here: the module reads its port and folder when imported.
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    return broker


def prometheus_env(settings: Settings, folder: Path) -> dict[str, str]:
    """The variables dramatiq's Prometheus middleware reads, for a whole ``dramatiq`` run: its
    main process serves the page, from the files every worker process writes in ``folder``."""
    return {
        "dramatiq_prom_port": str(settings.worker_metrics_port),
        "dramatiq_prom_db": str(folder),
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "prometheus_multiproc_dir": str(folder),
    }


def clear_prometheus_folder(folder: Path) -> None:
    """Empty ``folder`` (made if missing): a new run of workers counts from zero, and files of
    processes gone would otherwise be summed with the new ones forever."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("*.db"):
        leftover.unlink()


def install(settings: Settings, *, worker: bool = False) -> dramatiq.Broker:
    """Set the global broker from ``settings`` unless one was installed already."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = build(settings, worker=worker)
            dramatiq.set_broker(_installed)
        return _installed


def ensure(*, worker: bool = False) -> dramatiq.Broker:
    """The installed broker, or one built from the environment. A ``worker`` process logs
    JSON lines from here on, to where dramatiq collects its worker processes' output."""
    settings = Settings.from_env()
    if worker:
        logs.configure(settings.log_level)
    return install(settings, worker=worker)


def keep_alive(role: str) -> None:
    """Send and answer heartbeats on this thread's publishing connection, if it has one.

    dramatiq opens one per thread and uses it only to enqueue: the gateway and the sweeper,
    which nudge now and then, call this while they wait (at least every
    ``amqp.KEEP_ALIVE_S``), else RabbitMQ closes it after a heartbeat timeout without a nudge.
    One the broker closed is logged, naming ``role``, and dropped: the next nudge makes another.
    """
    broker = _installed
    # Read, not dramatiq's ``connection`` property, which would connect a thread that has none.
    connection = getattr(getattr(broker, "state", None), "connection", None)
    if connection is None:
        return
    try:
        connection.process_data_events(time_limit=0)
    except OUTAGES as error:
        log.warning("amqp_connection_lost", role=role, **outage(error))
        del broker.connection  # type: ignore[union-attr]
