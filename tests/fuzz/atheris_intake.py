"""Coverage-guided fuzz of the intake's verdict (#6) with atheris (libFuzzer):

    .venv/bin/pip install atheris
    .venv/bin/python -m tests.fuzz.atheris_intake -max_total_time=600 -max_len=70000

Seeds are the sample day's events and the victim's. For every input, ``intake._verdict``
(what the gateway makes of a message: ``parse_event``, then the identity of a rejection)
must not raise; what it would store must be storable (no U+0000, no lone surrogate); a
rejection must give a reason; and a valid event must make a domain command whose integers
and times the store holds. A failing input is written to ``crash-*`` by libFuzzer.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["schemas", "chatroute.intake"]):
    from chatroute import intake
    from schemas import events

from tests.fuzz.messages import VICTIM_EVENTS

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
INT32 = range(-(2**31), 2**31)


def storable(value: Any) -> bool:
    """Whether a database column (text, JSON, 32-bit integer, timestamp) can hold it."""
    if isinstance(value, str):
        return "\x00" not in value and value.encode("utf-8", "surrogatepass") == value.encode(
            "utf-8", "replace"
        )
    if isinstance(value, bool | float) or value is None:
        return True
    if isinstance(value, int):
        return value in INT32
    if isinstance(value, datetime):
        return events.EARLIEST <= value < events.LATEST
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(item) for item in value)
    return True


def check(data: bytes) -> None:
    verdict = intake._verdict(intake.Incoming(data), NOW)
    row = {k: v for k, v in verdict.row.items() if k != "body" or verdict.key is not None}
    assert storable(row), row
    if verdict.reason is not None:
        assert verdict.reason and storable(verdict.reason), verdict.reason
        return
    command = events.to_command(events.parse_event(data))
    assert storable(vars(command)), command


def seeds(folder: Path) -> None:
    folder = folder / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    lines = (ROOT / "examples" / "sample-day.jsonl").read_bytes().splitlines()[:200]
    for n, body in enumerate(lines + [json.dumps(e).encode() for e in VICTIM_EVENTS]):
        (folder / f"seed-{n:04d}").write_bytes(body)


# libFuzzer splices these into inputs: the contract's names and the values that broke intake.
TOKENS = [
    *(f'"{name}"' for name in ("specversion", "id", "tenant", "type", "time", "data", "until")),
    *(f'"{name}"' for name in ("conversation", "respondent", "slots", "priority", "groups")),
    *(f'"{name}"' for name in ("reassign_after_s", "commission", "mode", "conditions")),
    *(f'"{kind}"' for kind in events.DATA_MODELS),
    '"\\u0000"', '"\\ud800"', '"\\udfff"', "2147483648", "-2147483649", "1e309", "NaN",
    '"9999-12-31T23:59:59-23:00"', '"0001-01-01T00:00:00+01:00"', '"1.0"', "[[[[", "{}",
]  # fmt: skip


def main() -> None:
    corpus = ROOT / ".atheris-corpus"
    seeds(corpus)
    tokens = corpus / "tokens.dict"
    tokens.write_text("".join(f"{json.dumps(t)}\n" for t in TOKENS))
    atheris.Setup([*sys.argv, f"-dict={tokens}", str(corpus / "inputs")], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
