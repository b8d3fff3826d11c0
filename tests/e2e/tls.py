"""Private TLS endpoints for the TLS tests: certificates from a throw-away CA (openssl), a TLS
proxy in front of the shared RabbitMQ, and private PostgreSQL and Redis servers on spare ports
that speak TLS only. Each is stopped and removed by its context manager."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import spare_port


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, who: str) -> Path:
        return self.folder / f"{who}.pem"

    def key(self, who: str) -> Path:
        return self.folder / f"{who}.key"


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    certs = Certificates(folder)
    ca_key = certs.folder / "ca.key"
    _openssl(f"req -x509 {_new_key(ca_key)} -out {certs.ca} -days 2 -subj /CN=chatroute-test-ca")
    for who in ("server", "client"):
        request, extensions = certs.folder / f"{who}.csr", certs.folder / f"{who}.ext"
        _openssl(f"req -new {_new_key(certs.key(who))} -out {request} -subj /CN={who}")
        extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _openssl(
            f"x509 -req -in {request} -CA {certs.ca} -CAkey {ca_key} -CAcreateserial -days 2 "
            f"-out {certs.cert(who)} -extfile {extensions}"
        )
    return certs


def _new_key(path: Path) -> str:
    return f"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {path}"


def _openssl(arguments: str) -> None:
    # Paths come from tempfile: no spaces, so a plain split keeps each one whole.
    subprocess.run(["openssl", *arguments.split()], check=True, capture_output=True, timeout=60)


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answers on 127.0.0.1:{port}")


class TlsProxy:
    """TLS in front of a plain TCP port; clients must present a certificate of the CA."""

    def __init__(self, certs: Certificates, target_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
        self.context.load_cert_chain(certs.cert("server"), certs.key("server"))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:  # a refused handshake is the point of some tests
            client.close()
            return
        threading.Thread(target=_pump, args=(upstream, secure), daemon=True).start()
        _pump(secure, upstream)

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with suppress(OSError):
                end.close()


def _required(program: str) -> str:
    """The path of ``program``; missing, the test fails in CI and skips elsewhere."""
    found = shutil.which(program) or next(iter(sorted(glob.glob(program), reverse=True)), None)
    if found is None:
        message = f"{program} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def private_postgres(certs: Certificates) -> Iterator[int]:
    """A PostgreSQL server of our own on a spare port that accepts TLS connections only
    (``hostssl`` alone in pg_hba.conf, trust), with the CA's server certificate."""
    initdb = _required("/usr/lib/postgresql/*/bin/initdb")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    # PostgreSQL refuses to run as root: as root, run it as the postgres user, in a folder
    # of its own under /tmp (the test's tmp_path is closed to other users).
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="chatroute-tls-pg-", dir="/tmp"))
    for name in ("server.pem", "server.key"):
        shutil.copy(certs.folder / name, data / name)
    os.chmod(data / "server.key", 0o600)
    if as_postgres:
        shutil.chown(data, "postgres")
        for name in ("server.pem", "server.key"):
            shutil.chown(data / name, "postgres")
    cluster, port = data / "cluster", spare_port()
    try:
        _run(*as_postgres, initdb, "-D", str(cluster), "-U", "postgres", "--auth=trust")
        (cluster / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n")
        options = " ".join(
            [
                f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}",
                f"-c ssl=on -c ssl_cert_file={data}/server.pem -c ssl_key_file={data}/server.key",
                "-c fsync=off",
            ]
        )
        _run(
            *as_postgres,
            pg_ctl,
            "-D",
            str(cluster),
            "-w",
            "-l",
            f"{data}/log",
            "-o",
            options,
            "start",
        )
        yield port
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(cluster), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def private_redis(certs: Certificates, password: str) -> Iterator[int]:
    """A Redis server of our own on a spare port, TLS only, client certificates required."""
    server, port = _required("redis-server"), spare_port()
    child = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(certs.cert("server")),
            "--tls-key-file",
            str(certs.key("server")),
            "--tls-ca-cert-file",
            str(certs.ca),
            "--tls-auth-clients",
            "yes",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(certs.folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        child.terminate()
        child.wait(30)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)
