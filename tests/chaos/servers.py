"""Private RabbitMQ, PostgreSQL and Redis servers for the chaos run.

The chaos run restarts its servers; it starts its own instances of the machine's server
binaries, on free ports and in a directory of its own, so that restarting them never touches
the servers other tests (or a developer) are using. They are real servers: a RabbitMQ restart
is a node shutdown and start, a PostgreSQL restart an immediate (crash) stop and start, a Redis
restart loses every key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pika

DEBIAN_PG = Path("/usr/lib/postgresql")


class ServerError(RuntimeError):
    """A private server could not be started or stopped."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 60) -> None:
    done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
        raise ServerError(f"{' '.join(command)} failed ({done.returncode}): {output}")


def _as(user: str, *command: str) -> tuple[str, ...]:
    """Database servers refuse to run as root: drop to their own user when we are root."""
    return ("runuser", "-u", user, "--", *command) if os.geteuid() == 0 else command


def _owned_dir(path: Path, user: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def missing() -> list[str]:
    """The server programs this machine lacks (the chaos run needs them all)."""
    needed = {
        "rabbitmq-server": shutil.which("rabbitmq-server"),
        "rabbitmqctl": shutil.which("rabbitmqctl"),
        "redis-server": shutil.which("redis-server"),
        "pg_ctl": _pg_bin("pg_ctl"),
    }
    found = [name for name, path in needed.items() if path is None]
    if os.geteuid() != 0:
        found.append("root (to run rabbitmq-server and postgres as their own users)")
    return found


def require(what: str) -> None:
    """Skip the calling test when this machine lacks what private servers need; fail it in CI,
    where the machine must have it."""
    import pytest  # only for the tests that call this, not for ``python -m tests.chaos``

    lacking = missing()
    if lacking:
        message = f"{what} needs {', '.join(lacking)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _pg_bin(name: str) -> str | None:
    candidates = sorted(DEBIAN_PG.glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return str(candidates[-1]) if candidates else shutil.which(name)


@dataclass
class Postgres:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/chatroute"

    @property
    def data(self) -> Path:
        return self.root / "pg" / "data"

    def start(self) -> None:
        _owned_dir(self.root / "pg", "postgres")
        fresh = not self.data.exists()
        if fresh:
            _run(
                *_as(
                    "postgres",
                    _pg("initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                )
            )
        self._start()
        if fresh:
            _run(
                *_as(
                    "postgres",
                    _pg("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "chatroute",
                )
            )

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root / 'pg'} -c listen_addresses=127.0.0.1"
            " -c max_connections=300"
        )
        log = str(self.root / "pg" / "server.log")
        _run(
            *_as(
                "postgres",
                _pg("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                log,
                "-w",
                "-t",
                "60",
                "start",
            )
        )

    def stop(self) -> None:
        """An immediate stop: what a crash leaves, recovered from the WAL at the next start."""
        _run(*_as("postgres", _pg("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"))


def _pg(name: str) -> str:
    found = _pg_bin(name)
    if found is None:
        raise ServerError(f"{name} not found")
    return found


@dataclass
class Rabbit:
    root: Path
    port: int
    dist_port: int

    @property
    def node(self) -> str:
        return f"chaos{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def base(self) -> Path:
        return self.root / f"rabbitmq-{self.port}"  # one per node of a cluster

    def _env(self) -> dict[str, str]:
        base = _owned_dir(self.base, "rabbitmq")
        config = base / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "env.conf").write_text("")
        for name in ("mnesia", "log"):
            _owned_dir(base / name, "rabbitmq")
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(base / "env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        self.launch()
        self.wait()

    def launch(self) -> None:
        _run("rabbitmq-server", "-detached", env=self._env())

    def wait(self) -> None:
        """Until the node accepts sessions (a cluster's node, once its peers answer too)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if answers(self.port) and self._accepts_sessions():
                return
            time.sleep(0.25)
        raise ServerError(f"RabbitMQ node {self.node} did not start (see {self.base}/log)")

    def _accepts_sessions(self) -> bool:
        # The port opens before the node accepts AMQP sessions.
        try:
            pika.BlockingConnection(pika.URLParameters(self.url)).close()
            return True
        except pika.exceptions.AMQPError:
            return False

    def stop(self) -> None:
        _run("rabbitmqctl", "-n", self.node, "shutdown", env=self._env(), timeout=120)

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl`` on this node; its output."""
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.node, "-q", *args],
            env=self._env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerError(f"rabbitmqctl {' '.join(args)} on {self.node}: {done.stderr}")
        return done.stdout

    def join(self, seed: Rabbit) -> None:
        """Make this (fresh, running) node a member of ``seed``'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.node)
        self.ctl("start_app")


class RabbitCluster:
    """Private RabbitMQ nodes on this machine (ports, node names and folders of their own)
    joined in one cluster; the engine is given every node's URL."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [Rabbit(root, free_port(), free_port()) for _ in range(size)]

    @property
    def url(self) -> str:
        return ";".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes[1:]:
            node.join(self.nodes[0])

    def restart(self, down_s: float) -> float:
        """Stop every node, leave them down ``down_s``, start them all at once (a node that
        was not the last to stop waits for its peers); returns when they went down."""
        for node in self.nodes:
            node.stop()
        down = time.time()
        time.sleep(down_s)
        for node in reversed(self.nodes):
            node.launch()
        for node in self.nodes:
            node.wait()
        return down

    def running(self) -> list[Rabbit]:
        return [node for node in self.nodes if answers(node.port)]

    def queues(self, item: str, vhost: str = "/") -> dict[str, str]:
        """``item`` (a ``list_queues`` column: type, leader, members...) of each queue."""
        listed = self.running()[0].ctl("list_queues", "-p", vhost, "--no-table-headers",
                                       "name", item)  # fmt: skip
        rows = (line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
        return {name: value.strip() for name, value in rows}

    def leader(self, queue: str) -> Rabbit:
        """The node that leads quorum queue ``queue`` now."""
        leader = self.queues("leader")[queue]
        return next(node for node in self.nodes if node.node == leader)

    def members(self, queue: str) -> int:
        return self.queues("members")[queue].count("@")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                node.stop()


@dataclass
class Redis:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        base = self.root / "redis"
        base.mkdir(parents=True, exist_ok=True)
        _run(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(base),
            "--pidfile",
            str(base / "redis.pid"),
            "--logfile",
            str(base / "redis.log"),
        )
        deadline = time.monotonic() + 30
        while not answers(self.port):
            if time.monotonic() > deadline:
                raise ServerError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Shut down without saving: every key is gone, as in a restart without persistence."""
        _run("redis-cli", "-p", str(self.port), "shutdown", "nosave")
        deadline = time.monotonic() + 30
        while answers(self.port):
            if time.monotonic() > deadline:
                raise ServerError("redis-server did not stop")
            time.sleep(0.05)


class Servers:
    """The three private servers, started together, each restartable on its own."""

    def __init__(self, rabbit_nodes: int = 1) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chatroute-chaos-servers-"))
        self.root.chmod(0o755)  # the servers' own users must reach their directories
        self.postgres = Postgres(self.root, free_port())
        self.rabbit = RabbitCluster(self.root, rabbit_nodes)
        self.redis = Redis(self.root, free_port())

    def start(self) -> None:
        for server in (self.postgres, self.redis, self.rabbit):
            server.start()

    def restart(self, kind: str, down_s: float = 0.0) -> float:
        """Stop ``kind`` (rabbitmq: every node, postgres or redis), leave it down ``down_s``,
        start it; returns when it went down (``time.time()``)."""
        if kind == "rabbitmq":
            return self.rabbit.restart(down_s)
        server = {"postgres": self.postgres, "redis": self.redis}[kind]
        server.stop()
        down = time.time()
        time.sleep(down_s)
        server.start()
        return down

    def stop(self) -> None:
        for server in (self.rabbit, self.redis, self.postgres):
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                server.stop()  # or it was down already; the directory goes anyway
        shutil.rmtree(self.root, ignore_errors=True)
