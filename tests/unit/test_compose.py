"""compose.yaml is how ops run chatroute: its services and settings must match the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chatroute.cli import _parser
from chatroute.settings import ENV_VARS

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_it_runs_the_backing_services_and_every_process_kind(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "rabbitmq",
        "postgres",
        "redis",
        "migrate",
        "gateway",
        "routing",
        "stats",
        "timers",
    } <= set(services)
    assert "management" in services["rabbitmq"]["image"]


def test_engine_services_use_known_commands_and_settings(compose: dict[str, Any]) -> None:
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name in ("migrate", "gateway", "routing", "stats", "timers"):
        service = compose["services"][name]
        assert service["command"][0] == "chatroute"
        assert service["command"][1] in commands
        assert set(service["environment"]) <= set(ENV_VARS), f"{name} sets an unknown variable"
        assert service["environment"]["CHATROUTE_DATABASE_URL"].startswith("postgresql://")
        assert service["environment"]["CHATROUTE_AMQP_URL"].startswith("amqp://")


def test_workers_have_replicas_and_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("gateway", "routing", "stats", "timers"):
        service = compose["services"][name]
        assert service["deploy"]["replicas"] >= 2
        assert service["healthcheck"]["test"][1:3] == ["chatroute", "health"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_rabbitmq_uses_a_dedicated_vhost_matching_the_amqp_url(compose: dict[str, Any]) -> None:
    vhost = compose["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_VHOST"]
    url = compose["services"]["gateway"]["environment"]["CHATROUTE_AMQP_URL"]
    assert url.endswith("/" + vhost)


def test_prometheus_scrapes_every_process_that_serves_metrics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    serving = {
        name for name, s in services.items()
        if "CHATROUTE_METRICS_PORT" in (s.get("environment") or {})
    }  # fmt: skip
    assert serving == {"gateway", "timers"}
    mount = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((COMPOSE.parent / mount).read_text())
    targets = config["scrape_configs"][0]["dns_sd_configs"][0]
    assert set(targets["names"]) == serving
    assert {str(targets["port"])} == {
        services[n]["environment"]["CHATROUTE_METRICS_PORT"] for n in serving
    }
