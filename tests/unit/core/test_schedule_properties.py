"""Properties of schedule arithmetic that hold for every expression, zone and instant (hypothesis).

The table tests in test_schedule.py pin named cases; these check the invariants around them: the next due
time strictly increases, matches the expression in the task's zone, and follows docs/api.md's DST rule
(a skipped wall time runs once, at the first instant after the gap; in a repeated hour a schedule with fixed
minute and hour fields runs once).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from cronlet._core import schedule

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
]
SECONDS = st.sampled_from(["0", "*/15", "30", "5,45"])
MINUTES = st.sampled_from(["0", "*/7", "30", "15,45", "*"])
HOURS = st.sampled_from(["*", "2", "1-3", "*/5", "0,12"])
DAYS = st.sampled_from(["*", "1", "L", "15W", "28"])
MONTHS = st.sampled_from(["*", "3", "10,11", "*/4"])
WEEKDAYS = st.sampled_from(["*", "0", "1-5", "6", "5#2"])

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)


@st.composite
def cron(draw: st.DrawFn) -> tuple[str, str]:
    fields = [draw(part) for part in (SECONDS, MINUTES, HOURS, DAYS, MONTHS, WEEKDAYS)]
    if fields[3] != "*" and fields[5] != "*":
        fields[5] = "*"  # day-of-month and day-of-week together mean "either" in cron: keep each alone
    return " ".join(fields), draw(st.sampled_from(ZONES))


def _compiled(expression: str, zone: str) -> schedule.CronSchedule:
    return schedule.compile_cron(expression, time_zone=zone, hash_key="property")


def _in_gap(zone: ZoneInfo, instant: datetime) -> bool:
    """Whether ``instant`` is the first instant after a spring-forward gap (a wall time moved there)."""
    before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
    return before != instant.astimezone(zone).utcoffset()


@settings(max_examples=150, deadline=None)
@given(cron(), instants)
def test_next_due_time_strictly_increases(spec: tuple[str, str], start: datetime) -> None:
    sched = _compiled(*spec)
    first = schedule.next_after(sched, start)
    assert first is not None and first > start
    second = schedule.next_after(sched, first)
    assert second is not None and second > first


@settings(max_examples=150, deadline=None)
@given(cron(), instants)
def test_next_due_time_matches_the_expression_in_the_zone(spec: tuple[str, str], start: datetime) -> None:
    sched = _compiled(*spec)
    due = schedule.next_after(sched, start)
    assert due is not None
    if _in_gap(sched.zone, due):
        return  # a wall time the gap skipped, moved to the first instant after it: checked below
    wall = due.astimezone(sched.zone).replace(tzinfo=None)
    assert croniter.match(sched.fields, wall, second_at_beginning=True), (sched.fields, wall)


@settings(max_examples=150, deadline=None)
@given(cron(), instants)
def test_nothing_is_due_between_a_time_and_its_next_due_time(spec: tuple[str, str], start: datetime) -> None:
    sched = _compiled(*spec)
    due = schedule.next_after(sched, start)
    assert due is not None
    assert schedule.latest_at_or_before(sched, due) == due
    previous = schedule.latest_at_or_before(sched, due - timedelta(microseconds=1))
    assert previous is None or previous <= start


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["0 30 2 * * *", "0 0 3 * * *", "0 15 1 * * *", "0 45 2 * * 0"]),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    st.integers(min_value=2021, max_value=2031),
)
def test_a_fixed_time_runs_once_per_day_across_transitions(expression: str, zone: str, year: int) -> None:
    """Over a whole year, one run per matching day: a skipped wall time runs once (after the gap), a
    repeated one once (its first occurrence)."""
    sched = _compiled(expression, zone)
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    days: list[object] = []
    due = schedule.next_after(sched, start)
    while due is not None and due < end:
        day = due.astimezone(tz).date()
        assert day not in days, f"{expression} in {zone} ran twice on {day}"
        days.append(day)
        due = schedule.next_after(sched, due)
    expected = 52 if expression.endswith(" 0") else 365
    assert len(days) >= expected


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=86400 * 3).map(lambda s: timedelta(seconds=s)),
    instants,
    st.integers(min_value=0, max_value=10**8).map(lambda s: timedelta(seconds=s)),
)
def test_interval_due_times_are_anchor_plus_whole_periods(
    period: timedelta, anchor: datetime, later: timedelta
) -> None:
    sched = schedule.IntervalSchedule(anchor=anchor, period=period)
    due = schedule.next_after(sched, anchor + later)
    assert due is not None and due > anchor + later
    steps = (due - anchor) / period
    assert steps == int(steps) and steps >= 1
    assert due - period <= anchor + later or due - period == anchor
