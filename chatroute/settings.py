"""The one place settings are read from the environment, once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from chatroute.errors import SettingsError

DEFAULT_DATABASE_URL = "sqlite:///chatroute.db"
# RabbitMQ's replicated queue type, and the one a single node that cannot run it keeps.
QUORUM = "quorum"
CLASSIC = "classic"
QUEUE_TYPES = (QUORUM, CLASSIC)
# The processes of a deployment. A forgotten database URL must stop them, not quietly open
# ./chatroute.db: only replay, stats, report, history and queues keep the contract's default.
DEPLOYED_COMMANDS = frozenset(
    {"gateway", "worker", "sweeper", "health", "migrate", "prune", "access"}
)


@dataclass(frozen=True)
class Settings:
    """Everything configurable; ``from_env`` documents the variable of each field."""

    database_url: str = DEFAULT_DATABASE_URL
    # False when ``database_url`` is the embedded default, not a configured one.
    database_configured: bool = True
    # None selects the in-process broker (the embedded default).
    amqp_url: str | None = None
    # The type of every queue the engine and dramatiq declare (``QUEUE_TYPES``). Classic by
    # default: a quorum chat.gateway let a tenant's events be taken in out of order after a
    # gateway or node was lost (README, *Queue types*).
    queue_type: str = CLASSIC
    redis_url: str | None = None
    unknown_retry_s: float = 30.0
    batch_size: int = 200
    # Rows of tenants' views a process keeps between their transactions (store.unit.KeptViews).
    kept_rows: int = 100_000
    gateway_prefetch: int = 500
    sweep_interval_s: float = 0.5
    stats_interval_s: float = 2.0
    relay_interval_s: float = 0.005
    log_level: str = "INFO"
    # Where the gateway and the sweeper serve Prometheus metrics; None: not served.
    metrics_port: int | None = None
    # Groups with series of their own in the group gauges (the longest queues first): a bound
    # on the metrics' cardinality whatever the number of tenants and groups.
    metrics_groups: int = 500
    # Where ``chatroute worker`` serves dramatiq's own metrics; None: not served. Its worker
    # processes share counts through files in ``worker_metrics_dir`` (None: a temporary one).
    worker_metrics_port: int | None = None
    worker_metrics_dir: str | None = None
    # Fault injection for the poison and chaos tests: applying one of these event ids
    # SIGKILLs the worker process. Empty in production.
    fault_kill_on: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        database_url = secret(env, "CHATROUTE_DATABASE_URL")
        return cls(
            database_url=database_url or DEFAULT_DATABASE_URL,
            database_configured=database_url is not None,
            amqp_url=secret(env, "CHATROUTE_AMQP_URL"),
            queue_type=_queue_type(env),
            redis_url=secret(env, "CHATROUTE_REDIS_URL"),
            unknown_retry_s=float(env.get("CHATROUTE_UNKNOWN_RETRY_S", "30")),
            batch_size=int(env.get("CHATROUTE_BATCH_SIZE", "200")),
            kept_rows=int(env.get("CHATROUTE_KEPT_ROWS", "100000")),
            gateway_prefetch=int(env.get("CHATROUTE_GATEWAY_PREFETCH", "500")),
            sweep_interval_s=float(env.get("CHATROUTE_SWEEP_INTERVAL_S", "0.5")),
            stats_interval_s=float(env.get("CHATROUTE_STATS_INTERVAL_S", "2")),
            relay_interval_s=float(env.get("CHATROUTE_RELAY_INTERVAL_S", "0.005")),
            log_level=env.get("CHATROUTE_LOG_LEVEL", "INFO"),
            metrics_port=_port(env, "CHATROUTE_METRICS_PORT"),
            metrics_groups=int(env.get("CHATROUTE_METRICS_GROUPS", "500")),
            worker_metrics_port=_port(env, "CHATROUTE_WORKER_METRICS_PORT"),
            worker_metrics_dir=env.get("CHATROUTE_WORKER_METRICS_DIR") or None,
            fault_kill_on=frozenset(
                filter(None, env.get("CHATROUTE_FAULT_KILL_ON", "").split(","))
            ),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_database(self, url: str) -> Settings:
        """``url`` given on the command line."""
        return self.with_(database_url=url, database_configured=True)

    def require_database(self, command: str) -> Settings:
        """These settings, or ``SettingsError`` when ``command`` would fall back on the
        embedded default database."""
        if not self.database_configured:
            raise SettingsError(
                f"chatroute {command}: no database configured: set CHATROUTE_DATABASE_URL or "
                "CHATROUTE_DATABASE_URL_FILE (only replay, stats, report, history and queues "
                f"default to {DEFAULT_DATABASE_URL})"
            )
        return self


def _queue_type(env: dict[str, str]) -> str:
    queue_type = env.get("CHATROUTE_QUEUE_TYPE") or CLASSIC
    if queue_type not in QUEUE_TYPES:
        raise SettingsError(
            f"CHATROUTE_QUEUE_TYPE={queue_type!r}: expected one of {', '.join(QUEUE_TYPES)}"
        )
    return queue_type


def _port(env: dict[str, str], name: str) -> int | None:
    return int(env[name]) if env.get(name) else None


def secret(env: dict[str, str], name: str) -> str | None:
    """The value of ``name``, or the contents of the file ``<name>_FILE`` names (as Docker and
    Kubernetes mount secrets), without surrounding whitespace; None when neither is set."""
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if path is None:
        return value
    if value is not None:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    try:
        contents = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise SettingsError(f"{name}_FILE: cannot read {path}: {reason}") from None
    if not contents:
        raise SettingsError(f"{name}_FILE: {path} is empty")
    return contents


SECRET_VARS = ("CHATROUTE_DATABASE_URL", "CHATROUTE_AMQP_URL", "CHATROUTE_REDIS_URL")
ENV_VARS = (
    *SECRET_VARS,
    *(f"{name}_FILE" for name in SECRET_VARS),
    "CHATROUTE_QUEUE_TYPE",
    "CHATROUTE_UNKNOWN_RETRY_S",
    "CHATROUTE_BATCH_SIZE",
    "CHATROUTE_KEPT_ROWS",
    "CHATROUTE_GATEWAY_PREFETCH",
    "CHATROUTE_SWEEP_INTERVAL_S",
    "CHATROUTE_STATS_INTERVAL_S",
    "CHATROUTE_RELAY_INTERVAL_S",
    "CHATROUTE_LOG_LEVEL",
    "CHATROUTE_METRICS_PORT",
    "CHATROUTE_METRICS_GROUPS",
    "CHATROUTE_WORKER_METRICS_PORT",
    "CHATROUTE_WORKER_METRICS_DIR",
    "CHATROUTE_FAULT_KILL_ON",
)
