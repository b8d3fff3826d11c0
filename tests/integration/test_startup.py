"""A long-running process started while its database is unreachable waits for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from chatroute.store import db


def test_it_waits_for_the_database_to_answer(tmp_path: Path) -> None:
    # Given a database that cannot be opened yet (its folder appears half a second later)
    folder = tmp_path / "later"
    engine = db.make_engine(f"sqlite:///{folder}/chatroute.db")
    threading.Timer(0.5, folder.mkdir).start()
    # When the process waits for it
    started = time.monotonic()
    db.wait_until_up(engine, 10)
    # Then it got through once the database answered, not before
    assert 0.4 < time.monotonic() - started < 8


def test_it_gives_up_with_the_database_error_after_its_time(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/never/chatroute.db")
    started = time.monotonic()
    with pytest.raises(OperationalError):
        db.wait_until_up(engine, 1)
    assert time.monotonic() - started < 3
