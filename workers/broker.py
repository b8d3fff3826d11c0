"""Chooses the global dramatiq broker, once, before any actor is defined."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from sqlalchemy.exc import DBAPIError

from chatroute import logs
from chatroute.settings import Settings

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


def build(settings: Settings, *, worker: bool = False) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms when ``amqp_url`` is set, else the in-process broker.
    A ``worker`` process (``dramatiq workers.main``) also logs its start and stop, and counts
    its messages for Prometheus when ``worker_metrics_port`` is set."""
    broker: dramatiq.Broker
    if settings.amqp_url:
        broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(LogContext())
    if worker:
        broker.add_middleware(ProcessLog())
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
