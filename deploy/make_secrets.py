"""Write the secret files compose.yaml mounts, with fresh random passwords, all consistent.

    python3 deploy/make_secrets.py secrets/

Writes, into a new or empty directory (mode 0700; the files 0644 so that the services' own
users in their containers can read the bind-mounted files):

- ``postgres_password``        PostgreSQL's ``chatroute`` user (``POSTGRES_PASSWORD_FILE``)
- ``database_url``             the engine's ``CHATROUTE_DATABASE_URL_FILE``
- ``rabbitmq-users.json``      RabbitMQ's users ``chatroute`` (the engine) and ``frontend``,
                               imported at boot before deploy/rabbitmq/definitions.json
- ``erlang_cookie``            the secret RabbitMQ's nodes share (the ``cluster`` profile)
- ``amqp_url``                 the engine's ``CHATROUTE_AMQP_URL_FILE``: every node of the
                               ``cluster`` profile (a connection skips those not running)
- ``frontend_amqp_url``        for the chat frontends (publish events, read decisions)
- ``redis.conf``               Redis's configuration, with its password
- ``redis_url``                the engine's ``CHATROUTE_REDIS_URL_FILE``

Standard library only: it runs on the host that runs compose, before anything is installed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

VHOST = "chatroute"
ENGINE_USER = "chatroute"
FRONTEND_USER = "frontend"
# compose.yaml's RabbitMQ services; the last two run with its "cluster" profile only.
RABBITMQ_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


def secret_files(passwords: dict[str, str]) -> dict[str, str]:
    """The name and contents of each secret file, for the passwords given."""
    db, mq, front, redis = (passwords[k] for k in ("postgres", "engine", "frontend", "redis"))
    users = [
        {"name": ENGINE_USER, "password": mq, "tags": []},
        {"name": FRONTEND_USER, "password": front, "tags": []},
    ]
    return {
        "postgres_password": db,
        "database_url": f"postgresql://chatroute:{db}@postgres:5432/chatroute",
        "rabbitmq-users.json": json.dumps({"users": users}, indent=2),
        "erlang_cookie": passwords["cookie"],
        "amqp_url": ";".join(
            f"amqp://{ENGINE_USER}:{mq}@{node}:5672/{VHOST}" for node in RABBITMQ_NODES
        ),
        "frontend_amqp_url": f"amqp://{FRONTEND_USER}:{front}@rabbitmq:5672/{VHOST}",
        "redis.conf": f'requirepass {redis}\nsave ""\nappendonly no\n',
        "redis_url": f"redis://:{redis}@redis:6379/0",
    }


def write(directory: Path) -> list[Path]:
    """Write fresh secrets into ``directory``; refuses to replace any (passwords must match)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # URL-safe passwords need no escaping in the URLs.
    passwords = {k: secrets.token_urlsafe(24) for k in ("postgres", "engine", "frontend", "redis")}
    passwords["cookie"] = secrets.token_hex(32)  # letters and digits: an Erlang cookie
    files = secret_files(passwords)
    present = sorted(name for name in files if (directory / name).exists())
    if present:
        raise SystemExit(f"make_secrets: {directory} already holds {', '.join(present)}")
    written = []
    for name, contents in files.items():
        path = directory / name
        path.write_text(contents if contents.endswith("\n") else contents + "\n")
        os.chmod(path, 0o644)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python3 deploy/make_secrets.py DIRECTORY")
    for path in write(Path(sys.argv[1])):
        print(path)
