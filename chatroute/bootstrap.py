"""One bootstrap builds the engine, sessions and clock, per process and after any fork."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from chatroute import logs, nudges
from chatroute.clock import Clock, SystemClock
from chatroute.domain.commands import Command
from chatroute.domain.ports import TenantView
from chatroute.settings import Settings
from chatroute.store import census, db
from chatroute.store.mapping import start_mappers
from chatroute.store.unit import KeptViews, SqlUnits, Units
from chatroute.store.view import stamp_stats_changes, sync_memberships, write_whole_rows


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    claims: nudges.Claims  # which tenants have a nudge on its way (Redis)
    # The units of work the steps run in: on the database (with the tenants' views this
    # process keeps between their transactions), or in memory for ``chatroute replay``.
    units: Units
    # A what-if run recasts the recording's respondents' actions (``domain.whatif``); None:
    # every event applies as it came.
    recast: Recast | None = None


Recast = Callable[[TenantView, Command], Command]

_lock = threading.Lock()
_current: Runtime | None = None


def build(
    settings: Settings,
    clock: Clock | None = None,
    *,
    migrate: bool = False,
    wait_s: float = 0,
    orm: bool = True,
) -> Runtime:
    """Connect lazily to ``settings.database_url``; ``migrate`` brings the schema up first.
    ``wait_s``: how long a long-running process waits for the database to answer first.
    ``orm``: map the domain's classes now; a process whose state lives in memory
    (``store.memory``) maps them only when it needs the ORM, if ever: until then the domain's
    objects are plain dataclasses."""
    if orm:
        start_mappers()
    engine = db.make_engine(settings.database_url)
    if wait_s > 0:
        db.wait_until_up(engine, wait_s)
    if migrate:
        db.migrate(engine)
    sessions = db.session_factory(engine)
    # Each group's census follows its respondents as they change (store.census).
    event.listen(sessions, "transient_to_pending", census.added)
    event.listen(sessions, "after_soft_rollback", census.rolled_back)
    event.listen(sessions, "before_flush", census.count_members)
    event.listen(sessions, "before_flush", sync_memberships)
    event.listen(sessions, "before_flush", stamp_stats_changes)
    event.listen(sessions, "before_flush", write_whole_rows)
    claims = nudges.claims(settings.redis_url)
    units = SqlUnits(engine, sessions, KeptViews(settings.kept_rows), db.lone_engine(engine))
    return Runtime(settings, engine, sessions, clock or SystemClock(), claims, units)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the process's runtime (the CLI and tests choose theirs explicitly)."""
    global _current
    with _lock:
        _current = runtime
    return runtime


def runtime() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            settings = Settings.from_env()
            if settings.amqp_url:  # a worker process of a deployment, not the embedded mode
                settings.require_database("worker")
            logs.configure(settings.log_level)
            _current = build(settings)
        return _current
