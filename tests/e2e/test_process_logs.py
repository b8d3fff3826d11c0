"""One log format: every process of a deployment (migrate, the gateway, the sweeper, the worker
supervisor and its dramatiq processes) writes JSON lines only, says when it started and when
it stopped, and starts quietly (no alembic INFO lines, no dramatiq plain text)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Pipeline, Vhost, wait_until

pytestmark = pytest.mark.services

# The roles each command's processes log their start and stop with.
ROLES = {
    "migrate": ["migrate"],
    "gateway": ["gateway"],
    "sweeper": ["sweeper"],
    "worker": ["worker", "worker_dramatiq", "worker_process"],
}
COMMANDS = {
    "migrate": ["migrate"],
    "gateway": ["gateway"],
    "sweeper": ["sweeper"],
    "worker": ["worker", "--processes", "1", "--threads", "1"],
}


def log_lines(pipeline: Pipeline, name: str) -> list[str]:
    """Everything ``name`` wrote on stdout and stderr, by line."""
    return (pipeline.log_dir / f"{name}.log").read_text().splitlines()


def entries(pipeline: Pipeline, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_lines(pipeline, name)]


def said(pipeline: Pipeline, name: str, event: str) -> set[str]:
    """The roles that logged ``event`` in ``name``'s output, read as far as it is JSON."""
    found = set()
    for line in log_lines(pipeline, name):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            found.add(entry.get("role"))
    return found


def test_every_process_logs_json_lines_from_start_to_stop(
    pg_url: str, vhost: Vhost, tmp_path: Path
) -> None:
    # Given a fresh database and broker, and the processes at the deployed log level
    pipeline = Pipeline(pg_url, vhost.url, tmp_path)
    pipeline.env["CHATROUTE_LOG_LEVEL"] = "INFO"
    try:
        pipeline.spawn("migrate", *COMMANDS["migrate"])
        assert pipeline.children["migrate"].wait(120) == 0, log_lines(pipeline, "migrate")
        # When each process starts, then is stopped as an orchestrator stops it (SIGTERM)
        for name in ("gateway", "sweeper", "worker"):
            pipeline.spawn(name, *COMMANDS[name])
        for name in ("gateway", "sweeper", "worker"):
            wait_until(
                lambda name=name: said(pipeline, name, "process_started") == set(ROLES[name]),
                60,
                f"{name} to start",
            )
            os.kill(pipeline.children[name].pid, signal.SIGTERM)
        exits = {
            name: pipeline.children[name].wait(60) for name in ("gateway", "sweeper", "worker")
        }
    finally:
        pipeline.stop()
    # Then each stopped cleanly, and every line it wrote is a JSON object ...
    assert exits == {"gateway": 0, "sweeper": 0, "worker": 0}
    for name, roles in ROLES.items():
        logged = entries(pipeline, name)
        assert logged and all(isinstance(entry, dict) for entry in logged), name
        # ... with a start and a stop line for each of its processes, by role and pid
        for event in ("process_started", "process_stopped"):
            lines = [e for e in logged if e["event"] == event]
            assert sorted(e["role"] for e in lines) == sorted(roles), (name, logged)
            assert len({e["pid"] for e in lines}) == len(roles), (name, lines)
        # ... and nothing from alembic (its INFO lines at import and at each migration)
        assert not [e for e in logged if str(e.get("logger", "")).startswith("alembic")], name
