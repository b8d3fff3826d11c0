"""The ``chatroute`` console script: ``chatroute.cli`` with the long-running processes of a
deployment (``gateway``, ``sweeper``, ``worker``), which only this side may import.

``python -m workers.cli ...`` is the same as ``chatroute ...``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chatroute import bootstrap, cli, logs, nudges
from chatroute.settings import Settings

# A gateway or sweeper started while PostgreSQL restarts waits this long for it.
STARTUP_WAIT_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, {"gateway": gateway, "sweeper": sweeper, "worker": worker})


def _serve_metrics(rt: bootstrap.Runtime, settings: Settings) -> None:
    if settings.metrics_port is not None:
        from chatroute import metrics  # prometheus_client: only for the processes that serve

        metrics.serve(rt, settings.metrics_port)


def gateway(args: argparse.Namespace, settings: Settings) -> int:
    amqp_url = cli.require_amqp(settings, "gateway")
    from workers import broker

    broker.install(settings)
    from workers import gateway as intake
    from workers import relay, routing

    rt = bootstrap.install(bootstrap.build(settings, migrate=True, wait_s=STARTUP_WAIT_S))
    _serve_metrics(rt, settings)
    publisher = relay.AmqpPublisher(amqp_url, settings.queue_type)
    relaying = threading.Thread(target=relay.relay, args=(rt, publisher, args.stop), daemon=True)
    relaying.start()
    nudge = nudges.coalesced(rt.claims, broker.ROUTING_QUEUE, routing.apply_tenant.send)
    intake.Gateway(rt, amqp_url, nudge).run(args.stop)
    relaying.join(timeout=5)
    return 0


def sweeper(args: argparse.Namespace, settings: Settings) -> int:
    from workers import broker

    broker.install(settings)
    from workers import routing, stats, timers

    rt = bootstrap.install(bootstrap.build(settings, wait_s=STARTUP_WAIT_S))
    _serve_metrics(rt, settings)
    nudge = nudges.coalesced(rt.claims, broker.ROUTING_QUEUE, routing.apply_tenant.send)
    nudge_stats = nudges.coalesced(rt.claims, broker.STATS_QUEUE, stats.fold_tenant.send)
    timers.run(rt, nudge, nudge_stats, args.stop)
    return 0


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``dramatiq workers.main``; it stops every process when one dies, so restart it.
    ``workers.run_dramatiq`` is dramatiq's command line with the engine's JSON logs."""
    command = [
        sys.executable,
        "-m",
        "workers.run_dramatiq",
        "workers.main",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        *(["--queues", *args.queues] if args.queues else []),
    ]
    with _worker_metrics_folder(settings) as folder:
        return _run_restarting(command, settings, folder, args.stop)


@contextmanager
def _worker_metrics_folder(settings: Settings) -> Iterator[Path | None]:
    """Where the worker processes keep dramatiq's metrics; None when they are not served."""
    if settings.worker_metrics_port is None:
        yield None
    elif settings.worker_metrics_dir:
        yield Path(settings.worker_metrics_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="chatroute-worker-metrics-") as folder:
            yield Path(folder)


def _run_restarting(
    command: list[str], settings: Settings, metrics: Path | None, stop: threading.Event
) -> int:
    from workers import broker

    env = {**os.environ, **(broker.prometheus_env(settings, metrics) if metrics else {})}
    while not stop.is_set():
        if metrics:
            broker.clear_prometheus_folder(metrics)
        child = subprocess.Popen(command, env=env)
        while child.poll() is None and not stop.wait(0.5):
            pass
        if stop.is_set():
            child.send_signal(signal.SIGTERM)
            return child.wait()
        logs.get("chatroute.worker").warning("workers_restarting", exit_status=child.returncode)
        stop.wait(1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
