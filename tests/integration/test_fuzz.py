"""Hostile input (#6): the gateway's intake and the workers under generated batches of
hostile messages (``tests/fuzz/messages.py``), on SQLite and PostgreSQL. Each message is
checked against the contract's account of it, the victim tenant must not change, and a twin
database without the victim must decide the same for every other tenant
(``tests/fuzz/world.py``). Longer runs that print their counts: ``python -m tests.fuzz``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import fresh_pg_database
from tests.fuzz.messages import Message, batches
from tests.fuzz.world import World

EXAMPLES = {"sqlite": 250, "postgresql": 80}
# A failure's report would show bodies of up to 140 kB: hypothesis warns, and warnings fail.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RELAXED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("fuzz")
        built = World(f"sqlite:///{folder}/main.db", f"sqlite:///{folder}/twin.db")
        yield built
        built.close()
        return
    with fresh_pg_database() as url, fresh_pg_database() as twin_url:
        built = World(url, twin_url)
        yield built
        built.close()


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
