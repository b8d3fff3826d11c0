"""Builders for events as a frontend would publish them (Given ... in tests)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


@dataclass
class Events:
    """Makes one tenant's events with unique ids and a clock that moves on by ``step``."""

    tenant: str = "shop-1"
    now: datetime = START
    step: timedelta = timedelta(seconds=1)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lines: list[dict[str, Any]] = field(default_factory=list)

    def event(self, type_: str, **data: Any) -> dict[str, Any]:
        self.now += self.step
        event = {
            "specversion": "1.0",
            "id": f"{self.tenant}-evt-{next(self._ids):05d}",
            "source": f"widget/{self.tenant}",
            "type": type_,
            "time": rfc3339(self.now),
            "tenant": self.tenant,
            "data": data,
        }
        self.lines.append(event)
        return event

    def at(self, moment: datetime) -> Events:
        self.now = moment - self.step
        return self

    def later(self, **delta: float) -> Events:
        self.now += timedelta(**delta)
        return self

    def respondent(
        self, rid: str, groups: list[str], slots: int = 1, available: bool = True
    ) -> None:
        self.event("respondent.updated", respondent=rid, groups=groups, slots=slots)
        if available:
            self.event("respondent.status", respondent=rid, status="available")

    def rule(
        self, rid: str, group: str, priority: int = 10, conditions: list[Any] | None = None
    ) -> None:
        self.event(
            "rule.updated", rule=rid, group=group, priority=priority, conditions=conditions or []
        )

    def start(self, conversation: str, **attributes: str) -> None:
        self.event(
            "conversation.started",
            conversation=conversation,
            visitor=f"v-{conversation}",
            attributes=attributes,
        )


def jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)
