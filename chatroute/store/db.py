"""Engines, migrations and sessions, built once per process after any fork."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from chatroute import logs

log = logs.get("chatroute.store.db")

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate write locks.

    Parameters stay out of error messages: they hold event bodies (comments, names), and
    errors end up in logs.
    """
    url = _with_driver(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True, hide_parameters=True)


def lone_engine(engine: Engine) -> Engine:
    """An engine beside ``engine`` for statements that are transactions of their own (a try
    counted before it runs, a look for events that arrived meanwhile, the publishers of an
    intake batch): one round trip each,
    where ``engine.begin()`` costs four (a ping, BEGIN, the statement, COMMIT), on connections
    that never carry another transaction.

    PostgreSQL commits them without waiting for the disk: losing a try's count in a crash of
    the server costs one more try. No ping on checkout: after a restart of the server one
    statement fails, and its actor retries. SQLite: ``engine`` itself (one writer, no server).
    """
    if engine.dialect.name != "postgresql":
        return engine
    lone = create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_size=2,
        max_overflow=5,
        hide_parameters=True,
    )

    @event.listens_for(lone, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()

    @event.listens_for(engine, "engine_disposed")
    def _with_engine(_engine):  # type: ignore[no-untyped-def]
        lone.dispose()

    return lone


def _with_driver(url: str) -> str:
    # psycopg 3 is the one PostgreSQL driver we ship; accept the plain scheme users write.
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so a transaction starts as a write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def wait_until_up(engine: Engine, seconds: float) -> None:
    """Wait up to ``seconds`` for the database to answer: a long-running process started
    while PostgreSQL restarts waits for it instead of exiting. Each try's reason is logged
    at once (a wrong user shows in the first line); the last error raises when the time is
    up. (psycopg gives a refused connection no SQLSTATE to tell what waiting mends.)"""
    deadline = time.monotonic() + seconds
    pause = 0.2
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as error:
            if time.monotonic() + pause > deadline:
                raise
            reason = str(error.orig or error).strip().splitlines()[0]
            log.warning("database_unavailable", retry_in_s=pause, reason=reason)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (the only way tables are created)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
