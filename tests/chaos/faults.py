"""Faults at random moments: processes SIGKILLed (and restarted, as a supervisor would) and
servers restarted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chatroute.amqp import GATEWAY_QUEUE
from tests.chaos.servers import Servers
from tests.e2e.harness import Pipeline

KILL_WORKER = "kill worker"  # a `chatroute worker` and every process it started
KILL_WORKER_PROCESS = "kill worker process"  # one dramatiq process; its supervisor restarts it
KILL_GATEWAY = "kill gateway"
KILL_SWEEPER = "kill sweeper"
RESTART_RABBITMQ = "restart rabbitmq"
RESTART_POSTGRES = "restart postgres"
RESTART_REDIS = "restart redis"
# On a cluster: the node leading chat.gateway (the intake's queue) stopped, then started.
STOP_RABBITMQ_LEADER = "stop rabbitmq leader"
KINDS = (
    KILL_WORKER,
    KILL_WORKER_PROCESS,
    KILL_GATEWAY,
    KILL_SWEEPER,
    RESTART_RABBITMQ,
    RESTART_POSTGRES,
    RESTART_REDIS,
    STOP_RABBITMQ_LEADER,
)


@dataclass
class Fault:
    kind: str
    target: str
    at: float  # time.time() when it took effect: the process killed, the server down
    down_s: float = 0.0  # until the process or server was started again


@dataclass
class Injector:
    """Injects ``plan`` (kinds) at random moments within ``window_s`` of ``started``, each
    once the engine recovered from the one before (``recovered(at)``: it works as usual again
    since the fault at ``at``), so that each fault's recovery is its own."""

    pipeline: Pipeline
    servers: Servers
    roles: dict[str, Callable[[str], None]]  # how to start each process again, by name
    plan: list[str]
    started: float
    window_s: float
    seed: int
    recovered: Callable[[float], bool]
    done: list[Fault] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _moments(self, r: random.Random) -> list[float]:
        # Spread over the window, each with some jitter, so that recoveries rarely overlap.
        step = self.window_s / (len(self.plan) + 1)
        return [step * (n + 1) + r.uniform(-step / 4, step / 4) for n in range(len(self.plan))]

    def _run(self) -> None:
        r = random.Random(self.seed)
        kinds = list(self.plan)
        r.shuffle(kinds)
        for kind, moment in zip(kinds, self._moments(r), strict=True):
            time.sleep(max(0.0, self.started + moment - time.time()))
            self._await_recovery()
            try:
                self.done.append(self._inject(kind, r))
            except Exception as error:  # a fault that could not be injected is reported
                self.errors.append(f"{kind}: {error!r}")

    def _await_recovery(self, longest_s: float = 120.0) -> None:
        if not self.done:
            return
        deadline = time.time() + longest_s
        while not self.recovered(self.done[-1].at) and time.time() < deadline:
            time.sleep(0.25)

    def _inject(self, kind: str, r: random.Random) -> Fault:
        restarts = {
            RESTART_RABBITMQ: 0.0,
            RESTART_POSTGRES: r.uniform(1, 3),
            RESTART_REDIS: r.uniform(0.2, 1),
        }
        if kind == STOP_RABBITMQ_LEADER:
            node = self.servers.rabbit.leader(GATEWAY_QUEUE)
            target = node.node.split("@")[0]
            node.stop()
            at = time.time()
            time.sleep(r.uniform(2, 6))  # a new leader takes over meanwhile
            node.start()
        elif kind in restarts:
            target = kind.split()[-1]
            at = self.servers.restart(target, down_s=restarts[kind])
        elif kind == KILL_WORKER_PROCESS:
            target = r.choice(self._named("worker"))
            at = self._kill_one_process(target)
        else:
            role = {KILL_WORKER: "worker", KILL_GATEWAY: "gateway", KILL_SWEEPER: "sweeper"}[kind]
            target = r.choice(self._named(role))
            self.pipeline.kill(target)
            at = time.time()
            time.sleep(r.uniform(0.5, 2.5))  # down a moment, then its supervisor restarts it
            self.roles[target](target)
        return Fault(kind, target, at, time.time() - at)

    def _named(self, role: str) -> list[str]:
        return sorted(name for name in self.pipeline.children if name.startswith(role))

    def _kill_one_process(self, name: str) -> float:
        """SIGKILL one dramatiq worker process of ``name`` (not its supervisor)."""
        session = self.pipeline.children[name].pid
        out = subprocess.run(
            ["pgrep", "-s", str(session), "-f", "dramatiq workers.main"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        # The first is dramatiq's main process; its children do the work.
        workers = sorted(int(pid) for pid in out)[1:] or [int(pid) for pid in out]
        if not workers:
            raise RuntimeError(f"{name} has no dramatiq process to kill")
        os.kill(workers[-1], signal.SIGKILL)
        return time.time()
