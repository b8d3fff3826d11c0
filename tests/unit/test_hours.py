"""A group's business hours (contract: ``hours``): local wall-clock intervals in an IANA zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroute.domain.hours import DAYS, Hours, InvalidHours, is_open, parse
from chatroute.errors import Rejected, reason_kind

MINUTE = timedelta(minutes=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def every_day(intervals: list[list[str]], timezone: str = "Europe/Paris") -> Hours:
    hours = parse({"timezone": timezone, "weekly": {day: intervals for day in DAYS}})
    assert hours is not None
    return hours


def open_minutes(hours: Hours, day: str) -> int:
    """How many minutes of the UTC day ``day`` the hours are open (checked minute by minute)."""
    start = utc(f"{day}T00:00:00")
    return sum(hours.is_open(start + n * MINUTE) for n in range(24 * 60))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-07-01T07:30:00", True),  # summer: 09:30 in Paris (UTC+2)
        ("2026-07-01T08:30:00", False),  # summer: 10:30
        ("2026-12-01T08:30:00", True),  # winter: 09:30 (UTC+1)
        ("2026-12-01T07:30:00", False),  # winter: 08:30
        ("2026-07-01T06:59:59", False),  # summer: 08:59:59
        ("2026-07-01T07:00:00", True),  # summer: 09:00, start included
        ("2026-07-01T07:59:59.999999", True),
        ("2026-07-01T08:00:00", False),  # summer: 10:00, end excluded
    ],
)
def test_given_paris_9_to_10_when_asked_in_utc_then_its_local_time_decides(
    at: str, expected: bool
) -> None:
    assert every_day([["09:00", "10:00"]]).is_open(utc(at)) is expected


def test_given_an_aware_non_utc_moment_when_asked_then_it_is_the_same_instant() -> None:
    hours = every_day([["09:00", "10:00"]])
    tokyo = datetime.fromisoformat("2026-07-01T16:30:00+09:00")  # 07:30 UTC, 09:30 Paris
    assert hours.is_open(tokyo)


def test_given_a_naive_moment_when_asked_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        every_day([["09:00", "10:00"]]).is_open(datetime(2026, 7, 1, 7, 30))


@pytest.mark.parametrize(
    ("timezone", "day", "interval"),
    [
        ("Europe/Paris", "2026-03-29", ["02:00", "03:00"]),  # 02:00 -> 03:00
        ("America/New_York", "2026-03-08", ["02:00", "03:00"]),  # 02:00 -> 03:00
    ],
)
def test_given_an_interval_skipped_by_spring_forward_when_the_day_passes_then_never_open(
    timezone: str, day: str, interval: list[str]
) -> None:
    assert open_minutes(every_day([interval], timezone), day) == 0


@pytest.mark.parametrize(
    ("timezone", "day", "interval", "first", "second"),
    [
        # 03:00 -> 02:00: 02:00-03:00 Paris is 00:00-01:00 UTC (CEST) then 01:00-02:00 (CET)
        ("Europe/Paris", "2026-10-25", ["02:00", "03:00"], "00:00", "01:00"),
        # 02:00 -> 01:00: 01:00-02:00 New York is 05:00-06:00 UTC (EDT) then 06:00-07:00 (EST)
        ("America/New_York", "2026-11-01", ["01:00", "02:00"], "05:00", "06:00"),
    ],
)
def test_given_an_interval_repeated_by_fall_back_when_the_day_passes_then_open_twice(
    timezone: str, day: str, interval: list[str], first: str, second: str
) -> None:
    hours = every_day([interval], timezone)
    assert open_minutes(hours, day) == 120
    for start in (first, second):
        moment = utc(f"{day}T{start}:00")
        assert hours.is_open(moment)
        assert hours.is_open(moment + 59 * MINUTE + timedelta(seconds=59))
    assert not hours.is_open(utc(f"{day}T{first}:00") - timedelta(microseconds=1))
    assert not hours.is_open(utc(f"{day}T{second}:00") + 60 * MINUTE)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-12-01T07:59:00", False),  # 08:59 Paris, Tuesday
        ("2026-12-01T08:00:00", True),  # 09:00
        ("2026-12-01T11:29:59", True),  # 12:29:59
        ("2026-12-01T11:30:00", False),  # 12:30: lunch
        ("2026-12-01T12:59:59", False),  # 13:59:59
        ("2026-12-01T13:00:00", True),  # 14:00
        ("2026-12-01T16:59:59", True),  # 17:59:59
        ("2026-12-01T17:00:00", False),  # 18:00
    ],
)
def test_given_a_split_shift_when_asked_then_open_in_either_part_only(
    at: str, expected: bool
) -> None:
    hours = parse(
        {"timezone": "Europe/Paris", "weekly": {"tue": [["14:00", "18:00"], ["09:00", "12:30"]]}}
    )
    assert is_open(hours, utc(at)) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-12-24T22:59:59", True),  # 23:59:59 on the 24th in Paris
        ("2026-12-24T23:30:00", False),  # 00:30 on the 25th in Paris, still the 24th in UTC
        ("2026-12-25T12:00:00", False),
        ("2026-12-25T22:59:59", False),  # 23:59:59 on the 25th
        ("2026-12-25T23:00:00", True),  # 00:00 on the 26th
    ],
)
def test_given_a_closed_date_when_asked_then_its_local_date_is_closed_all_day(
    at: str, expected: bool
) -> None:
    hours = parse(
        {
            "timezone": "Europe/Paris",
            "weekly": {day: [["00:00", "24:00"]] for day in DAYS},
            "closed": ["2026-12-25"],
        }
    )
    assert is_open(hours, utc(at)) is expected


@pytest.mark.parametrize(
    ("weekly", "at", "expected"),
    [
        # 2026-12-01 is a Tuesday; Paris is UTC+1
        ({"tue": [["22:00", "24:00"]]}, "2026-12-01T22:59:59.999999", True),  # 23:59:59.999999
        ({"tue": [["22:00", "24:00"]]}, "2026-12-01T23:00:00", False),  # Wednesday 00:00
        ({"tue": [["22:00", "24:00"]], "wed": [["00:00", "01:00"]]}, "2026-12-01T23:00:00", True),
        ({"tue": [["00:00", "01:00"]]}, "2026-11-30T22:59:59.999999", False),  # Monday 23:59
        ({"tue": [["00:00", "01:00"]]}, "2026-11-30T23:00:00", True),  # Tuesday 00:00
        ({"tue": [["00:00", "24:00"]]}, "2026-12-01T12:00:00", True),
        ({"tue": [["00:00", "24:00"]]}, "2026-12-02T12:00:00", False),  # Wednesday: no interval
        ({"tue": []}, "2026-12-01T12:00:00", False),  # a day without intervals is closed
        ({}, "2026-12-01T12:00:00", False),
        (None, "2026-12-01T12:00:00", False),  # no weekly at all: closed every day
    ],
)
def test_given_intervals_near_midnight_when_asked_then_each_local_day_keeps_its_own(
    weekly: dict[str, Any] | None, at: str, expected: bool
) -> None:
    raw: dict[str, Any] = {"timezone": "Europe/Paris"}
    if weekly is not None:
        raw["weekly"] = weekly
    assert is_open(parse(raw), utc(at)) is expected


def test_given_no_hours_when_parsed_and_asked_then_always_open() -> None:
    assert parse(None) is None
    assert is_open(None, utc("2026-12-25T03:00:00"))


def test_given_valid_hours_when_parsed_then_canonical() -> None:
    hours = parse(
        {
            "timezone": "America/New_York",
            "weekly": {"sun": [], "fri": [["14:00", "24:00"], ["09:00", "12:00"]]},
            "closed": ["2026-12-25", "2026-01-01", "2026-12-25"],
            "comment": "unknown keys are ignored",
        }
    )
    assert hours == Hours(
        timezone="America/New_York",
        weekly=((), (), (), (), ((540, 720), (840, 1440)), (), ()),
        closed=frozenset({date(2026, 1, 1), date(2026, 12, 25)}),
    )
    assert hours.to_json() == {
        "timezone": "America/New_York",
        "weekly": {"fri": [["09:00", "12:00"], ["14:00", "24:00"]]},
        "closed": ["2026-01-01", "2026-12-25"],
    }
    assert parse(hours.to_json()) == hours


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("Europe/Paris", "hours: expected an object or null, got 'Europe/Paris'"),
        ([], "hours: expected an object or null, got a list of 0"),
        ({}, "hours.timezone: missing"),
        ({"timezone": None}, "hours.timezone: missing"),
        ({"timezone": 1}, "hours.timezone: expected a string, got a number"),
        ({"timezone": "Mars/Olympus"}, "hours: unknown timezone 'Mars/Olympus'"),
        ({"timezone": "../etc"}, "hours: unknown timezone '../etc'"),
        ({"timezone": ""}, "hours: unknown timezone ''"),
        ({"timezone": "/etc/localtime"}, "hours: unknown timezone '/etc/localtime'"),
        ({"timezone": "Europe"}, "hours: unknown timezone 'Europe'"),  # a directory
        ({"timezone": "zone.tab"}, "hours: unknown timezone 'zone.tab'"),  # not a zone file
        ({"timezone": "Europe/Paris\x00"}, "hours: unknown timezone 'Europe/Paris\\x00'"),
        ({"timezone": "x" * 300}, "hours: unknown timezone '" + "x" * 40 + "'..."),
        ({"timezone": "europe/paris"}, "hours: unknown timezone 'europe/paris'"),
        ({"timezone": "UTC", "weekly": []}, "hours.weekly: expected an object of days"),
        ({"timezone": "UTC", "weekly": {"monday": []}}, "hours.weekly: unknown day 'monday'"),
        ({"timezone": "UTC", "weekly": {"Mon": []}}, "unknown day 'Mon' (mon..sun)"),
        ({"timezone": "UTC", "weekly": {"mon": None}}, "hours.weekly.mon: expected a list"),
        ({"timezone": "UTC", "weekly": {"mon": ["09:00"]}}, "hours.weekly.mon: an interval is"),
        (
            {"timezone": "UTC", "weekly": {"mon": [["09:00"]]}},
            "an interval is a list of two times (HH:MM), got a list of 1",
        ),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00", "10:00", "11:00"]]}}, "a list of 3"),
        (
            {"timezone": "UTC", "weekly": {"mon": [["9h", "10:00"]]}},
            "hours.weekly.mon: '9h' is not a time (HH:MM, 00:00 to 24:00)",
        ),
        ({"timezone": "UTC", "weekly": {"mon": [[540, "10:00"]]}}, "a number is not a time"),
        ({"timezone": "UTC", "weekly": {"mon": [["9:00", "10:00"]]}}, "'9:00' is not a time"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00", "24:01"]]}}, "'24:01' is not a time"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:60", "10:00"]]}}, "'09:60' is not a time"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00", "25:00"]]}}, "'25:00' is not a time"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00:00", "10:00"]]}}, "'09:00:00' is not"),
        ({"timezone": "UTC", "weekly": {"mon": [["09:00\n", "10:00"]]}}, "'09:00\\n' is not"),
        ({"timezone": "UTC", "weekly": {"mon": [["\u0660\u0669:00", "10:00"]]}}, "is not a time"),
        (
            {"timezone": "UTC", "weekly": {"mon": [["24:00", "24:00"]]}},
            "hours.weekly.mon: 24:00 may only end an interval",
        ),
        (
            {"timezone": "UTC", "weekly": {"mon": [["10:00", "09:00"]]}},
            "hours.weekly.mon: interval 10:00-09:00 ends before or when it starts",
        ),
        (
            {"timezone": "UTC", "weekly": {"sun": [["10:00", "10:00"]]}},
            "hours.weekly.sun: interval 10:00-10:00 ends before or when it starts",
        ),
        (
            {"timezone": "UTC", "weekly": {"tue": [["11:00", "13:00"], ["09:00", "12:00"]]}},
            "hours.weekly.tue: intervals 09:00-12:00 and 11:00-13:00 overlap",
        ),
        (
            {"timezone": "UTC", "weekly": {"wed": [["09:00", "18:00"], ["10:00", "11:00"]]}},
            "hours.weekly.wed: intervals 09:00-18:00 and 10:00-11:00 overlap",
        ),
        (
            {"timezone": "UTC", "weekly": {"thu": [["09:00", "10:00"], ["09:00", "10:00"]]}},
            "intervals 09:00-10:00 and 09:00-10:00 overlap",
        ),
        ({"timezone": "UTC", "closed": "2026-12-25"}, "hours.closed: expected a list of dates"),
        (
            {"timezone": "UTC", "closed": ["2026-13-01"]},
            "hours.closed: '2026-13-01' is not a date (YYYY-MM-DD)",
        ),
        ({"timezone": "UTC", "closed": ["2026-02-29"]}, "'2026-02-29' is not a date"),
        ({"timezone": "UTC", "closed": ["20261225"]}, "'20261225' is not a date"),
        ({"timezone": "UTC", "closed": ["2026-W52-5"]}, "'2026-W52-5' is not a date"),
        ({"timezone": "UTC", "closed": ["2026-12-25T00:00"]}, "'2026-12-25T00:00' is not"),
        ({"timezone": "UTC", "closed": ["0000-01-01"]}, "'0000-01-01' is not a date"),
        ({"timezone": "UTC", "closed": [20261225]}, "hours.closed: a number is not a date"),
        ({"timezone": "UTC", "closed": [None]}, "hours.closed: null is not a date"),
    ],
)
def test_given_invalid_hours_when_parsed_then_rejected_with_a_clear_reason(
    raw: Any, fragment: str
) -> None:
    with pytest.raises(InvalidHours) as raised:
        parse(raw)
    assert isinstance(raised.value, Rejected)
    assert fragment in raised.value.reason
    assert raised.value.reason.isprintable()  # no control character reaches a log line


def test_given_touching_intervals_when_parsed_then_valid_and_open_across_the_seam() -> None:
    hours = parse({"timezone": "UTC", "weekly": {"tue": [["12:00", "13:00"], ["09:00", "12:00"]]}})
    assert hours is not None
    assert hours.weekly[1] == ((540, 720), (720, 780))
    assert hours.is_open(utc("2026-12-01T11:59:59"))
    assert hours.is_open(utc("2026-12-01T12:00:00"))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"timezone": "Mars/Olympus"}, "hours"),
        ({"timezone": "UTC", "weekly": {"mon": [["9h", "10:00"]]}}, "hours.weekly.mon"),
        ({"timezone": "UTC", "weekly": {"monday": []}}, "hours.weekly"),
        ({"timezone": "UTC", "closed": ["2026-13-01"]}, "hours.closed"),
    ],
)
def test_given_a_rejection_when_logged_then_its_kind_holds_no_user_value(
    raw: Any, kind: str
) -> None:
    with pytest.raises(InvalidHours) as raised:
        parse(raw)
    assert reason_kind(raised.value.reason) == kind


_MINUTES = st.integers(min_value=0, max_value=24 * 60)


@st.composite
def _day(draw: st.DrawFn) -> list[list[str]]:
    """Sorted, distinct bounds paired up: non-overlapping (possibly touching) intervals."""
    bounds = sorted(draw(st.sets(_MINUTES, max_size=8)))
    if len(bounds) % 2:
        bounds = bounds[:-1]
    intervals = [[bounds[i], bounds[i + 1]] for i in range(0, len(bounds), 2)]
    if draw(st.booleans()) and len(intervals) >= 2:  # make two of them touch
        intervals[1][0] = intervals[0][1]
    clock = [[f"{s // 60:02d}:{s % 60:02d}", f"{e // 60:02d}:{e % 60:02d}"] for s, e in intervals]
    return draw(st.permutations(clock))


_RAW_HOURS = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
        "weekly": st.dictionaries(st.sampled_from(DAYS), _day()),
        "closed": st.lists(st.dates().map(date.isoformat), max_size=5),
    }
)


@given(_RAW_HOURS)
def test_given_any_valid_hours_when_written_and_read_back_then_equal(raw: dict[str, Any]) -> None:
    hours = parse(raw)
    assert hours is not None
    again = parse(hours.to_json())
    assert again == hours
    assert again is not None and again.to_json() == hours.to_json()


@given(_RAW_HOURS, st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1)))
def test_given_any_valid_hours_when_asked_then_it_matches_local_time_by_definition(
    raw: dict[str, Any], moment: datetime
) -> None:
    hours = parse(raw)
    assert hours is not None
    at = moment.replace(tzinfo=UTC)
    local = at.astimezone(ZoneInfo(hours.timezone))
    micros = (local.hour * 3600 + local.minute * 60 + local.second) * 10**6 + local.microsecond
    expected = local.date() not in hours.closed and any(
        start * 60 * 10**6 <= micros < end * 60 * 10**6
        for start, end in hours.weekly[local.weekday()]
    )
    assert hours.is_open(at) is expected
