"""Schedule arithmetic, as tables of named cases. The clock is always a parameter: no sleeping, no now()."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from cronlet._core import model
from cronlet._core import schedule as s


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------- next due times

NEXT_CASES = [
    # name, expression, zone, after (UTC), expected next instants (UTC)
    (
        "six fields: seconds first",
        "*/5 * * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 0, 0),
        [utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 15)],
    ),
    (
        "six fields: seconds at 30 of every minute",
        "30 * * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 0, 30),
        [utc(2026, 1, 1, 0, 1, 30), utc(2026, 1, 1, 0, 2, 30)],
    ),
    (
        "five fields: minute resolution",
        "*/15 * * * *",
        "UTC",
        utc(2026, 1, 1, 0, 7),
        [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30)],
    ),
    ("macro @daily", "@daily", "UTC", utc(2026, 1, 1, 12), [utc(2026, 1, 2), utc(2026, 1, 3)]),
    ("macro @hourly", "@hourly", "UTC", utc(2026, 1, 1, 12, 30), [utc(2026, 1, 1, 13)]),
    ("macro @weekly is Sunday midnight", "@weekly", "UTC", utc(2026, 1, 1), [utc(2026, 1, 4)]),
    ("leap day only", "0 0 29 2 *", "UTC", utc(2026, 1, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
    ("last day of month L", "0 0 L * *", "UTC", utc(2026, 1, 31, 1), [utc(2026, 2, 28), utc(2026, 3, 31)]),
    ("last day of February in a leap year", "0 0 L 2 *", "UTC", utc(2027, 3, 1), [utc(2028, 2, 29)]),
    ("nearest weekday W (15th is a Sunday)", "0 0 15W * *", "UTC", utc(2026, 2, 1), [utc(2026, 2, 16)]),
    ("second Friday 5#2", "0 0 * * 5#2", "UTC", utc(2026, 1, 1), [utc(2026, 1, 9), utc(2026, 2, 13)]),
    ("Sunday written as 7", "0 0 * * 7", "UTC", utc(2026, 1, 1), [utc(2026, 1, 4)]),
    ("zone: 09:00 in Tokyo is 00:00 UTC", "0 9 * * *", "Asia/Tokyo", utc(2026, 1, 1, 1), [utc(2026, 1, 2)]),
    # Europe/Berlin springs forward 2026-03-29 02:00 -> 03:00 (01:00 UTC).
    (
        "DST gap Berlin: 02:30 runs once at 03:00 local",
        "30 2 * * *",
        "Europe/Berlin",
        utc(2026, 3, 28, 12),
        [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
    ),
    (
        "DST gap Berlin: */30 keeps cadence, the gap collapses to one run",
        "*/30 * * * *",
        "Europe/Berlin",
        utc(2026, 3, 29, 0, 0),
        [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)],
    ),
    # America/New_York springs forward 2026-03-08 02:00 -> 03:00 (07:00 UTC).
    (
        "DST gap New York: 02:15 runs once at 03:00 local",
        "15 2 * * *",
        "America/New_York",
        utc(2026, 3, 7, 12),
        [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 15)],
    ),
    # Europe/Berlin falls back 2026-10-25 03:00 -> 02:00 (01:00 UTC): 02:xx happens twice.
    (
        "DST fold Berlin: fixed 02:30 runs once, at the first occurrence",
        "30 2 * * *",
        "Europe/Berlin",
        utc(2026, 10, 24, 12),
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
    ),
    (
        "DST fold Berlin: */30 runs at every matching instant",
        "*/30 * * * *",
        "Europe/Berlin",
        utc(2026, 10, 24, 23, 45),
        [
            utc(2026, 10, 25, 0, 0),
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 25, 1, 0),
            utc(2026, 10, 25, 1, 30),
            utc(2026, 10, 25, 2, 0),
        ],
    ),
    (
        "DST fold Berlin: from inside the fold, a fixed time that already ran waits a day",
        "30 2 * * *",
        "Europe/Berlin",
        utc(2026, 10, 25, 0, 45),
        [utc(2026, 10, 26, 1, 30)],
    ),
    (
        "DST fold Berlin: from the first 02:50, a seconds schedule reaches the second 02:00",
        "0 0,50 * * * *",
        "Europe/Berlin",
        utc(2026, 10, 25, 0, 50),
        [utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 50)],
    ),
    # America/New_York falls back 2026-11-01 02:00 -> 01:00 (06:00 UTC).
    (
        "DST fold New York: fixed 01:30 once",
        "30 1 * * *",
        "America/New_York",
        utc(2026, 11, 1, 0),
        [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
    ),
    (
        "DST fold New York: hourly keeps elapsed cadence",
        "0 * * * *",
        "America/New_York",
        utc(2026, 11, 1, 4),
        [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)],
    ),
    (
        "DST fold New York: starting inside the fold finds the second occurrence",
        "0 * * * *",
        "America/New_York",
        utc(2026, 11, 1, 5, 10),
        [utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)],
    ),
]


@pytest.mark.parametrize(
    ("name", "expr", "zone", "after", "expected"), NEXT_CASES, ids=[c[0] for c in NEXT_CASES]
)
def test_next_due_times(name: str, expr: str, zone: str, after: datetime, expected: list[datetime]) -> None:
    sched = s.compile_cron(expr, time_zone=zone)
    assert s.upcoming(sched, after, len(expected)) == expected


def test_hash_field_is_stable_per_task_and_differs_between_tasks() -> None:
    a1 = s.compile_cron("H H * * *", hash_key="uid-a")
    a2 = s.compile_cron("H H * * *", hash_key="uid-a")
    keys = [f"uid-{i}" for i in range(20)]
    firsts = {s.next_after(s.compile_cron("H H * * *", hash_key=k), utc(2026, 1, 1)) for k in keys}
    assert s.next_after(a1, utc(2026, 1, 1)) == s.next_after(a2, utc(2026, 1, 1))
    assert len(firsts) > 10  # spread over the day, not all at one instant


def test_hash_with_step_in_seconds_field() -> None:
    sched = s.compile_cron("H/10 * * * * *", hash_key="x")
    times = s.upcoming(sched, utc(2026, 1, 1), 3)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [10.0, 10.0]


def test_latest_at_or_before_includes_the_instant_itself() -> None:
    sched = s.compile_cron("*/5 * * * * *")
    assert s.latest_at_or_before(sched, utc(2026, 1, 1, 0, 0, 10)) == utc(2026, 1, 1, 0, 0, 10)
    assert s.latest_at_or_before(sched, utc(2026, 1, 1, 0, 0, 12)) == utc(2026, 1, 1, 0, 0, 10)


def test_latest_at_or_before_inside_fold_picks_first_occurrence_for_fixed_fields() -> None:
    sched = s.compile_cron("30 1 * * *", time_zone="America/New_York")
    # 06:45 UTC is 01:45 EST, the second 01:xx: the 01:30 run already happened at 05:30 UTC.
    assert s.latest_at_or_before(sched, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)


# --------------------------------------------------------------------------- validation

INVALID_CASES = [
    ("seven fields", "* * * * * * *", "UTC", "InvalidSchedule", "7 fields"),
    ("four fields", "* * * *", "UTC", "InvalidSchedule", "4 fields"),
    ("minute out of range", "61 * * * *", "UTC", "InvalidSchedule", "invalid cron expression"),
    ("February 30 never fires", "0 0 30 2 *", "UTC", "InvalidSchedule", "never fires"),
    ("unknown macro", "@fortnightly", "UTC", "InvalidSchedule", "unknown macro"),
    ("@every belongs in interval", "@every 5s", "UTC", "InvalidSchedule", "spec.interval"),
    ("TZ prefix", "TZ=Europe/Berlin 0 * * * *", "UTC", "InvalidSchedule", "spec.timeZone"),
    ("empty", "  ", "UTC", "InvalidSchedule", "empty"),
    ("garbage", "every day", "UTC", "InvalidSchedule", "fields"),
    ("unknown zone", "0 * * * *", "Mars/Olympus", "UnknownTimeZone", "unknown time zone"),
]


@pytest.mark.parametrize(
    ("name", "expr", "zone", "reason", "text"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_schedules_have_a_reason_and_a_readable_message(
    name: str, expr: str, zone: str, reason: str, text: str
) -> None:
    with pytest.raises(s.ScheduleError) as err:
        s.compile_cron(expr, time_zone=zone)
    assert err.value.reason == reason
    assert text in err.value.message


def test_compile_is_cached_per_expression() -> None:
    assert s.compile_cron("*/7 * * * * *") is s.compile_cron("*/7 * * * * *")


# --------------------------------------------------------------------------- intervals and durations

# What Go's time.ParseDuration reads each of these as (its grammar: [0-9]*(\.[0-9]*)? and a unit, repeated).
GO_DURATIONS = [
    ("0", 0),
    ("30s", 30),
    ("5m", 300),
    ("1h30m", 5400),
    ("250ms", 0.25),
    ("1.5s", 1.5),
    (".5h", 1800),
    ("1.s", 1),
    ("2h45m30.5s", 9930.5),
    ("1s1s", 2),
    ("1500us", 0.0015),
    ("1500\u00b5s", 0.0015),
    ("1500\u03bcs", 0.0015),
    ("3000000ns", 0.003),
]
# Read by the operator but refused by the API server in new values: days (v1alpha1 before change 16), and a
# bare number (the operator's own flags).
LEGACY_DURATIONS = [("1d", 86400), ("1.5d", 129600), ("45", 45)]


@pytest.mark.parametrize(("text", "seconds"), GO_DURATIONS, ids=[d[0] for d in GO_DURATIONS])
def test_go_durations_are_read_as_go_reads_them_and_pass_the_crd_pattern(text: str, seconds: float) -> None:
    assert s.parse_duration(text).total_seconds() == seconds
    assert re.fullmatch(model.DURATION_PATTERN, text)


@pytest.mark.parametrize(("text", "seconds"), LEGACY_DURATIONS, ids=[d[0] for d in LEGACY_DURATIONS])
def test_stored_day_durations_are_still_read_but_not_admitted(text: str, seconds: float) -> None:
    assert s.parse_duration(text).total_seconds() == seconds
    assert not re.fullmatch(model.DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["", "5x", "m5", "1h 30m", "-5s", "+5s", ".s", "1.5.s", "0s0", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        s.parse_duration(text)
    assert not re.fullmatch(model.DURATION_PATTERN, text)


def test_a_duration_past_gos_int64_of_nanoseconds_is_refused() -> None:
    assert s.parse_duration("2562047h").days == 106751
    with pytest.raises(ValueError, match="292 years"):
        s.parse_duration("2562048h")


def test_interval_runs_at_creation_plus_n_periods() -> None:
    sched = s.compile_interval("30s", anchor=utc(2026, 1, 1, 0, 0, 7))
    assert s.next_after(sched, utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 0, 37)
    assert s.next_after(sched, utc(2026, 1, 1, 0, 0, 37)) == utc(2026, 1, 1, 0, 1, 7)
    assert s.latest_at_or_before(sched, utc(2026, 1, 1, 0, 0, 36)) is None
    assert s.latest_at_or_before(sched, utc(2026, 1, 1, 0, 1, 10)) == utc(2026, 1, 1, 0, 1, 7)


def test_interval_shorter_than_a_second_is_rejected() -> None:
    with pytest.raises(s.ScheduleError) as err:
        s.compile_interval("500ms", anchor=utc(2026, 1, 1))
    assert err.value.reason == "InvalidInterval"


# --------------------------------------------------------------------------- missed runs

MISSED_CASES = [
    # name, schedule, since, now, kind, latest, count
    (
        "nothing due yet",
        ("cron", "0 * * * *"),
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 0, 59),
        s.DueKind.NONE,
        None,
        0,
    ),
    (
        "exactly one due",
        ("cron", "0 * * * *"),
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 1, 0),
        s.DueKind.FEW,
        utc(2026, 1, 1, 1, 0),
        1,
    ),
    (
        "a few missed in a short outage",
        ("cron", "*/5 * * * * *"),
        utc(2026, 1, 1),
        utc(2026, 1, 1, 0, 0, 32),
        s.DueKind.FEW,
        utc(2026, 1, 1, 0, 0, 30),
        6,
    ),
    (
        "a week of downtime, hourly",
        ("cron", "0 * * * *"),
        utc(2026, 1, 1),
        utc(2026, 1, 8, 0, 30),
        s.DueKind.MANY,
        utc(2026, 1, 8, 0, 0),
        101,
    ),
    (
        "a week of downtime, every 5 seconds",
        ("cron", "*/5 * * * * *"),
        utc(2026, 1, 1),
        utc(2026, 1, 8, 0, 0, 3),
        s.DueKind.MANY,
        utc(2026, 1, 8),
        101,
    ),
    (
        "a week of downtime, daily",
        ("cron", "@daily"),
        utc(2026, 1, 1),
        utc(2026, 1, 8, 5),
        s.DueKind.FEW,
        utc(2026, 1, 8),
        7,
    ),
    (
        "interval: counted exactly",
        ("interval", "10s"),
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 1, 5),
        s.DueKind.FEW,
        utc(2026, 1, 1, 0, 1, 0),
        5,
    ),
    (
        "interval: a week of downtime",
        ("interval", "1m"),
        utc(2026, 1, 1),
        utc(2026, 1, 8),
        s.DueKind.MANY,
        utc(2026, 1, 8),
        10080,
    ),
]


@pytest.mark.parametrize(
    ("name", "sched", "since", "now", "kind", "latest", "count"),
    MISSED_CASES,
    ids=[c[0] for c in MISSED_CASES],
)
def test_due_runs_between_cursor_and_now(
    name: str,
    sched: tuple[str, str],
    since: datetime,
    now: datetime,
    kind: s.DueKind,
    latest: datetime | None,
    count: int,
) -> None:
    compiled: s.Schedule = (
        s.compile_cron(sched[1])
        if sched[0] == "cron"
        else s.compile_interval(sched[1], anchor=utc(2026, 1, 1))
    )
    due = s.due_runs(compiled, since=since, now=now)
    assert (due.kind, due.latest, due.count) == (kind, latest, count)


# --------------------------------------------------------------------------- backoff

BACKOFF_CASES = [
    # name, failed attempt, initial, multiplier, max, jitter, rand, expected seconds
    ("first retry waits the initial delay", 1, 10, 2.0, 600, 0.0, 0.5, 10.0),
    ("second retry doubles", 2, 10, 2.0, 600, 0.0, 0.5, 20.0),
    ("fourth retry: 10 * 2^3", 4, 10, 2.0, 600, 0.0, 0.5, 80.0),
    ("capped by maxDelay", 10, 10, 2.0, 600, 0.0, 0.5, 600.0),
    ("multiplier 1 is constant", 5, 3, 1.0, 600, 0.0, 0.5, 3.0),
    ("jitter low end", 1, 10, 2.0, 600, 0.1, 0.0, 9.0),
    ("jitter high end", 1, 10, 2.0, 600, 0.1, 0.999999, 10.999998),
    ("jitter never exceeds the cap", 10, 10, 2.0, 600, 0.5, 0.99, 600.0),
]


@pytest.mark.parametrize(
    ("name", "attempt", "initial", "mult", "cap", "jitter", "rand", "expected"),
    BACKOFF_CASES,
    ids=[c[0] for c in BACKOFF_CASES],
)
def test_backoff_delays(
    name: str,
    attempt: int,
    initial: float,
    mult: float,
    cap: float,
    jitter: float,
    rand: float,
    expected: float,
) -> None:
    delay = s.backoff_delay(
        failed_attempt=attempt,
        initial=timedelta(seconds=initial),
        multiplier=mult,
        max_delay=timedelta(seconds=cap),
        jitter=jitter,
        rand=rand,
    )
    assert delay.total_seconds() == pytest.approx(expected, abs=1e-5)


def test_stable_fraction_is_deterministic_and_spread() -> None:
    values = [s.stable_fraction(f"task/run/{i}") for i in range(200)]
    assert values == [s.stable_fraction(f"task/run/{i}") for i in range(200)]
    assert all(0 <= v < 1 for v in values)
    assert 0.35 < sum(values) / len(values) < 0.65


def test_tasks_with_the_same_expression_share_one_parsed_schedule_unless_it_hashes() -> None:
    shared = s.compile_cron("0 0 * * *", hash_key="ns/a")
    assert s.compile_cron("0 0 * * *", hash_key="ns/b") is shared
    assert s.compile_cron("@daily", hash_key="ns/c") is s.compile_cron("@daily", hash_key="ns/d")
    a, b = s.compile_cron("H H * * *", hash_key="ns/a"), s.compile_cron("H H * * *", hash_key="ns/b")
    assert a is not b and a.hash_key == "ns/a"
