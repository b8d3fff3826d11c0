"""Liveness and readiness: the database and the broker each answer."""

from __future__ import annotations

from sqlalchemy import text

from chatroute.settings import Settings
from chatroute.store import db


def database_answers(url: str) -> bool:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def broker_answers(url: str | None) -> bool:
    if url is None:
        return True  # the in-process broker
    from chatroute.amqp import connect

    try:
        connect(url).close()
        return True
    except Exception:
        return False


def check(settings: Settings) -> dict[str, bool]:
    return {
        "database": database_answers(settings.database_url),
        "broker": broker_answers(settings.amqp_url),
    }
