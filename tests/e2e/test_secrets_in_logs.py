"""No log line holds a password: every process kind, at DEBUG, with a broker that refuses
its credentials and a database that refuses or cannot be reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.store import tables
from tests.conftest import require_service
from tests.e2e.harness import ROOT

pytestmark = pytest.mark.services

DB_PASSWORD = "Db-Pw-7f3a91"
MQ_PASSWORD = "Mq-Pw-7f3a91"
REFUSED_AMQP = f"amqp://guest:{MQ_PASSWORD}@127.0.0.1:5672/%2F"


def with_password(url: str) -> str:
    """``url`` with a password: trust authentication lets it in all the same."""
    return url.replace("postgres@", f"postgres:{DB_PASSWORD}@")


def with_waiting_event(url: str) -> str:
    """``url``'s database, migrated, with an event left unapplied: the sweeper nudges its
    tenant, so it too meets the broker."""
    rt = bootstrap.build(Settings(database_url=url), migrate=True)
    with rt.engine.begin() as connection:
        connection.execute(insert(tables.tenants), [{"tenant": "t"}])
        connection.execute(
            insert(tables.inbox),
            [{"tenant": "t", "event_id": "e", "type": "message.posted", "state": "new",
              "event_time": rt.clock.now(), "received_at": rt.clock.now(), "body": "{}"}],
        )  # fmt: skip
    rt.engine.dispose()
    return url


def run_for(seconds: float, *args: str, env: dict[str, str]) -> str:
    """stdout and stderr of ``chatroute args``, stopped after ``seconds`` if still running."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATROUTE_LOG_LEVEL": "DEBUG", **env}
    child = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + seconds
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)
    try:
        out, _ = child.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
    return out.decode(errors="replace")


@pytest.mark.parametrize(
    "command", [["gateway"], ["sweeper"], ["worker", "--processes", "1", "--threads", "1"]]
)
def test_a_refused_broker_logs_no_password(command: list[str], pg_url: str) -> None:
    # Given a process whose database answers and whose broker refuses its password
    require_service("RabbitMQ")
    database_url = with_waiting_event(with_password(pg_url))
    env = {"CHATROUTE_DATABASE_URL": database_url, "CHATROUTE_AMQP_URL": REFUSED_AMQP}
    # When it runs (and retries) for a few seconds
    output = run_for(6, *command, env=env)
    # Then it said the broker refused it, and neither password appears
    assert "ACCESS_REFUSED" in output, output[-2000:]
    assert MQ_PASSWORD not in output and DB_PASSWORD not in output


def test_unreachable_services_log_no_password(tmp_path: Path) -> None:
    # Given a database that refuses the user and a broker that does not answer
    require_service("PostgreSQL")
    env = {
        "CHATROUTE_DATABASE_URL": f"postgresql://nobody:{DB_PASSWORD}@127.0.0.1:5432/none",
        "CHATROUTE_AMQP_URL": f"amqp://guest:{MQ_PASSWORD}@127.0.0.1:1/%2F",
    }
    # When the health check and the gateway meet them
    health = run_for(30, "health", "--role", "gateway", env=env)
    gateway = run_for(30, "gateway", env=env)
    # Then both say what failed, and no password appears
    assert '"database": false' in health and '"broker": false' in health
    assert r"role \"nobody\" does not exist" in gateway  # in a JSON line, quotes are escaped
    for output in (health, gateway):
        assert MQ_PASSWORD not in output and DB_PASSWORD not in output
