"""``crashes.ProcessTries``: a suspect's try goes alone in its process, so that a SIGKILL it
causes ends no other tenant's try; tries of other tenants go together otherwise."""

from __future__ import annotations

import threading
import time

from chatroute.crashes import ProcessTries


def started(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_try_alone_waits_for_the_tries_under_way_and_holds_back_new_ones() -> None:
    tries = ProcessTries()
    events: list[str] = []

    def alone() -> None:
        with tries.alone():
            events.append("alone")

    def late() -> None:
        with tries.together():
            events.append("late")

    with tries.together():
        with tries.together():  # tries of several tenants go together
            events.append("together")
        waiting = started(alone)
        time.sleep(0.05)
        assert events == ["together"]  # alone waits while a try is under way
        latecomer = started(late)
        time.sleep(0.05)
        assert events == ["together"]  # and a new try waits behind it
    waiting.join(2)
    latecomer.join(2)
    assert events == ["together", "alone", "late"]


def test_tries_together_do_not_wait_for_each_other() -> None:
    tries = ProcessTries()
    inside = threading.Barrier(3, timeout=2)

    def together() -> None:
        with tries.together():
            inside.wait()  # all three inside at once, or the barrier breaks

    threads = [started(together) for _ in range(3)]
    for thread in threads:
        thread.join(3)
    assert not inside.broken
