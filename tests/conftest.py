"""Shared fixtures: real services (required in CI, skipped locally when absent) and databases."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog

SERVICES = {"RabbitMQ": 5672, "PostgreSQL": 5432, "Redis": 6379}
PG_ADMIN_URL = os.environ.get(
    "CHATROUTE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("CHATROUTE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A test that runs ``chatroute.cli.main`` in-process configures logging (``logs``) to the
    stderr it had, which pytest closes after it: a later test of that process that logs or
    reads its own log lines found a handler on a closed stream ("Logging error", the nudges'
    test, after the what-if's on one ordering of the files). Each test starts as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.configure(**config)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str) -> None:
    """Fail in CI when a real service is missing; skip outside CI."""
    if _answers(SERVICES[name]):
        return
    message = f"{name} does not answer on 127.0.0.1:{SERVICES[name]} (bash .ci/run starts it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL")
    from sqlalchemy import create_engine, text

    name = f"chatroute_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/chatroute.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def amqp_url() -> str:
    require_service("RabbitMQ")
    return AMQP_URL
