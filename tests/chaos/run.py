"""The chaos run: the real pipeline under generated traffic while faults are injected, then
checked against the oracle (see ``tests/chaos/__init__.py``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from chatroute import bootstrap
from chatroute.amqp import DECISIONS_EXCHANGE, REJECTED_QUEUE, connect
from chatroute.errors import reason_kind
from chatroute.settings import CLASSIC, QUORUM, Settings
from chatroute.stats import Window, rows
from chatroute.store import db, figures, tables
from tests.chaos import checks, faults
from tests.chaos.servers import Servers
from tests.chaos.traffic import CANARY_TENANT, Canary, Publishing, Traffic, build
from tests.e2e.harness import ROOT, DecisionLog, Pipeline

# Events published this long before their ``time`` (see tests/chaos/traffic.py): longer than
# any outage the run injects, a RabbitMQ restart (about 10 s) included.
LEAD_S = 25.0
UNKNOWN_RETRY_S = 5  # how long an event for a conversation that never starts waits
DECISION_QUEUE = "chaos.decisions"
ROLES = {
    "gateway": ("gateway",),
    "worker": ("worker", "--processes", "1", "--threads", "2", "--queues", "chatroute.routing"),
    "stats": ("worker", "--processes", "1", "--threads", "1", "--queues", "chatroute.stats"),
    "sweeper": ("sweeper",),
}


@dataclass(frozen=True)
class Size:
    conversations: int
    span_s: float  # conversations start over this long
    faults: tuple[str, ...]
    tenants: int = 5  # and as many publishers, sending at once
    gateways: int = 2
    workers: int = 4
    rabbit_nodes: int = 1  # more: a cluster, every queue a quorum queue on each node


SHORT = Size(
    conversations=700,
    span_s=40,
    faults=(
        faults.KILL_WORKER,
        faults.KILL_WORKER_PROCESS,
        faults.KILL_GATEWAY,
        faults.KILL_GATEWAY,
        faults.RESTART_RABBITMQ,
        faults.RESTART_POSTGRES,
        faults.RESTART_REDIS,
    ),
)
FULL = Size(
    conversations=3500,
    span_s=150,
    faults=(
        *(faults.KILL_WORKER,) * 4,
        *(faults.KILL_WORKER_PROCESS,) * 3,
        *(faults.KILL_GATEWAY,) * 4,
        faults.KILL_SWEEPER,
        *(faults.RESTART_RABBITMQ,) * 2,
        *(faults.RESTART_POSTGRES,) * 2,
        *(faults.RESTART_REDIS,) * 2,
    ),
)


def on_cluster(size: Size, nodes: int = 3) -> Size:
    """``size`` on a cluster of ``nodes``: each RabbitMQ restart becomes a stop of the node
    leading chat.gateway, and there is one stop more (a whole cluster's restart is left to
    the run on one node)."""
    kept = tuple(f for f in size.faults if f != faults.RESTART_RABBITMQ)
    stops = (faults.STOP_RABBITMQ_LEADER,) * (len(size.faults) - len(kept) + 1)
    return replace(size, faults=kept + stops, rabbit_nodes=nodes)


@dataclass
class Outcome:
    traffic: Traffic
    faults: list[faults.Fault]
    findings: checks.Findings
    figures: dict[str, Any] = field(default_factory=dict)
    recovery: list[tuple[faults.Fault, float | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.findings.summary().values())


def run(size: Size, seed: int, work: Path, say: Callable[[str], None]) -> Outcome:
    # The publishers reconnect through every broker restart; pika would log each attempt.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    work.mkdir(parents=True, exist_ok=True)
    servers = Servers(size.rabbit_nodes)
    nodes = size.rabbit_nodes
    say(f"starting private RabbitMQ ({nodes} nodes), PostgreSQL and Redis in {servers.root}")
    servers.start()
    try:
        return _Run(size, seed, work, servers, say).go()
    finally:
        servers.stop()


class _Run:
    def __init__(
        self, size: Size, seed: int, work: Path, servers: Servers, say: Callable[[str], None]
    ) -> None:
        self.size, self.seed, self.work, self.servers, self.say = size, seed, work, servers, say
        self.pipeline = Pipeline(servers.postgres.url, servers.rabbit.url, work)
        self.pipeline.env |= {
            "CHATROUTE_REDIS_URL": servers.redis.url,
            "CHATROUTE_UNKNOWN_RETRY_S": str(UNKNOWN_RETRY_S),
        }
        if size.rabbit_nodes > 1:  # replicated: classic queues would be down with their node
            self.pipeline.env["CHATROUTE_QUEUE_TYPE"] = QUORUM
        self.rt = bootstrap.build(Settings(database_url=servers.postgres.url))
        self.engine = self.rt.engine
        self.exits: list[str] = []
        self._watching = threading.Event()

    # ------------------------------------------------------------ the run

    def go(self) -> Outcome:
        log = DecisionLog(
            self.servers.rabbit.url,
            queue=DECISION_QUEUE,
            queue_type=self.pipeline.env.get("CHATROUTE_QUEUE_TYPE", CLASSIC),
        )
        self._start_pipeline()
        canary = Canary(self.servers.rabbit.url, "probe")
        try:
            self._warm_up(log)
            canary.start()
            traffic, publishing, injector = self._traffic(log, canary)
            canary.stop()
            self.say(f"settling until {traffic.horizon:%H:%M:%S} (the last timer's due time)")
            settled = self._settle(log, traffic.horizon)
        finally:
            self._watching.clear()
            self.pipeline.stop()
        time.sleep(1.0)  # the last acknowledgements
        log.stop()
        return self._check(log, traffic, publishing, injector, canary, settled)

    def _start_pipeline(self) -> None:
        self.pipeline.migrate()
        counts = {
            "gateway": self.size.gateways,
            "worker": self.size.workers,
            "stats": 1,
            "sweeper": 1,
        }
        for role, count in counts.items():
            for n in range(1, count + 1):
                self._spawn(f"{role}-{n}")
        self._watching.set()
        threading.Thread(target=self._watch, daemon=True).start()

    def _spawn(self, name: str) -> None:
        self.pipeline.spawn(name, *ROLES[name.rsplit("-", 1)[0]])

    def _watch(self) -> None:
        """A process that exits on its own is a finding; it is restarted, as compose would."""
        while self._watching.wait(0.5) and self._watching.is_set():
            for name, child in list(self.pipeline.children.items()):
                if child.poll() is not None and self.pipeline.children.get(name) is child:
                    self.exits.append(f"{name} exited with status {child.returncode}")
                    self._spawn(name)

    def _warm_up(self, log: DecisionLog) -> None:
        probe = Canary(self.servers.rabbit.url, "warm-up", every_s=0.5)
        probe.start()
        deadline = time.monotonic() + 120
        while not any(d["tenant"] == CANARY_TENANT for d in log.decisions):
            if time.monotonic() > deadline:
                raise RuntimeError("the pipeline never decided a probe event")
            time.sleep(0.2)
        probe.stop()

    def _traffic(
        self, log: DecisionLog, canary: Canary
    ) -> tuple[Traffic, Publishing, faults.Injector]:
        started = time.time() + 1.0
        first_time = datetime.fromtimestamp(started, UTC) + timedelta(seconds=LEAD_S)
        traffic = build(
            self.size.conversations, self.size.tenants, self.size.span_s, first_time, self.seed
        )
        duration = traffic.messages[-1].at_s
        self.say(
            f"publishing {len(traffic.messages)} messages over {duration:.0f} s from "
            f"{self.size.tenants} publishers (conversations from {traffic.opens_s:.0f} s); "
            f"injecting {len(self.size.faults)} faults"
        )
        publishing = Publishing(self.servers.rabbit.url, traffic, started)
        # Faults while conversations go on: from the first one's start.
        injector = faults.Injector(
            self.pipeline,
            self.servers,
            {n: self._spawn for n in self._names()},
            list(self.size.faults),
            started + traffic.opens_s,
            window_s=min(duration - traffic.opens_s, self.size.span_s + 10),
            seed=self.seed,
            recovered=lambda at: canary.recovery_s(at, _Arrivals(log).get) is not None,
        )
        publishing.start()
        injector.start()
        publishing.join()
        injector.join()
        return traffic, publishing, injector

    def _names(self) -> list[str]:
        return list(self.pipeline.children)

    def _settle(self, log: DecisionLog, horizon: datetime, timeout_s: float = 300) -> bool:
        """Wait until every timer is due, and everything is applied, sent, counted, received."""
        deadline = time.monotonic() + max(0.0, (horizon - datetime.now(UTC)).total_seconds())
        deadline += timeout_s
        while time.monotonic() < deadline:
            if datetime.now(UTC) > horizon + timedelta(seconds=1) and self._quiet(log):
                return True
            time.sleep(1.0)
        return False

    def _quiet(self, log: DecisionLog) -> bool:
        try:
            backlog = _backlog(self.rt)
        except DBAPIError:  # the database is still coming back
            return False
        arrived = len({d["id"] for d in log.decisions})
        recent = bool(log.arrived) and time.time() - log.arrived[-1] < 2.0
        return not any(backlog[:4]) and arrived >= backlog[4] and not recent

    # ------------------------------------------------------------ the checks

    def _check(
        self,
        log: DecisionLog,
        traffic: Traffic,
        publishing: Publishing,
        injector: faults.Injector,
        canary: Canary,
        settled: bool,
    ) -> Outcome:
        self.say("checking against the oracle (chatroute replay of each tenant's events)")
        seen = checks.inbox(self.engine)
        # Garbage without a usable tenant and id is rejected without an inbox row: the oracle
        # gets those bodies as they were sent.
        keyless = [m.body.decode() for m in traffic.messages if m.key is None]
        oracle = _Oracle(self.work / "oracle", seen, keyless, traffic.horizon)
        published = [m.key for m in traffic.messages if m.key is not None]
        found = checks.merge(
            checks.events(published, seen, oracle.inbox),
            checks.decisions(log.decisions, oracle.decisions),
            checks.kept_copies(log.decisions, _kept_copies(self.servers.rabbit.url)),
            checks.overbooking(seen, log.decisions),
            checks.placement(checks.snapshot(self.engine), traffic.horizon),
            checks.state(checks.snapshot(self.engine), oracle.state),
            checks.statistics(_stats(self.servers.postgres.url), oracle.stats),
        )
        found.violations += self.exits + publishing.errors + injector.errors
        if not settled:
            found.violations.append("the pipeline did not settle in time")
        _keep(self.work / "decisions.jsonl", log.decisions, log.arrived)
        _keep(self.work / "oracle" / "decisions.jsonl", oracle.decisions)
        outcome = Outcome(traffic, injector.done, found)
        arrivals = _Arrivals(log)
        outcome.recovery = [(f, canary.recovery_s(f.at, arrivals.get)) for f in injector.done]
        outcome.figures = _figures(seen, log, oracle, publishing, traffic)
        if outcome.figures["transit_max_s"] >= LEAD_S:
            found.violations.append(
                f"an event took {outcome.figures['transit_max_s']} s to arrive, beyond the "
                f"lead of {LEAD_S} s: the oracle cannot tell the order of its timers"
            )
        self.engine.dispose()
        return outcome


def _backlog(rt: bootstrap.Runtime) -> tuple[int, int, int, int, int]:
    """Unapplied events, unsent decisions, overdue timers, tenants not counted, and how many
    decisions were sent to ``chat.decisions``."""
    i, o, t = tables.inbox.c, tables.outbox.c, tables.timers.c
    now = datetime.now(UTC)
    with rt.engine.connect() as connection:
        new = connection.scalar(select(func.count()).where(i.state == "new"))
        unsent = connection.scalar(select(func.count()).where(o.sent_at.is_(None)))
        overdue = connection.scalar(select(func.count()).where(t.state == "armed", t.due <= now))
        decided = connection.scalar(select(func.count()).where(o.exchange == DECISIONS_EXCHANGE))
    stale = len(figures.stale_tenants(rt.sessions))
    return int(new or 0), int(unsent or 0), int(overdue or 0), stale, int(decided or 0)


class _Oracle:
    """``chatroute replay --stamped`` of each tenant's events, in the order the pipeline
    recorded them and stamped with the moments it received them (the contract: the pipeline
    decides what a replay of its events so stamped decides), each tenant alone (tenants are
    independent, and alone each one's virtual clock follows its own events, as the pipeline's
    timers do), with the same settings."""

    def __init__(
        self,
        directory: Path,
        seen: list[checks.InboxEntry],
        keyless: list[str],
        horizon: datetime,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        by_tenant: dict[str, list[tuple[str, datetime | None]]] = defaultdict(list)
        for entry in seen:
            by_tenant[entry.tenant].append((entry.body, entry.received_at))
        by_tenant["keyless"] = [(body, None) for body in keyless]
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = list(
                pool.map(
                    lambda item: _replay(directory, item[0], item[1], horizon), by_tenant.items()
                )
            )
        self.decisions = [d for decisions, _ in done for d in decisions]
        self.inbox: list[checks.InboxEntry] = []
        self.state: checks.Snapshot = defaultdict(dict)
        self.stats: list[dict[str, Any]] = []
        for _, url in done:
            engine = db.make_engine(url)
            self.inbox += checks.inbox(engine)
            for table, found in checks.snapshot(engine).items():
                self.state[table] |= found
            engine.dispose()
            self.stats += _stats(url)


def _replay(
    directory: Path, tenant: str, bodies: list[tuple[str, datetime | None]], horizon: datetime
) -> tuple[list[dict[str, Any]], str]:
    events = directory / f"{tenant}.jsonl"
    events.write_text("".join(_stamped(body, received) + "\n" for body, received in bodies))
    url = f"sqlite:///{directory / tenant}.db"
    until = horizon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env = {
        **os.environ,
        "CHATROUTE_UNKNOWN_RETRY_S": str(UNKNOWN_RETRY_S),
        "CHATROUTE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("CHATROUTE_DATABASE_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatroute.cli",
            "replay",
            "--stamped",
            str(events),
            "--db",
            url,
            "--until",
            until,
        ],
        env=env,
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return [json.loads(line) for line in done.stdout.splitlines()], url


def _stamped(body: str, received: datetime | None) -> str:
    moment = None if received is None else received.isoformat()
    return json.dumps({"body": body, "received_at": moment})


def _keep(path: Path, decisions: list[dict[str, Any]], arrived: list[float] | None = None) -> None:
    """Write decisions as JSON lines (with their arrival time, when known), to look into."""
    with path.open("w") as out:
        for n, decision in enumerate(decisions):
            extra = {} if arrived is None else {"_arrived": arrived[n]}
            out.write(json.dumps(decision | extra) + "\n")


def _stats(url: str) -> list[dict[str, Any]]:
    rt = bootstrap.build(Settings(database_url=url))
    try:
        return rows(rt, "respondent", Window())
    finally:
        rt.engine.dispose()


def _kept_copies(amqp_url: str) -> set[str]:
    """The decision ids of the bodies kept in ``chat.events.rejected``."""
    connection = connect(amqp_url)  # any node of a cluster
    channel = connection.channel()
    kept = set()
    while True:
        method, properties, _ = channel.basic_get(REJECTED_QUEUE, auto_ack=True)
        if method is None:
            break
        kept.add(str((properties.headers or {}).get("x-decision-id")))
    connection.close()
    return kept


class _Arrivals:
    """When the first decision of each cause arrived, read as the log grows."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self.seen = 0
        self.first: dict[str, float] = {}

    def get(self, cause: str) -> float | None:
        # The log's thread appends the time, then the decision: read up to the shorter.
        known = min(len(self.log.arrived), len(self.log.decisions))
        for n in range(self.seen, known):
            self.first.setdefault(self.log.decisions[n]["causationid"], self.log.arrived[n])
        self.seen = known
        return self.first.get(cause)


def _figures(
    seen: list[checks.InboxEntry],
    log: DecisionLog,
    oracle: _Oracle,
    publishing: Publishing,
    traffic: Traffic,
) -> dict[str, Any]:
    states = Counter(e.state for e in seen if e.tenant != CANARY_TENANT)
    # From when each event was due to be published (its time less the lead) to its inbox row:
    # below the lead, no timer fell due before an earlier event arrived (the oracle holds).
    transit = [
        (e.received_at - e.event_time).total_seconds() + LEAD_S
        for e in seen
        if e.state == "applied" and e.tenant != CANARY_TENANT
    ]
    reasons = Counter(
        reason_kind(e.reason or "")
        for e in seen
        if e.state == "rejected" and e.tenant != CANARY_TENANT
    )
    return {
        "events": traffic.events,
        "messages": len(traffic.messages),
        "resent": traffic.duplicates,
        "garbage": traffic.garbage,
        "applied": states["applied"],
        "rejected": states["rejected"],
        "rejected_by_reason": dict(reasons.most_common()),
        "decisions": len(oracle.decisions),
        "decisions_received": len(log.decisions),
        "decisions_by_kind": _kinds(log.decisions),
        "publish_retries": publishing.retries,
        "publish_late_max_s": round(max(publishing.lateness, default=0.0), 2),
        "transit_max_s": round(max(transit, default=0.0), 2),
        "lead_s": LEAD_S,
    }


def _kinds(decisions: list[dict[str, Any]]) -> dict[str, int]:
    """The sites' decisions received (each id once) by type and cause, code or reason:
    ``conversation.assigned/new``, ``conversation.assigned/new+sticky``,
    ``conversation.unrouted/wait_timeout``, ``respondent.paused/no_answer``..."""
    seen: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        if decision["tenant"] != CANARY_TENANT and decision["type"] != "event.rejected":
            seen.setdefault(decision["id"], decision)
    kinds: Counter[str] = Counter()
    for decision in seen.values():
        data = decision["data"]
        why = data.get("cause") or data.get("code") or data.get("reason")
        kind = decision["type"] + ("" if why is None else f"/{why}")
        kinds[kind + ("+sticky" if data.get("sticky") else "")] += 1
    return dict(sorted(kinds.items()))


def report(outcome: Outcome, size: Size, out: Callable[[str], None]) -> None:
    f, found = outcome.figures, outcome.findings
    out(
        f"events      {f['events']:>7}  ({f['messages']} messages: {f['resent']} resent, "
        f"{f['garbage']} garbage) over {size.tenants} tenants, one publisher each, at once"
    )
    out(f"applied     {f['applied']:>7}")
    out(f"rejected    {f['rejected']:>7}  {f['rejected_by_reason']}")
    out(
        f"decisions   {f['decisions']:>7}  (the oracle's); {f['decisions_received']} received, "
        f"{found.redelivered} of them a second time (same id)"
    )
    kinds = f.get("decisions_by_kind", {})
    out("  by kind: " + ", ".join(f"{kind} {n}" for kind, n in kinds.items()))
    out(
        f"publishers  late by {f['publish_late_max_s']} s at most, {f['publish_retries']} "
        f"publishes made again; events reached the inbox {f['transit_max_s']} s after their "
        f"time less the lead at most (lead {f['lead_s']} s)"
    )
    out("")
    out(f"{'fault':<22} {'target':<12} {'at s':>6} {'down s':>7} {'recovered in s':>15}")
    first = min((fault.at for fault in outcome.faults), default=0.0)
    for fault, recovered in outcome.recovery:
        shown = "-" if recovered is None else f"{recovered:.2f}"
        out(
            f"{fault.kind:<22} {fault.target:<12} {fault.at - first:>6.1f} "
            f"{fault.down_s:>7.2f} {shown:>15}"
        )
    by_kind = Counter(fault.kind for fault in outcome.faults)
    out("faults by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    out("")
    for title, items in (
        ("lost", found.lost),
        ("duplicated", found.duplicated),
        ("overbooked", found.overbooked),
        ("violations", found.violations),
    ):
        out(f"{title:<11} {len(items):>7}")
        for item in items[:10]:
            out(f"    {item}")
    s = found.summary()
    # One intake queue, chat.gateway: sharded intake is not built yet.
    cluster = f" nodes={size.rabbit_nodes} shards=1" if size.rabbit_nodes > 1 else ""
    out(
        f"chaos: events={f['events']} faults={len(outcome.faults)} lost={s['lost']} "
        f"duplicated={s['duplicated']} overbooked={s['overbooked']} violations={s['violations']}"
        + cluster
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI form, under 5 minutes")
    parser.add_argument(
        "--cluster", action="store_true", help="on a 3-node RabbitMQ cluster, its nodes stopped"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures and findings here")
    parser.add_argument("--keep", type=Path, help="keep logs and oracle files here")
    args = parser.parse_args(argv)
    # Stopped by a signal, it still stops its private servers (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    size = SHORT if args.short else FULL
    size = on_cluster(size) if args.cluster else size
    work = args.keep or Path(tempfile.mkdtemp(prefix="chatroute-chaos-"))
    started = time.monotonic()
    outcome = run(size, args.seed, work, lambda line: print(f"chaos: {line}", file=sys.stderr))
    report(outcome, size, print)
    print(f"(took {time.monotonic() - started:.0f} s; logs in {work})", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "figures": outcome.figures,
                    "summary": outcome.findings.summary(),
                    "faults": [vars(f) | {"recovered_s": r} for f, r in outcome.recovery],
                    "findings": vars(outcome.findings),
                },
                indent=2,
                default=str,
            )
        )
    return 0 if outcome.ok else 1
