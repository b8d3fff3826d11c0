"""benchmarks.pgload counts what it says it counts (docs/scaling.md reads its figures)."""

from __future__ import annotations

from benchmarks import pgload
from tests.conftest import fresh_pg_database, require_service


def test_pgload_counts_the_rows_and_round_trips_of_each_shape() -> None:
    require_service("PostgreSQL")
    figures = {}
    for shape in pgload.SHAPES:
        with fresh_pg_database() as url:
            figures[shape] = pgload.measure(shape, 80, 2, url)
    quiet, busy = figures["quiet"], figures["busy"]
    for run in (quiet, busy):
        assert run["events"] == 80
        # each event an inbox row, each conversation a contact and a decision's outbox row
        assert run["rows_inserted_per_event"] >= 1.5
        # each event marked applied at least
        assert run["rows_updated_per_event"] >= 1
        assert run["wal_bytes_per_event"] > 0 and run["transactions_per_event"] > 0
    # every event alone: its own intake and applying transaction, at least
    assert quiet["begins_per_event"] >= 2 and quiet["pings_per_event"] >= 2
    # batches amortize the fixed costs
    assert busy["round_trips_per_event"] < quiet["round_trips_per_event"] / 4
    assert "pgload: quiet:events=80 busy:events=80" in pgload.report(list(figures.values()))
