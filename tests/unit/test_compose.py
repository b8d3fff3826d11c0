"""compose.yaml is how ops run chatroute: its services and settings must match the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chatroute.cli import _parser
from chatroute.health import ROLES
from chatroute.settings import ENV_VARS

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


URL_SCHEMES = {
    "CHATROUTE_DATABASE_URL": "postgresql://",
    "CHATROUTE_AMQP_URL": "amqp://",
    "CHATROUTE_REDIS_URL": "redis://",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secret files ``deploy/make_secrets.py`` writes, as ops would make them."""
    folder = tmp_path_factory.mktemp("secrets")
    script = str(COMPOSE.parent / "deploy" / "make_secrets.py")
    subprocess.run([sys.executable, script, str(folder)], check=True, capture_output=True)
    return folder


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


def test_engine_services_read_their_urls_from_mounted_secrets(
    compose: dict[str, Any], secrets: Path
) -> None:
    for name in ("migrate", "gateway", "routing", "stats", "timers"):
        service = compose["services"][name]
        for variable, scheme in URL_SCHEMES.items():
            # Given the file the service's variable names
            path = service["environment"][f"{variable}_FILE"]
            secret = path.removeprefix("/run/secrets/")
            # Then it is a secret mounted in the service, written by make_secrets
            assert secret in service["secrets"], f"{name} does not mount {secret}"
            written = secrets / Path(compose["secrets"][secret]["file"]).name
            assert all(url.startswith(scheme) for url in written.read_text().strip().split(";"))
            assert variable not in service["environment"]


def test_compose_holds_no_password(compose: dict[str, Any]) -> None:
    # No default in an interpolation (${X:-chatroute}), no password in any environment
    assert ":-" not in COMPOSE.read_text()
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            secretive = "PASS" in variable or variable.endswith("_URL")
            assert not secretive or variable.endswith("_FILE"), f"{name} sets {variable}={value}"
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_workers_have_replicas_and_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("gateway", "routing", "stats", "timers"):
        service = compose["services"][name]
        assert service["deploy"]["replicas"] >= 2
        assert service["healthcheck"]["test"][1:3] == ["chatroute", "health"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_each_healthcheck_judges_its_service_by_its_own_work(compose: dict[str, Any]) -> None:
    # The role whose late work fails the check: what each service's process does
    roles = {"gateway": "gateway", "routing": "worker", "stats": "stats", "timers": "sweeper"}
    for name, role in roles.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[test.index("--role") + 1] == role, name
    assert set(roles.values()) == set(ROLES)
    queues = {name: compose["services"][name]["command"][-1] for name in ("routing", "stats")}
    assert queues == {"routing": "chatroute.routing", "stats": "chatroute.stats"}


def test_rabbitmq_uses_a_dedicated_vhost_matching_the_amqp_url(
    compose: dict[str, Any], secrets: Path
) -> None:
    rabbitmq = compose["services"]["rabbitmq"]
    assert "environment" not in rabbitmq  # no RABBITMQ_DEFAULT_USER: no default user at all
    # Given the definitions it imports at boot: the users secret first, then ours
    mounts = dict(reversed(v.split(":")[:2]) for v in rabbitmq["volumes"] if v.startswith("./"))
    conf = (COMPOSE.parent / mounts["/etc/rabbitmq/conf.d/20-chatroute.conf"]).read_text()
    assert "definitions.local.path = /etc/rabbitmq/definitions" in conf
    definitions = json.loads(
        (COMPOSE.parent / mounts["/etc/rabbitmq/definitions/20-chatroute.json"]).read_text()
    )
    users_secret = rabbitmq["secrets"][0]
    assert users_secret["target"] == "/etc/rabbitmq/definitions/10-users.json"
    users = json.loads((secrets / "rabbitmq-users.json").read_text())["users"]
    # Then the engine's URL names a user of the users file, with permissions on the vhost
    url = urlsplit((secrets / "amqp_url").read_text().strip().split(";")[0])
    assert [v["name"] for v in definitions["vhosts"]] == [url.path.lstrip("/")]
    assert url.username in {u["name"] for u in users}
    assert {(p["user"], p["vhost"]) for p in definitions["permissions"]} == {
        (u["name"], url.path.lstrip("/")) for u in users
    }
    assert "guest" not in json.dumps([definitions, users])


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


def test_make_secrets_writes_matching_passwords_and_never_replaces_them(secrets: Path) -> None:
    def read(name: str) -> str:
        return (secrets / name).read_text().strip()

    users = {u["name"]: u["password"] for u in json.loads(read("rabbitmq-users.json"))["users"]}
    assert urlsplit(read("database_url")).password == read("postgres_password")
    assert {urlsplit(url).password for url in read("amqp_url").split(";")} == {users["chatroute"]}
    assert urlsplit(read("frontend_amqp_url")).password == users["frontend"]
    assert f"requirepass {urlsplit(read('redis_url')).password}\n" in read("redis.conf") + "\n"
    assert len(set(users.values()) | {read("postgres_password")}) == 3
    # Running it again would change passwords some service already holds: it refuses
    script = str(COMPOSE.parent / "deploy" / "make_secrets.py")
    again = subprocess.run([sys.executable, script, str(secrets)], capture_output=True, text=True)
    assert again.returncode != 0 and "already holds" in again.stderr


def test_prometheus_scrapes_dramatiqs_metrics_from_every_worker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    serving = {
        name: s["environment"]["CHATROUTE_WORKER_METRICS_PORT"]
        for name, s in services.items()
        if "CHATROUTE_WORKER_METRICS_PORT" in (s.get("environment") or {})
    }
    assert set(serving) == {"routing", "stats"}
    assert all(services[name]["command"][1] == "worker" for name in serving)
    config = yaml.safe_load((COMPOSE.parent / "deploy" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "dramatiq")
    targets = job["dns_sd_configs"][0]
    assert set(targets["names"]) == set(serving)
    assert {str(targets["port"])} == set(serving.values())
    # The image gives the worker processes a folder of their own to share counts in
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert "ENV CHATROUTE_WORKER_METRICS_DIR=" in dockerfile


def test_the_cluster_profile_runs_three_rabbitmq_nodes_the_engine_reaches(
    compose: dict[str, Any], secrets: Path
) -> None:
    services = compose["services"]
    nodes = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
    # Given the profile's nodes: the first runs always, the other two with the profile
    assert [services[n].get("profiles") for n in nodes] == [None, ["cluster"], ["cluster"]]
    assert [services[n]["hostname"] for n in nodes] == nodes  # node names rabbit@<hostname>
    assert len({services[n]["image"] for n in nodes}) == 1
    volumes = [{v.split(":")[1]: v.split(":")[0] for v in services[n]["volumes"]} for n in nodes]
    assert len({v["/var/lib/rabbitmq"] for v in volumes}) == 3  # each its own data
    # Then the joining nodes look for each node of the profile, sharing one Erlang cookie
    for mounts in volumes[1:]:
        conf = (COMPOSE.parent / mounts["/etc/rabbitmq/conf.d/30-cluster.conf"]).read_text()
        assert "cluster_formation.peer_discovery_backend = classic_config" in conf
        peers = re.findall(r"classic_config\.nodes\.\d+ = (\S+)", conf)
        assert peers == [f"rabbit@{n}" for n in nodes]
    for name in nodes:
        assert "erlang_cookie" in services[name]["secrets"]
        assert "/var/lib/rabbitmq/.erlang.cookie" in " ".join(services[name]["entrypoint"])
        assert services[name]["volumes"][1].endswith("/etc/rabbitmq/conf.d/20-chatroute.conf:ro")
    assert (secrets / "erlang_cookie").read_text().strip().isalnum()
    # And the engine knows every node, and waits for those the profile runs
    urls = (secrets / "amqp_url").read_text().strip().split(";")
    assert [urlsplit(url).hostname for url in urls] == nodes
    for name in ("migrate", "gateway", "routing", "stats", "timers"):
        waits = services[name].get("depends_on", {})
        if name != "migrate":
            assert waits["rabbitmq-2"] == waits["rabbitmq-3"] == {
                "condition": "service_healthy", "required": False
            }  # fmt: skip
