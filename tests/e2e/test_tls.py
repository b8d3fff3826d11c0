"""TLS to each service, for real: the whole pipeline over amqps (a TLS proxy in front of the
shared RabbitMQ that requires a client certificate), PostgreSQL with ``sslmode=verify-full``
(a private server that takes TLS only) and ``rediss://`` (a private TLS-only Redis). Each URL
goes the way ops give it: through the settings, untouched, to pika, psycopg and redis-py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from chatroute.health import broker_answers, check
from chatroute.settings import Settings
from tests.conftest import require_service
from tests.e2e.harness import ROOT, Pipeline, Vhost, one_conversation, running, wait_until
from tests.e2e.tls import Certificates, TlsProxy, make_certificates, private_postgres, private_redis

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def proxy(certs: Certificates) -> Iterator[TlsProxy]:
    require_service("RabbitMQ")
    tls = TlsProxy(certs, target_port=5672)
    yield tls
    tls.close()


def amqps_url(
    certs: Certificates, port: int, vhost: str, *, our_ca: bool = True, client: bool = True
) -> str:
    """pika's ``ssl_options`` URL argument: a Python dict literal, percent-encoded."""
    options = {"ca_certs": str(certs.ca)} if our_ca else {}
    if client:
        options |= {"certfile": str(certs.cert("client")), "keyfile": str(certs.key("client"))}
    query = f"?ssl_options={quote(repr(options))}" if options else ""
    return f"amqps://guest:guest@localhost:{port}/{vhost}{query}"


def test_the_pipeline_runs_over_amqps(
    certs: Certificates, proxy: TlsProxy, vhost: Vhost, pg_url: str, tmp_path: Path
) -> None:
    # Given the gateway, a worker and the sweeper reaching RabbitMQ only through TLS
    url = amqps_url(certs, proxy.port, vhost.name)
    pipeline = Pipeline(pg_url, url, tmp_path, processes=1, threads=2)
    with running(pipeline, url) as log:
        # When a frontend publishes over TLS too
        pipeline.publish(one_conversation())
        # Then the decision comes back
        wait_until(lambda: log.has("conversation.assigned"), 60, "the assignment over amqps")


def test_amqps_verifies_the_server_and_presents_the_client_certificate(
    certs: Certificates, proxy: TlsProxy, vhost: Vhost
) -> None:
    assert broker_answers(amqps_url(certs, proxy.port, vhost.name))
    # The proxy wants a client certificate; the system's CAs do not know ours
    assert not broker_answers(amqps_url(certs, proxy.port, vhost.name, client=False))
    assert not broker_answers(amqps_url(certs, proxy.port, vhost.name, our_ca=False))


def chatroute(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("CHATROUTE_")}
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={**plain, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgresql_with_sslmode_from_a_secret_file(certs: Certificates, tmp_path: Path) -> None:
    with private_postgres(certs) as port:
        # Given a database URL asking for a verified TLS connection, in a secret file
        base = f"postgresql://postgres@localhost:{port}/postgres"
        secret = tmp_path / "database_url"
        secret.write_text(f"{base}?sslmode=verify-full&sslrootcert={certs.ca}\n")
        env = {"CHATROUTE_DATABASE_URL_FILE": str(secret)}
        # Then migrations and the health check work over TLS (the server takes nothing else)
        assert chatroute("migrate", env=env).returncode == 0
        health = chatroute("health", "--role", "worker", env=env)
        assert json.loads(health.stdout)["database"] is True, health.stdout + health.stderr
        # And without TLS, or trusting another CA, the server is not reached
        assert not check(Settings(database_url=f"{base}?sslmode=disable"), "worker")["database"]
        wrong_ca = f"{base}?sslmode=verify-full&sslrootcert={certs.cert('client')}"
        assert not check(Settings(database_url=wrong_ca), "worker")["database"]


def test_rediss_with_client_certificates(certs: Certificates, tmp_path: Path) -> None:
    with private_redis(certs, password="redis-pw") as port:
        base = f"rediss://:redis-pw@localhost:{port}/0?ssl_ca_certs={certs.ca}"
        client = f"&ssl_certfile={certs.cert('client')}&ssl_keyfile={certs.key('client')}"
        database = f"sqlite:///{tmp_path}/h.db"

        def redis_reported(url: str) -> bool:
            return bool(check(Settings(database_url=database, redis_url=url), "worker")["redis"])

        assert redis_reported(base + client)
        assert not redis_reported(base)  # no client certificate
        assert not redis_reported(f"redis://:redis-pw@localhost:{port}/0")  # not TLS
