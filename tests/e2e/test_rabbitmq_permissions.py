"""The RabbitMQ users of deploy/rabbitmq/definitions.json are enough and no more: on a vhost
made from that file alone, the engine's user runs the gateway, a worker and the sweeper
through an event to its decision and its statistics, the frontend's user publishes events and
reads decisions, and each is refused a name outside its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from sqlalchemy import func, select

from chatroute import bootstrap
from chatroute.amqp import DECISIONS_EXCHANGE, GATEWAY_QUEUE
from chatroute.publish import publish_bodies
from chatroute.settings import Settings
from chatroute.stats import rows
from chatroute.store import publishers, tables
from tests.conftest import require_service
from tests.e2e.harness import ROOT, Pipeline, one_conversation, rabbitmqctl, wait_until

pytestmark = pytest.mark.services

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
ACCESS_REFUSED = 403
PRECONDITION_FAILED = 406


class Deployment:
    """A throw-away vhost and users with exactly the definitions' permissions and topology,
    the users' passwords made by deploy/make_secrets.py; names made unique for the test."""

    def __init__(self, folder: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.vhost = f"chatroute-test-{suffix}"
        self.users = {"chatroute": f"chatroute-test-{suffix}", "frontend": f"frontend-{suffix}"}
        subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "make_secrets.py"), str(folder / "secrets")],
            check=True,
            capture_output=True,
        )
        users = json.loads((folder / "secrets" / "rabbitmq-users.json").read_text())
        self.passwords = {u["name"]: u["password"] for u in users["users"]}
        # Imported in the order the node imports them at boot: users, then definitions.
        self._import(users)
        self._import(json.loads(DEFINITIONS.read_text()))

    def _import(self, document: dict[str, list[dict[str, Any]]]) -> None:
        # rabbitmqctl reads the file as the rabbitmq user: a readable file in /tmp itself.
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir="/tmp") as file:
            file.write(json.dumps(self._renamed(document)))
            file.flush()
            os.chmod(file.name, 0o644)
            rabbitmqctl("import_definitions", file.name)

    def _renamed(self, document: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """``document`` on the test's vhost and users (exchanges and queues keep their names)."""
        for section, entries in document.items():
            for entry in entries:
                if "vhost" in entry:
                    entry["vhost"] = self.vhost
                if "user" in entry:
                    entry["user"] = self.users[entry["user"]]
                if section == "vhosts":
                    entry["name"] = self.vhost
                if section == "users":
                    entry["name"] = self.users[entry["name"]]
        return document

    def url(self, user: str) -> str:
        return f"amqp://{self.users[user]}:{self.passwords[user]}@127.0.0.1:5672/{self.vhost}"

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.vhost)
        for name in self.users.values():
            rabbitmqctl("delete_user", name)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require_service("RabbitMQ")
    made = Deployment(tmp_path)
    yield made
    made.delete()


class Frontend:
    """A chat frontend on the frontend user: publishes events, reads its tenant's decisions
    from a queue of its own (bound before anything is published)."""

    def __init__(self, url: str, tenant: str) -> None:
        self.url = url
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.queue = f"frontend.{tenant}"
        self.channel.queue_declare(self.queue, exclusive=True)
        self.channel.queue_bind(self.queue, DECISIONS_EXCHANGE, routing_key=f"{tenant}.#")
        self.decisions: list[dict[str, Any]] = []

    def publish(self, bodies: list[bytes]) -> None:
        publish_bodies(bodies, self.url)  # as `chatroute publish` does, on this user

    def received(self, kind: str) -> bool:
        while True:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return any(d["type"] == kind for d in self.decisions)
            self.decisions.append(json.loads(body))


def refused(url: str, operation: Callable[[Any], object]) -> bool:
    """Whether RabbitMQ refuses ``operation`` on a channel of ``url`` for lack of permission."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        operation(connection.channel())
    except ChannelClosedByBroker as error:
        return error.reply_code == ACCESS_REFUSED
    finally:
        if connection.is_open:
            connection.close()
    return False


def test_the_definitions_users_run_the_engine_and_nothing_else(
    deployment: Deployment, pg_url: str, tmp_path: Path
) -> None:
    # Given the engine on the definitions' engine user, and a frontend on its own user
    engine_url = deployment.url("chatroute")
    pipeline = Pipeline(pg_url, engine_url, tmp_path, processes=1, threads=2)
    frontend = Frontend(deployment.url("frontend"), "shop-1")
    pipeline.start()
    rt = bootstrap.build(Settings(database_url=pg_url))
    try:
        # When the frontend sends a conversation
        frontend.publish(one_conversation())
        # Then its decision comes back, and the stats worker counts the contact
        wait_until(lambda: frontend.received("conversation.assigned"), 60, "the assignment")
        wait_until(lambda: [r["contacts"] for r in rows(rt)] == [1], 60, "the contact counted")
        health = pipeline_health(pipeline)
    finally:
        pipeline.stop()
        frontend.connection.close()
        rt.engine.dispose()
    assert health["broker"] and health["ready"], health
    logs = "".join(log.read_text(errors="replace") for log in tmp_path.glob("*.log"))
    assert "ACCESS_REFUSED" not in logs
    # And each user is refused what lies outside its names
    assert refused(engine_url, lambda channel: channel.queue_declare("elsewhere"))
    assert refused(engine_url, lambda channel: channel.basic_get("chat.events.rejected"))
    assert refused(deployment.url("frontend"), lambda channel: channel.basic_get(GATEWAY_QUEUE))
    assert refused(deployment.url("frontend"), lambda channel: channel.queue_declare("elsewhere"))


def pipeline_health(pipeline: Pipeline) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "health", "--role", "gateway"],
        env=pipeline.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dict(json.loads(result.stdout))


def test_a_frontend_user_publishes_only_for_the_tenants_it_is_mapped_to(
    deployment: Deployment, pg_url: str, tmp_path: Path
) -> None:
    # Given the frontend's RabbitMQ user mapped to shop-1 only (`chatroute access allow`)
    user = deployment.users["frontend"]
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    publishers.allow(rt.engine, user, ["shop-1"])
    pipeline = Pipeline(pg_url, deployment.url("chatroute"), tmp_path, processes=1, threads=2)
    own, other = (Frontend(deployment.url("frontend"), t) for t in ("shop-1", "shop-2"))
    pipeline.start()
    try:
        # When it publishes a conversation of shop-1 and one of shop-2 (user_id set, as
        # `chatroute publish` sets it)
        own.publish(one_conversation("shop-1") + one_conversation("shop-2"))
        # Then shop-1's is assigned, and each of shop-2's four events is rejected
        wait_until(lambda: own.received("conversation.assigned"), 60, "shop-1's assignment")
        wait_until(lambda: other.received("event.rejected") and len(other.decisions) == 4, 60,
                   "shop-2's rejections")  # fmt: skip
        # And RabbitMQ itself refuses a user_id that is not the publishing connection's user
        spoofed = refused_with(
            deployment.url("frontend"),
            lambda channel: channel.basic_publish(
                "chat.events", "conversation.started", one_conversation("shop-2")[-1],
                pika.BasicProperties(user_id=deployment.users["chatroute"]),
            ),
        )  # fmt: skip
    finally:
        pipeline.stop()
        for frontend in (own, other):
            frontend.connection.close()
    try:
        assert spoofed == PRECONDITION_FAILED
        assert {d["type"] for d in other.decisions} == {"event.rejected"}
        assert {d["data"]["reason"] for d in other.decisions} == {
            f"publisher '{user}' may not publish events for tenant 'shop-2'"
        }
        # And nothing of shop-2 was recorded or changed
        with rt.engine.connect() as connection:
            for table in (tables.tenants, tables.inbox, tables.conversations):
                query = select(func.count()).select_from(table).where(table.c.tenant == "shop-2")
                assert connection.scalar(query) == 0, table.name
    finally:
        rt.engine.dispose()


def refused_with(url: str, operation: Callable[[Any], object]) -> int | None:
    """The reply code RabbitMQ closed the channel with for ``operation`` (None: it did not)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        operation(channel)
    except ChannelClosedByBroker as error:
        return int(error.reply_code)
    finally:
        if connection.is_open:
            connection.close()
    return None
