"""dramatiq's own Prometheus metrics from the worker processes (``CHATROUTE_WORKER_METRICS_PORT``):
the counts of every worker process of a ``chatroute worker``, on one page."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Pipeline, Vhost, one_conversation, running, spare_port, wait_until

pytestmark = pytest.mark.services


def handled(port: int, queue: str) -> float:
    """dramatiq_messages_total of ``queue`` on the workers' page (0 while it does not answer)."""
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
        if sample.name == "dramatiq_messages_total" and sample.labels["queue_name"] == queue
    )


def test_the_workers_serve_dramatiqs_metrics(pg_url: str, vhost: Vhost, tmp_path: Path) -> None:
    # Given two worker processes serving dramatiq's metrics
    port = spare_port()
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=2, threads=1)
    pipeline.env |= {
        "CHATROUTE_WORKER_METRICS_PORT": str(port),
        "CHATROUTE_WORKER_METRICS_DIR": str(tmp_path / "worker-metrics"),
    }
    with running(pipeline, vhost.url) as log:
        # When they handle an event and the stats worker's nudge
        pipeline.publish(one_conversation())
        wait_until(lambda: log.has("conversation.assigned"), 60, "the assignment")
        # Then the page counts the messages each actor handled
        wait_until(lambda: handled(port, "chatroute.routing") >= 1, 30, "routing messages")
        wait_until(lambda: handled(port, "chatroute.stats") >= 1, 30, "stats messages")
