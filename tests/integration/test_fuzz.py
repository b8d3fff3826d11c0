"""Hostile input (#6): the gateway's intake and the workers under generated batches of
hostile messages (``tests/fuzz/messages.py``), on SQLite and PostgreSQL. Each message is
checked against the contract's account of it, the victim tenant must not change, and a twin
database without the victim must decide the same for every other tenant
(``tests/fuzz/world.py``). Longer runs that print their counts: ``python -m tests.fuzz``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings

from tests.fuzz.messages import Message, batches
from tests.fuzz.world import RELAXED, World, opened

EXAMPLES = {"sqlite": 250, "postgresql": 80}
# A failure's report would show bodies of up to 140 kB: hypothesis warns, and warnings fail.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with opened(request.param) as built:  # PostgreSQL: required in CI, as everywhere
        yield built


def test_every_hostile_message_is_accounted_for(
    world: World, request: pytest.FixtureRequest
) -> None:
    examples = EXAMPLES[request.node.callspec.params["world"]]

    @settings(max_examples=examples, deadline=None, suppress_health_check=RELAXED)
    @given(batch=batches())
    def run(batch: list[Message]) -> None:
        world.run(batch)

    run()
    print(world.census.report())
