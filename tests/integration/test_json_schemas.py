"""The exported JSON Schemas (``schemas/json/``) checked by an external validator, as a
frontend would use them: ``check-jsonschema``, format checks on (its default)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatroute.errors import InvalidEvent
from chatroute.settings import Settings
from chatroute.tools.replay import replay
from schemas.decisions import DATA_MODELS as DECISION_TYPES
from schemas.events import parse_event
from schemas.export import BASE_ID, JSON_DIR

SAMPLE_DAY = Path(__file__).resolve().parents[2] / "examples" / "sample-day.jsonl"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def check(schema: str, documents: list[Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """``check-jsonschema`` on ``documents`` (one file each) against ``schemas/json/<schema>``."""
    folder.mkdir()
    files = []
    for number, document in enumerate(documents):
        files.append(folder / f"{number:04}.json")
        files[-1].write_text(json.dumps(document))
    command = ["--schemafile", str(JSON_DIR / schema), *map(str, files)]
    return _check_jsonschema(command)


def _check_jsonschema(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sample_day(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The decisions of ``chatroute replay examples/sample-day.jsonl``."""
    database = tmp_path_factory.mktemp("day") / "day.db"
    out = io.StringIO()
    replay(Settings(database_url=f"sqlite:///{database}"), SAMPLE_DAY.open("rb"), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def with_new_fields(decision: dict[str, Any]) -> dict[str, Any]:
    """``decision`` as a later version may write it: a field more on the envelope and data."""
    return {**decision, "newattr": "v", "data": {**decision["data"], "new_field": [1, {"a": 2}]}}


@pytest.mark.parametrize("schema", ["events.json", "decisions.json"])
def test_each_schema_declares_draft_2020_12_and_a_stable_id_and_holds_under_it(
    schema: str,
) -> None:
    document = json.loads((JSON_DIR / schema).read_text())
    assert document["$schema"] == DRAFT_2020_12
    assert document["$id"] == BASE_ID + schema == f"https://chatroute.dev/schemas/{schema}"
    checked = _check_jsonschema(["--check-metaschema", str(JSON_DIR / schema)])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_decision_of_the_sample_day_validates_with_new_fields_too(
    sample_day: list[dict[str, Any]], tmp_path: Path
) -> None:
    # Given the sample day's decisions, of every type the engine decides
    assert {d["type"] for d in sample_day} == set(DECISION_TYPES)
    # When checked as they are, and with fields a later version adds
    as_is = check("decisions.json", sample_day, tmp_path / "as-is")
    extended = check("decisions.json", [with_new_fields(d) for d in sample_day], tmp_path / "new")
    # Then all of them validate
    assert as_is.returncode == 0, as_is.stdout + as_is.stderr
    assert extended.returncode == 0, extended.stdout + extended.stderr


def test_a_decision_whose_time_is_not_a_time_does_not_validate(
    sample_day: list[dict[str, Any]], tmp_path: Path
) -> None:
    checked = check("decisions.json", [{**sample_day[0], "time": "not a time"}], tmp_path / "d")
    assert checked.returncode == 1
    assert "'not a time' is not a 'date-time'" in checked.stdout


def test_the_sample_day_events_the_engine_takes_validate_and_those_it_rejects_do_not(
    tmp_path: Path,
) -> None:
    # Given the sample day's lines: events, and a few the engine rejects on purpose
    taken, rejected = [], []
    for line in SAMPLE_DAY.read_bytes().splitlines():
        try:
            parse_event(line)
            taken.append(json.loads(line))
        except InvalidEvent:
            rejected.append(line)
    json_rejected = [json.loads(line) for line in rejected if line.startswith(b"{")]
    assert len(taken) > 400 and json_rejected
    # Then the schema agrees with the engine on each
    checked = check("events.json", taken, tmp_path / "taken")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for number, event in enumerate(json_rejected):
        assert check("events.json", [event], tmp_path / f"rejected-{number}").returncode == 1
