"""A group's business hours (contract: ``hours``): when it takes conversations.

``{"timezone": "Europe/Paris", "weekly": {"mon": [["09:00", "12:30"], ["14:00", "18:00"]]},
"closed": ["2026-12-25"]}``: intervals are local wall-clock times ``[start, end)`` in an IANA
timezone (``"24:00"`` may end one), a day without intervals is closed, and ``closed`` lists
local dates closed all day. ``null`` is always open.

The group is open when the local time falls in an interval of its local date. A moment is
turned into local time with ``astimezone``, which never gives a local time skipped by a
daylight-saving change (such a time is never open) and gives a repeated one twice (open
both times).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chatroute.errors import Rejected

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
DAY_MINUTES = 24 * 60
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")  # ASCII digits only
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fromisoformat alone takes 20261225 too
_SHOWN = 40  # characters of a user's string quoted in a reason


class InvalidHours(Rejected):
    """Hours the contract refuses: ``reason`` names the field and why."""


@dataclass(frozen=True)
class Hours:
    """Valid hours, as ``parse`` builds them: ``weekly`` holds 7 days, Monday first, each a
    sorted tuple of non-overlapping ``(start_minute, end_minute)`` (end up to 1440)."""

    timezone: str
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    closed: frozenset[date]

    def is_open(self, at: datetime) -> bool:
        """Whether the group is open at ``at``, an aware datetime."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("is_open needs an aware datetime")
        local = at.astimezone(ZoneInfo(self.timezone))  # ZoneInfo caches its instances
        if local.date() in self.closed:
            return False
        # Bounds are whole minutes, so start*60 <= seconds < end*60 exactly when
        # start <= minute < end: the seconds and microseconds cannot change the answer.
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.weekly[local.weekday()])

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form: only days with intervals, closed dates sorted."""
        return {
            "timezone": self.timezone,
            "weekly": {
                day: [[_clock(start), _clock(end)] for start, end in intervals]
                for day, intervals in zip(DAYS, self.weekly, strict=True)
                if intervals
            },
            "closed": sorted(day.isoformat() for day in self.closed),
        }


def is_open(hours: Hours | None, at: datetime) -> bool:
    """Whether a group with these hours is open at ``at``; ``None`` is always open."""
    return True if hours is None else hours.is_open(at)


def parse(raw: Any) -> Hours | None:
    """The hours of the contract's JSON form, ``None`` for ``null`` (always open); raises
    ``InvalidHours`` for anything else that is not valid hours. Unknown keys are ignored."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidHours(f"hours: expected an object or null, got {_show(raw)}")
    return Hours(
        timezone=_timezone(raw.get("timezone")),
        weekly=_weekly(raw.get("weekly")),
        closed=_closed(raw.get("closed")),
    )


def _timezone(raw: Any) -> str:
    if not isinstance(raw, str):
        what = "missing" if raw is None else f"expected a string, got {_show(raw)}"
        raise InvalidHours(f"hours.timezone: {what} (an IANA timezone such as Europe/Paris)")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Not found, a malformed key ('../etc', '', absolute, NUL) or not a TZif file
        # (ValueError), a directory or a name too long (OSError).
        raise InvalidHours(f"hours: unknown timezone {_show(raw)}") from None
    return raw


def _weekly(raw: Any) -> tuple[tuple[tuple[int, int], ...], ...]:
    if raw is None:
        return ((),) * len(DAYS)
    if not isinstance(raw, dict):
        raise InvalidHours(f"hours.weekly: expected an object of days, got {_show(raw)}")
    for day in raw:
        if day not in DAYS:
            raise InvalidHours(f"hours.weekly: unknown day {_show(day)} (mon..sun)")
    return tuple(_day(day, raw.get(day, [])) for day in DAYS)


def _day(day: str, raw: Any) -> tuple[tuple[int, int], ...]:
    field = f"hours.weekly.{day}"
    if not isinstance(raw, list | tuple):
        raise InvalidHours(f"{field}: expected a list of intervals, got {_show(raw)}")
    intervals = []
    for pair in raw:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise InvalidHours(
                f"{field}: an interval is a list of two times (HH:MM), got {_show(pair)}"
            )
        start, end = _minute(field, pair[0]), _minute(field, pair[1])
        if start == DAY_MINUTES:
            raise InvalidHours(f"{field}: 24:00 may only end an interval")
        if end <= start:
            raise InvalidHours(
                f"{field}: interval {_clock(start)}-{_clock(end)} ends before or when it starts"
            )
        intervals.append((start, end))
    intervals.sort()
    for (start, end), (later, last) in pairwise(intervals):
        if later < end:  # touching ([09:00, 12:00) then [12:00, 13:00)) is fine
            raise InvalidHours(
                f"{field}: intervals {_clock(start)}-{_clock(end)} and "
                f"{_clock(later)}-{_clock(last)} overlap"
            )
    return tuple(intervals)


def _minute(field: str, raw: Any) -> int:
    match = _TIME.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise InvalidHours(f"{field}: {_show(raw)} is not a time (HH:MM, 00:00 to 24:00)")
    if match.group(1) is None:
        return DAY_MINUTES
    return int(match.group(1)) * 60 + int(match.group(2))


def _closed(raw: Any) -> frozenset[date]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list | tuple):
        raise InvalidHours(f"hours.closed: expected a list of dates (YYYY-MM-DD), got {_show(raw)}")
    days = set()
    for item in raw:
        try:
            if not (isinstance(item, str) and _DATE.fullmatch(item)):
                raise ValueError
            days.add(date.fromisoformat(item))
        except ValueError:
            raise InvalidHours(f"hours.closed: {_show(item)} is not a date (YYYY-MM-DD)") from None
    return frozenset(days)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _show(value: Any) -> str:
    """A user's value in a reason: a string quoted with repr (control characters escaped,
    at most ``_SHOWN`` characters of it), anything else by its JSON kind only."""
    if isinstance(value, str):
        return repr(value[:_SHOWN]) + ("..." if len(value) > _SHOWN else "")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return "a value of another kind"
