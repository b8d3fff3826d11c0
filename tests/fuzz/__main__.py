"""``python -m tests.fuzz --inputs 20000 [--db sqlite|postgresql]``: the hostile-input fuzz
(#6) at a size CI cannot afford. It runs rounds of hypothesis examples (gateway batches of
hostile messages, each checked as in ``tests/integration/test_fuzz.py``) until ``--inputs``
messages were tried, then prints the inputs tried, their outcomes by kind of reason, the
slowest batch and every failure (crash, hang or broken check). Exit status 1 on a failure.
PostgreSQL needs the server of ``tests/conftest.py``; its two databases are dropped after.
"""

from __future__ import annotations

import argparse
import sys
import time

from hypothesis import given, settings

from chatroute import logs
from tests.fuzz.messages import Message, batches
from tests.fuzz.world import RELAXED, World, opened

ROUND = 200  # examples per hypothesis run; each run draws afresh
MAX_FAILURES = 3


def one_round(checked: World) -> None:
    @settings(max_examples=ROUND, deadline=None, database=None, suppress_health_check=RELAXED)
    @given(batch=batches())
    def run(batch: list[Message]) -> None:
        checked.run(batch)

    run()


def fuzz(checked: World, inputs: int) -> None:
    census = checked.census
    while census.inputs < inputs and len(census.failures) < MAX_FAILURES:
        try:
            one_round(checked)
        except Exception as failure:  # hypothesis printed the falsifying example
            census.failures.append(f"{type(failure).__name__}: {str(failure)[:300]}")
        print(f"fuzz: {census.inputs} inputs tried", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--inputs", type=int, default=20_000, help="messages to try, at least")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    logs.configure("ERROR")  # the engine's errors only, on stderr: the census is on stdout
    started = time.monotonic()
    with opened(args.db) as checked:
        fuzz(checked, args.inputs)
        print(f"database: {args.db}")
        print(checked.census.report())
    print(f"run time: {time.monotonic() - started:.0f} s")
    return 1 if checked.census.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
