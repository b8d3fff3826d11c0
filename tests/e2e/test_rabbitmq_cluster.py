"""The engine on a 3-node RabbitMQ cluster of private nodes: every queue a quorum queue with a
replica on each node, and the node leading ``chat.gateway`` stopped and started again while
events flow. Nothing is lost or doubled, and each tenant decides as ``chatroute replay``."""

from __future__ import annotations

import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroute.amqp import GATEWAY_QUEUE
from chatroute.settings import QUORUM, Settings
from chatroute.tools.replay import replay
from schemas.events import best_effort_identity
from tests.chaos import servers
from tests.e2e.harness import (
    DecisionLog,
    Pipeline,
    inbox_by_event,
    lines,
    received_times,
    stamped,
    wait_until,
)
from tests.e2e.test_pipeline import (
    TENANTS,
    check_slots,
    configuration,
    inbox_states,
    per_tenant,
)
from tests.e2e.test_queue_types import ENGINE_QUEUES

pytestmark = pytest.mark.services

PHASES = 3  # before the stop, while the node is down, after it is back
PER_PHASE = 40  # conversations per tenant and phase


@pytest.fixture
def cluster() -> Iterator[servers.RabbitCluster]:
    servers.require("a private RabbitMQ cluster")
    root = Path(tempfile.mkdtemp(prefix="chatroute-cluster-"))
    root.chmod(0o755)  # the nodes' own user must reach their folders
    running = servers.RabbitCluster(root)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def phase(n: int) -> list[bytes]:
    bodies = []
    for tenant in TENANTS:
        events = configuration(tenant)
        events.lines = []
        events._ids = iter(range((n + 1) * 10_000, (n + 2) * 10_000))  # type: ignore[assignment]
        for c in range(PER_PHASE):
            events.start(f"c{n}-{c:03d}")
        bodies += lines(events.lines)
    return bodies


@pytest.mark.timeout(600)
def test_a_node_stop_loses_nothing_and_decides_as_replay(
    cluster: servers.RabbitCluster, pg_url: str, tmp_path: Path
) -> None:
    # Given the engine on the cluster, given every node's URL, with three tenants configured
    pipeline = Pipeline(pg_url, cluster.url, tmp_path, processes=2, threads=2)
    pipeline.env["CHATROUTE_QUEUE_TYPE"] = QUORUM
    log = DecisionLog(cluster.url, queue="test.decisions", queue_type=QUORUM)
    setup = lines([line for t in TENANTS for line in configuration(t).lines])
    published = list(setup)
    pipeline.start()
    try:
        pipeline.publish(setup)
        wait_until(lambda: set(cluster.queues("type")) >= ENGINE_QUEUES, 60, "the engine's queues")
        # Then each of its queues has a replica on every node
        assert {name: cluster.members(name) for name in ENGINE_QUEUES} == dict.fromkeys(
            ENGINE_QUEUES, 3
        )
        # When conversations start before, while and after the node leading chat.gateway is down
        for n in range(PHASES):
            if n == 1:
                stopped = cluster.leader(GATEWAY_QUEUE)
                stopped.stop()
            if n == 2:
                stopped.start()
            bodies = phase(n)
            pipeline.publish(bodies, publishers=2)
            published += bodies
            wait_until(lambda p=list(published): answered(log, p), 180, f"phase {n}'s starts")
        wait_until(lambda: inbox_states(pg_url)["new"] == 0, 60, "every event applied")
    finally:
        pipeline.stop()
        log.stop()
    # Then every event was applied once, each conversation assigned (or queued) once, within
    # slots
    assert inbox_states(pg_url) == {"applied": len(published)}
    decided = list({d["id"]: d for d in log.decisions}.values())  # a redelivery seen again
    kinds = Counter(d["type"] for d in decided)
    assert kinds["conversation.assigned"] + kinds["conversation.queued"] == len(started(published))
    check_slots(decided, {})
    # And each tenant's decisions are those of chatroute replay of its events, in the order
    # the engine received them (two publishers interleave)
    out = io.StringIO()
    received = inbox_by_event(pg_url, "seq")
    in_order = sorted(published, key=lambda body: received[best_effort_identity(body)[:2]])
    replay(
        Settings(database_url=f"sqlite:///{tmp_path}/replay.db"),
        stamped(in_order, received_times(pg_url)),
        out,
    )
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert per_tenant(decided) == per_tenant(replayed)


def started(bodies: list[bytes]) -> set[str]:
    return {
        event["id"] for event in map(json.loads, bodies) if event["type"] == "conversation.started"
    }


def answered(log: DecisionLog, published: list[bytes]) -> bool:
    """Every conversation started in ``published`` was assigned or queued."""
    return started(published) <= {d["causationid"] for d in log.decisions}
