"""The chaos run in its CI form (``python -m tests.chaos --short``): the real pipeline under
faults loses, doubles and overbooks nothing, and ends as its oracle does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import run, servers

pytestmark = pytest.mark.services


@pytest.mark.timeout(900)
def test_the_short_chaos_run_loses_doubles_and_overbooks_nothing(tmp_path: Path) -> None:
    servers.require("the chaos run")
    # Given the pipeline on private servers, under traffic, while faults are injected
    seed = int(os.environ.get("CHATROUTE_CHAOS_SEED", "1"))
    outcome = run.run(run.SHORT, seed, tmp_path, print)
    run.report(outcome, run.SHORT, print)
    # Then every fault was injected, and nothing was lost, doubled, overbooked or wrong
    assert len(outcome.faults) == len(run.SHORT.faults)
    found = outcome.findings
    assert found.summary() == {"lost": 0, "duplicated": 0, "overbooked": 0, "violations": 0}, (
        found.lost[:5] + found.duplicated[:5] + found.overbooked[:5] + found.violations[:5]
    )
