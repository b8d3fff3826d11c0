"""The arrows of the layout (README, Layout): the store is the only room that opens a
transaction or reads a table, and ``chatroute/`` never imports ``workers/``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What opening a transaction or reaching the tables looks like in this code base.
STORE_ONLY = re.compile(
    r"sessions\.begin|engine\.connect|engine\.begin|store\.tables|from chatroute\.store import"
    r"[^\n]*\btables\b"
)


def test_only_the_store_opens_transactions_or_imports_tables() -> None:
    # Given every module of the engine and its workers outside chatroute/store
    store = ROOT / "chatroute" / "store"
    outside = [
        path
        for folder in ("chatroute", "workers")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if store not in path.parents
    ]
    # When they are searched for a transaction or a table
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in outside
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if STORE_ONLY.search(line)
    ]
    # Then nothing is found
    assert outside and not found, "\n".join(found)


def test_chatroute_never_imports_the_workers() -> None:
    # Given the engine's modules, when they are searched for an import of the workers
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "chatroute").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from workers\b|import workers\b)", line)
    ]
    # Then there is none: the workers import the engine, not the other way round
    assert not found, "\n".join(found)
