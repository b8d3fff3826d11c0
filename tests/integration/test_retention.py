"""``chatroute prune``: old applied events and sent decisions go; state, statistics,
unapplied events and unsent decisions stay."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import rows
from chatroute.store import tables
from chatroute.store.retention import prune
from chatroute.tools.replay import replay
from tests.builders import START, Events, jsonl
from tests.integration.test_cli import chatroute


def count(rt: bootstrap.Runtime, table: tables.Table) -> int:
    with rt.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def test_prune_keeps_what_is_recent_unfinished_or_state(tmp_path: Path) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    shop.start("c1")
    shop.event("conversation.rated", conversation="c1", score=4)
    old = len(shop.lines)
    shop.later(days=3)
    shop.start("c2")
    settings = Settings(database_url=f"sqlite:///{tmp_path}/p.db")
    replay(settings, io.BytesIO(jsonl(shop.lines)).readlines(), io.StringIO())
    rt = bootstrap.build(settings)
    unsent = {
        "decision_id": "unsent-1", "tenant": "shop-1", "exchange": "chat.decisions",
        "routing_key": "shop-1.x", "body": b"{}", "created_at": START,
    }  # fmt: skip
    with rt.engine.begin() as connection:
        connection.execute(insert(tables.outbox), [unsent])
    figures = rows(rt)
    inbox_before, outbox_before = count(rt, tables.inbox), count(rt, tables.outbox)

    pruned = prune(rt.engine, START + timedelta(days=1))

    assert pruned.inbox == old  # the first day's events, applied
    assert count(rt, tables.inbox) == inbox_before - old
    assert 0 < pruned.outbox < outbox_before - 1
    with rt.engine.connect() as connection:
        assert (
            connection.scalar(
                select(tables.outbox.c.decision_id).where(tables.outbox.c.sent_at.is_(None))
            )
            == "unsent-1"
        )
    assert rows(rt) == figures
    assert count(rt, tables.conversations) == 2


def test_the_command_refuses_a_retention_under_a_day(tmp_path: Path) -> None:
    env = {"CHATROUTE_DATABASE_URL": f"sqlite:///{tmp_path}/chatroute.db"}
    refused = chatroute("prune", "--older-than-days", "0.5", cwd=tmp_path, env=env)
    assert refused.returncode != 0 and "at least a day" in refused.stderr
    done = chatroute("prune", "--older-than-days", "7", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"inbox_rows": 0, "outbox_rows": 0}'
