"""The one place settings are read from the environment, once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

DEFAULT_DATABASE_URL = "sqlite:///chatroute.db"


@dataclass(frozen=True)
class Settings:
    """Everything configurable; ``from_env`` documents the variable of each field."""

    database_url: str = DEFAULT_DATABASE_URL
    # None selects the in-process broker (the embedded default).
    amqp_url: str | None = None
    redis_url: str | None = None
    unknown_retry_s: float = 30.0
    batch_size: int = 200
    gateway_prefetch: int = 500
    sweep_interval_s: float = 0.5
    stats_interval_s: float = 2.0
    relay_interval_s: float = 0.005
    log_level: str = "INFO"
    # Where the gateway and the sweeper serve Prometheus metrics; None: not served.
    metrics_port: int | None = None
    # Fault injection for the poison and chaos tests: applying one of these event ids
    # SIGKILLs the worker process. Empty in production.
    fault_kill_on: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            database_url=env.get("CHATROUTE_DATABASE_URL", DEFAULT_DATABASE_URL),
            amqp_url=env.get("CHATROUTE_AMQP_URL") or None,
            redis_url=env.get("CHATROUTE_REDIS_URL") or None,
            unknown_retry_s=float(env.get("CHATROUTE_UNKNOWN_RETRY_S", "30")),
            batch_size=int(env.get("CHATROUTE_BATCH_SIZE", "200")),
            gateway_prefetch=int(env.get("CHATROUTE_GATEWAY_PREFETCH", "500")),
            sweep_interval_s=float(env.get("CHATROUTE_SWEEP_INTERVAL_S", "0.5")),
            stats_interval_s=float(env.get("CHATROUTE_STATS_INTERVAL_S", "2")),
            relay_interval_s=float(env.get("CHATROUTE_RELAY_INTERVAL_S", "0.005")),
            log_level=env.get("CHATROUTE_LOG_LEVEL", "INFO"),
            metrics_port=int(env["CHATROUTE_METRICS_PORT"])
            if env.get("CHATROUTE_METRICS_PORT")
            else None,
            fault_kill_on=frozenset(
                filter(None, env.get("CHATROUTE_FAULT_KILL_ON", "").split(","))
            ),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


ENV_VARS = (
    "CHATROUTE_DATABASE_URL",
    "CHATROUTE_AMQP_URL",
    "CHATROUTE_REDIS_URL",
    "CHATROUTE_UNKNOWN_RETRY_S",
    "CHATROUTE_BATCH_SIZE",
    "CHATROUTE_GATEWAY_PREFETCH",
    "CHATROUTE_SWEEP_INTERVAL_S",
    "CHATROUTE_STATS_INTERVAL_S",
    "CHATROUTE_RELAY_INTERVAL_S",
    "CHATROUTE_LOG_LEVEL",
    "CHATROUTE_METRICS_PORT",
    "CHATROUTE_FAULT_KILL_ON",
)
