"""``deploy/grafana/chatroute.json``: every query of the dashboard names metrics the engine
exports (its endpoint, scraped here, and dramatiq's middleware on the workers), so no panel
stays empty for a name that does not exist."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import dramatiq.middleware.prometheus
from prometheus_client import REGISTRY, CollectorRegistry

from chatroute import bootstrap, metrics
from chatroute.clock import VirtualClock
from chatroute.settings import Settings
from chatroute.tools.replay import replay
from tests.builders import jsonl
from tests.integration.test_queues import AT, two_tenants

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "chatroute.json"
NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b")
# PromQL's own words, and the label names the queries group by.
PROMQL = {"sum", "max", "min", "avg", "rate", "by", "without", "histogram_quantile", "le"}
LABELS = {"tenant", "group", "type", "reason", "actor_name", "queue_name"}
SUFFIXES = ("_bucket", "_sum", "_count")


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads (label matchers, durations and numbers out)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", query)
    bare = re.sub(r"\blabel_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\)", r" \1 ", bare)
    return {_family(n) for n in NAME.findall(bare) if n not in PROMQL | LABELS}


def _family(name: str) -> str:
    """A histogram's series name as its family's (``..._bucket`` is ``...``)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def exported(tmp_path: Path) -> set[str]:
    """What a scrape of the engine shows (a tenant replayed into its database), its counters,
    and the metrics dramatiq's Prometheus middleware declares on the workers."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/d.db")
    replay(settings, io.BytesIO(jsonl(two_tenants())).readlines(), io.StringIO())
    registry = CollectorRegistry()
    registry.register(metrics.EngineCollector(bootstrap.build(settings, VirtualClock(AT))))
    names = {family.name for family in registry.collect()}
    names |= {f"{family.name}_total" for family in REGISTRY.collect() if family.type == "counter"}
    source = Path(dramatiq.middleware.prometheus.__file__).read_text()
    return names | set(re.findall(r'"(dramatiq_[a-z_]+)"', source))


def test_every_query_names_a_metric_the_engine_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported(tmp_path)
    assert {"chatroute_group_free_slots", "dramatiq_message_duration_milliseconds"} <= known
    every = queries(dashboard)
    assert len(every) >= 10
    for query in every:
        names = metric_names(query)
        assert names, query
        assert names <= known, (query, names - known)


def test_the_dashboard_shows_throughput_latency_rejections_and_the_groups() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(q) for q in queries(dashboard)))
    for name in (
        "chatroute_decisions_published_total",
        "chatroute_events_rejected_total",
        "dramatiq_message_duration_milliseconds",
        "chatroute_queue_length",
        "chatroute_group_longest_wait_seconds",
        "chatroute_group_available",
        "chatroute_group_free_slots",
        "chatroute_group_open",
    ):
        assert name in used, name
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_a_misspelt_metric_would_be_found() -> None:
    assert metric_names('max by (tenant) (chatroute_queue_lenght{tenant=~"$t"})') == {
        "chatroute_queue_lenght"
    }
    p99 = "histogram_quantile(0.99, sum by (le) (rate(dramatiq_message_duration_milliseconds_bucket"
    assert metric_names(p99 + "[5m])))") == {"dramatiq_message_duration_milliseconds"}
