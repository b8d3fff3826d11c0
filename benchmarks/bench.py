"""chatroute on the real pipeline, beside dramatiq baselines measured in the same run.

    python -m benchmarks.bench --quick                      # under 2 minutes
    python -m benchmarks.bench --json bench.json --plot bench.png

Measures, against RabbitMQ and PostgreSQL on this machine: sustained events/s with 1, 2 and 4
worker processes; event-to-decision latency at fixed rates; how a decision's cost grows with a
group's size, a queue's length and pending timers; timer lateness; ``chatroute replay``
events/s on SQLite; CPU per event by process kind. Baselines: a dramatiq actor that does
nothing, and one doing a PostgreSQL transaction per message. Ends with the line
``bench: events_per_s=X p99_ms_at_500=Y timer_p99_ms=T noop_per_s=N naive_per_s=M``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import create_engine, insert, text

from benchmarks import pipeline as throughput
from benchmarks import timers as lateness
from benchmarks.pipeline import fresh_database, with_redis
from benchmarks.workload import day
from chatroute import apply, bootstrap, intake, logs
from chatroute.settings import Settings
from chatroute.store import census, tables
from tests.builders import Events
from tests.e2e.harness import ROOT, DecisionLog, Pipeline, Vhost, lines, wait_until

# ---------------------------------------------------------------- baselines


def baseline(kind: str, messages: int, processes: int, threads: int) -> float:
    """Messages/s of the ``kind`` actor of ``benchmarks.baseline``, drained from a backlog."""
    vhost, database = Vhost(), fresh_database()
    done = Path(tempfile.mkdtemp()) / "done"
    env = {
        **os.environ,
        "BENCH_AMQP_URL": vhost.url,
        "BENCH_DATABASE_URL": database.replace("+psycopg", ""),
        "BENCH_DONE_FILE": str(done),
        "PYTHONPATH": str(ROOT),
    }
    engine = create_engine(database)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE bench_naive (n integer)"))
    try:
        _enqueue(kind, messages, env)
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "benchmarks.baseline", "--processes",
             str(processes), "--threads", str(threads), "--queues", f"bench.{kind}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        try:
            wait_until(lambda: _ready(vhost.url, kind) < messages, 60, f"{kind} workers")
            started = time.monotonic()
            finished = (lambda: _count(engine) >= messages) if kind == "naive" else done.exists
            wait_until(finished, 600, f"{kind} drained")
            return messages / (time.monotonic() - started)
        finally:
            worker.terminate()
            worker.wait(30)
    finally:
        engine.dispose()
        vhost.delete()


def _enqueue(kind: str, messages: int, env: dict[str, str]) -> None:
    code = (
        "import sys; from benchmarks import baseline as b; actor = getattr(b, sys.argv[1]);"
        "n = int(sys.argv[2]); [actor.send(i, last=i == n - 1) for i in range(n)]"
    )
    subprocess.run([sys.executable, "-c", code, kind, str(messages)], env=env, cwd=ROOT, check=True)


def _ready(amqp_url: str, kind: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return (
            connection.channel()
            .queue_declare(f"bench.{kind}", passive=True, durable=True)
            .method.message_count
        )
    finally:
        connection.close()


def _count(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT count(*) FROM bench_naive")) or 0)


# ---------------------------------------------------------------- latency at a fixed rate


def latency(rate: int, seconds: float, processes: int = 2) -> dict[str, float]:
    """Publish conversation lifecycles at ``rate`` events/s; time each event to its decisions."""
    vhost, database = Vhost(), fresh_database()
    log_dir = Path(tempfile.mkdtemp(prefix="chatroute-latency-"))
    run = with_redis(Pipeline(database, vhost.url, log_dir, processes=processes, threads=2))
    decisions = DecisionLog(vhost.url)
    setup, traffic, _ = throughput.workload(4, int(rate * seconds))
    run.start()
    sent: dict[str, float] = {}
    try:
        run.publish(lines(setup))
        wait_until(lambda: throughput.inbox_states(database)["applied"] == len(setup), 120, "setup")
        kinds = throughput.process_kinds(run)
        before = {kind: throughput.cpu_seconds(pids) for kind, pids in kinds.items()}
        paced(vhost.url, traffic, rate, sent)
        wait_until(lambda: throughput._settled(database, len(setup) + len(traffic)), 300, "applied")
        time.sleep(1.0)  # the relay's last batch
        cpu = {
            f"cpu_ms_per_event_{kind}": 1000
            * (throughput.cpu_seconds(pids) - before[kind])
            / len(traffic)
            for kind, pids in throughput.process_kinds(run).items()
        }
    finally:
        run.stop()
        decisions.stop()
        vhost.delete()
    caused = arrivals(decisions, sent)
    late = delays(sent, caused)
    figures = {"rate": float(rate), "decisions": float(len(late)), **percentiles(late), **cpu}
    return figures | {"stages": stages(database, sent, caused)}


def arrivals(decisions: DecisionLog, sent: dict[str, float]) -> dict[str, tuple[str, float]]:
    """Each decision caused by an event of ``sent``: its id -> (the event's id, its arrival)."""
    return {
        d["id"]: (d["causationid"], arrived)
        for d, arrived in zip(decisions.decisions, decisions.arrived, strict=False)
        if d["causationid"] in sent
    }


def delays(sent: dict[str, float], caused: dict[str, tuple[str, float]]) -> list[float]:
    """Milliseconds from each event's publish to each of its decisions' arrival, sorted."""
    return sorted(1000 * (arrived - sent[cause]) for cause, arrived in caused.values())


def stages(
    database: str, sent: dict[str, float], caused: dict[str, tuple[str, float]]
) -> dict[str, dict[str, float]]:
    """Where the time goes, from the rows' clocks (event ids are unique across tenants here):
    publish to the gateway's intake, intake to the routing transaction's start, that start to
    the relay's publish, the relay to the consumer."""
    engine = create_engine(database)
    with engine.connect() as connection:
        intake = dict(connection.execute(text("SELECT event_id, received_at FROM inbox")).all())
        rows = connection.execute(text("SELECT decision_id, created_at, sent_at FROM outbox"))
        relayed = {d: (created, sent_at) for d, created, sent_at in rows}
    engine.dispose()
    spans: dict[str, list[float]] = {"intake": [], "routing": [], "relay": [], "delivery": []}
    for decision_id, (cause, arrived) in caused.items():
        created, published = relayed[decision_id]
        marks = [sent[cause], intake[cause].timestamp(), created.timestamp(), published.timestamp()]
        for name, start, end in zip(spans, marks, [*marks[1:], arrived], strict=True):
            spans[name].append(1000 * (end - start))
    return {name: percentiles(sorted(values)) for name, values in spans.items()}


def paced(
    amqp_url: str, events: Iterable[dict[str, Any]], rate: float, sent: dict[str, float]
) -> None:
    """One publisher with confirms, sending ``rate`` events/s on a fixed schedule (``events``
    may be a generator that decides when to stop)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        content_type="application/cloudevents+json", delivery_mode=pika.DeliveryMode.Persistent
    )
    start = time.monotonic()
    for n, event in enumerate(events):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[event["id"]] = time.time()
        channel.basic_publish("chat.events", event["type"], json.dumps(event).encode(), properties)
    connection.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
        }
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {
        "p50_ms": statistics.median(values),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": values[-1],
    }


# ---------------------------------------------------------------- how a decision's cost grows


@dataclass
class Setting:
    name: str
    respondents: int = 10
    queued: int = 0
    timers: int = 0


def decision_cost(setting: Setting, decisions: int) -> float:
    """Milliseconds per routed conversation, applied in-process on PostgreSQL, with the
    tenant's group, queue and timers made as large as ``setting`` says."""
    database = fresh_database()
    rt = bootstrap.build(Settings(database_url=database), migrate=True)
    now = datetime.now(UTC)
    _fill(rt, setting, now)
    shop = Events("big", now=now, step=timedelta(milliseconds=10))
    for n in range(decisions):
        shop.start(f"new{n}")
        shop.event("conversation.closed", conversation=f"new{n}")
    intake.ingest(rt, [intake.Incoming(body) for body in lines(shop.lines)])
    # The fill's garbage is not the decisions' cost: a full collection of it, falling in the
    # timed window or not, moved this figure by a third from run to run.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    try:
        while apply.apply_tenant(rt, "big"):
            pass
        elapsed = time.perf_counter() - started
    finally:
        gc.unfreeze()
    rt.engine.dispose()
    return 1000 * elapsed / decisions


def _fill(rt: bootstrap.Runtime, setting: Setting, now: datetime) -> None:
    """Rows written directly, as many days of traffic would have left them."""
    far = now + timedelta(days=365)
    tenant = {"tenant": "big", "counter": setting.queued + 1}
    people = [
        {"tenant": "big", "respondent_id": f"r{n:05d}", "groups": ["G"], "slots": 3,
         "status": "available", "load": n % 3, "version": 1, "last_assigned_at": now}
        for n in range(setting.respondents)
    ]  # fmt: skip
    members = [
        {"tenant": "big", "group_id": "G", "respondent_id": p["respondent_id"], "position": 0}
        for p in people
    ]
    waiting = [
        {"tenant": "big", "conversation_id": f"q{n}", "visitor": "v", "attributes": {},
         "started_at": now, "state": "queued", "group_id": "Q", "visitor_online": True,
         "unread": 0, "snooze_keep": True, "sales": 0.0, "contacts": 0, "stats_seq": 0}
        for n in range(setting.queued)
    ]  # fmt: skip
    queue = [
        {
            "tenant": "big",
            "conversation_id": f"q{n}",
            "group_id": "Q",
            "seq": n + 1,
            "queued_at": now,
            "priority": 0,
            "joined_at": now,
            "cause": "new",
        }
        for n in range(setting.queued)
    ]
    timers = [
        {"tenant": "big", "timer_id": f"wake:t{n}", "kind": "wake", "conversation_id": f"t{n}",
         "due": far + timedelta(seconds=n), "respondent": "r00000", "state": "armed"}
        for n in range(setting.timers)
    ]  # fmt: skip
    rule = {"tenant": "big", "rule_id": "all", "group_id": "G", "priority": 1, "conditions": []}
    with rt.engine.begin() as connection:
        connection.execute(insert(tables.tenants), [tenant])
        connection.execute(insert(tables.rules), [rule])
        for table, rows in ((tables.respondents, people), (tables.memberships, members),
                            (tables.conversations, waiting), (tables.queue_entries, queue),
                            (tables.timers, timers)):  # fmt: skip
            for start in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[start : start + 5000])
        census.recount(connection, "big")
        connection.execute(text("ANALYZE"))


# ---------------------------------------------------------------- replay


def replay_rate(conversations: int) -> dict[str, float]:
    """``chatroute replay`` of a site as busy as 100,000 conversations a day, run as people run
    it: a process of its own (its start counted), a file of events, a new SQLite database."""
    events = day(conversations, span=timedelta(days=conversations / 100_000))
    folder = Path(tempfile.mkdtemp(prefix="chatroute-replay-"))
    (folder / "day.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    command = [sys.executable, "-m", "workers.cli", "replay", str(folder / "day.jsonl")]
    command += ["--db", f"sqlite:///{folder}/replay.db"]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    return {"events": float(len(events)), "seconds": elapsed, "events_per_s": len(events) / elapsed}


# ---------------------------------------------------------------- the run


PARTS = ("baselines", "throughput", "latency", "decision", "timers", "replay")


def run(quick: bool, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Every figure of ``parts`` (the baselines always: every ratio needs them)."""
    size = lambda full, small: small if quick else full  # noqa: E731
    figures: dict[str, Any] = {}
    _step("baselines")
    figures["noop_per_s"] = baseline("noop", size(20000, 5000), 1, 8)
    figures["naive_per_s"] = baseline("naive", size(10000, 3000), 1, 8)
    if "throughput" in parts:
        _step("throughput")
        figures["throughput"] = [
            throughput.measure(p, 2, 6, size(12000, 3000)) for p in (size([1, 2, 4], [2]))
        ]
    if "latency" in parts:
        _step("latency")
        rates = size([100, 500, 1000], [500])
        figures["latency"] = [latency(rate, size(20.0, 8.0)) for rate in rates]
    if "decision" in parts:
        _step("decision cost")
        big = size(10_000, 2_000), size(100_000, 10_000)
        settings = [Setting("small"), Setting("respondents", respondents=big[0]),
                    Setting("queued", queued=big[1]), Setting("timers", timers=big[1])]  # fmt: skip
        figures["decision_ms"] = {s.name: decision_cost(s, size(1000, 300)) for s in settings}
    if "timers" in parts:
        _step("timers")
        figures["timers"] = lateness.measure(
            size(100_000, 10_000), size(1000, 200), 10, size(40.0, 25.0)
        )
    if "replay" in parts:
        _step("replay")
        figures["replay"] = replay_rate(size(20_000, 2_000))
    return figures


def _step(what: str) -> None:
    print(f"bench: {what} ...", file=sys.stderr, flush=True)


def report(figures: dict[str, Any]) -> str:
    noop, naive = figures["noop_per_s"], figures["naive_per_s"]
    figures = {"throughput": [], "latency": [], "decision_ms": {}, **figures}
    best = max((t["events_per_s"] for t in figures["throughput"]), default=float("nan"))
    rows = [f"{'figure':44} {'value':>12} {'x noop':>8} {'x naive':>8}"]
    add = lambda name, value, ratio=True: rows.append(  # noqa: E731
        f"{name:44} {value:12.1f}" + (f" {value / noop:8.2f} {value / naive:8.2f}" if ratio else "")
    )
    add("dramatiq no-op actor, messages/s", noop)
    add("dramatiq one PG transaction per message, /s", naive)
    cpu = lambda run: [  # noqa: E731
        add(f"  cpu ms/event, {key.removeprefix('cpu_ms_per_event_')}", value, ratio=False)
        for key, value in run.items()
        if key.startswith("cpu_ms_per_event_")
    ]
    for t in figures["throughput"]:
        add(f"chatroute events/s, {t['processes']} worker process(es)", t["events_per_s"])
        cpu(t)
    for lat in figures["latency"]:
        for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            add(f"latency at {lat['rate']:.0f} ev/s, {k}", lat[k], ratio=False)
        cpu(lat)
        for stage, spread in lat["stages"].items():
            for k in ("p50_ms", "p99_ms"):
                add(f"  of which {stage}, {k}", spread[k], ratio=False)
    for name, ms in figures["decision_ms"].items():
        add(f"decision cost, {name}, ms", ms, ratio=False)
    timer = figures.get("timers", {"pending": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")})
    add(f"timer lateness p50 ms ({timer['pending']:.0f} pending)", timer["p50_ms"], ratio=False)
    add("timer lateness p99 ms", timer["p99_ms"], ratio=False)
    if "replay" in figures:
        add("chatroute replay events/s (SQLite)", figures["replay"]["events_per_s"], ratio=False)
    at500 = next((lat["p99_ms"] for lat in figures["latency"] if lat["rate"] == 500), float("nan"))
    rows.append(
        f"bench: events_per_s={best:.0f} p99_ms_at_500={at500:.0f}"
        f" timer_p99_ms={timer['p99_ms']:.0f} noop_per_s={noop:.0f} naive_per_s={naive:.0f}"
    )
    if "queued" in figures["decision_ms"]:
        queued, small = figures["decision_ms"]["queued"], figures["decision_ms"]["small"]
        rows.append(
            f"bench: decision_ms_queued={queued:.2f} decision_ms_small={small:.2f}"
            f" queued_x_naive_ms={queued * naive / 1000:.3f}"
            f" timer_p99_x_naive_ms={timer['p99_ms'] * naive / 1000:.1f}"
        )
    return "\n".join(rows)


def plot(figures: dict[str, Any], path: Path) -> None:
    """Latency percentiles against the offered rate, with the saturation throughput marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rates = [lat["rate"] for lat in figures["latency"]]
    axes = pyplot.figure(figsize=(7, 4)).add_subplot()
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        axes.plot(rates, [lat[key] for lat in figures["latency"]], marker="o", label=key[:3])
    for t in figures["throughput"]:
        axes.axvline(t["events_per_s"], linestyle=":", color="grey")
        axes.annotate(f"{t['processes']} proc. saturate", (t["events_per_s"], 0), rotation=90)
    axes.set_xlabel("events/s offered")
    axes.set_ylabel("event to decision, ms")
    axes.set_title("chatroute on RabbitMQ + PostgreSQL (this machine)")
    axes.legend()
    pyplot.tight_layout()
    pyplot.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a run under 2 minutes")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="PNG of latency against throughput")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (the baselines always run)",
    )
    args = parser.parse_args()
    parts = tuple(args.parts.split(","))
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    logs.configure("WARNING")
    figures = run(args.quick, parts)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.plot:
        plot(figures, args.plot)
    print(report(figures), flush=True)


if __name__ == "__main__":
    main()
