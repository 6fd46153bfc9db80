"""Schedule arithmetic: parsing, next due times, missed runs, retry delays.

Pure functions only. The clock is always a parameter (``now``, ``after``), randomness is a parameter
(``rand``), and nothing here performs I/O or imports Kubernetes. Every datetime that goes in or comes out
is timezone-aware; results are in UTC.

The cron dialect is the one of the API contract: 5 fields, or 6 with *seconds first* (Spring/Quartz);
macros; ``L``, ``W``, ``#`` and ``H`` (hashed per task) as croniter reads them. croniter walks *wall-clock*
(naive) times here; this module maps each wall time to instants in the task's zone, which is where the
contract's daylight-saving rule lives (see ``_instants_of``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from cronlet._core.model import ConditionReason

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# How far apart two due times may be at most before we call a schedule "never fires" (Feb 30).
_MAX_YEARS_BETWEEN = 30
# Offsets change by at most a few hours at a transition; look this far around an instant for one.
_TRANSITION_WINDOW = timedelta(hours=3)


class ScheduleError(ValueError):
    """A schedule that cannot be used. ``reason`` is the CamelCase condition reason for the user."""

    def __init__(self, reason: ConditionReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CronSchedule:
    """A compiled cron expression read in one time zone."""

    expression: str  # as the user wrote it
    fields: str  # normalised: 6 fields, seconds first, macros expanded
    zone: ZoneInfo
    hash_key: str
    # In the hour repeated by a fall-back, run at both instants (minute or hour field has * or a step)?
    repeat_in_fold: bool


@dataclass(frozen=True)
class IntervalSchedule:
    """A fixed-rate schedule: due at ``anchor + n * period`` for n >= 1."""

    anchor: datetime
    period: timedelta


Schedule = CronSchedule | IntervalSchedule


class DueKind(enum.Enum):
    """How many due times fell between the last handled one and now (the CronJob controller's enum)."""

    NONE = "None"
    FEW = "Few"  # 1 .. limit
    MANY = "Many"  # more than limit: the exact number was not counted


@dataclass(frozen=True)
class DueRuns:
    kind: DueKind
    latest: datetime | None  # most recent due time in (since, now]
    count: int  # due times in (since, now]; with MANY, a lower bound (limit + 1)


# --------------------------------------------------------------------------- durations


# Go's time.ParseDuration, unsigned: what metav1.Duration, kubectl --timeout and the CRD's CEL duration()
# read. "d" (24h) is read too, for specs stored before v1alpha1 took Go's format (model.DURATION_PATTERN no
# longer admits it); a bare number (seconds) only for the operator's own flags.
_DURATION_PART = re.compile("([0-9]*)(?:\\.([0-9]*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h|d)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_MAX_NS = 2**63 - 1  # Go's Duration is an int64 of nanoseconds


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration (``30s``, ``1h30m``, ``1.5s``, ``500ms``, ``.5h``, ``0``), as time.ParseDuration does.

    Also read: ``1d`` (24h, the unit v1alpha1 accepted before; the API server now refuses it in new values) and
    a bare number of seconds (``45``, for flags). Sub-microsecond remainders are rounded (timedelta's resolution).
    """
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return timedelta(seconds=float(s))
    pos, total = 0, 0
    for m in _DURATION_PART.finditer(s):
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if m.start() != pos or not (whole or frac):
            break
        scale = _UNIT_NS[unit]
        total += int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(
            f"invalid duration {text!r}: use a Go duration, numbers with units h, m, s, ms, us, ns "
            "(like 30s, 1h30m, 1.5s or 500ms)"
        )
    if total > _MAX_NS:
        raise ValueError(f"invalid duration {text!r}: longer than Go's limit of about 292 years")
    return timedelta(microseconds=total / 1000)


def format_duration(delta: timedelta) -> str:
    secs = delta.total_seconds()
    if secs != int(secs):
        return f"{secs:g}s"
    secs_i = int(secs)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if secs_i >= size:
            out += f"{secs_i // size}{unit}"
            secs_i %= size
    return out or "0s"


# --------------------------------------------------------------------------- compiling


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError(
            "UnknownTimeZone",
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'",
        ) from exc


def compile_cron(expression: str, *, time_zone: str = "UTC", hash_key: str = "") -> CronSchedule:
    """Parse and validate a cron expression once; raises ScheduleError with a readable message.

    Only an ``H`` field reads ``hash_key``: without one, every task with the same expression and zone shares
    one parsed schedule and one iterator (10,000 tasks on `0 0 * * *` hold one, not 10,000).
    """
    hashed = "h" in expression.lower() and not expression.lstrip().startswith("@")
    return _compile_cron(expression, time_zone=time_zone, hash_key=hash_key if hashed else "")


@functools.lru_cache(maxsize=65536)
def _compile_cron(expression: str, *, time_zone: str, hash_key: str) -> CronSchedule:
    zone = load_zone(time_zone)
    text = " ".join(expression.split())
    if not text:
        raise ScheduleError("InvalidSchedule", "schedule is empty")
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError(
            "InvalidSchedule", "time zone prefixes are not supported in schedule: set spec.timeZone instead"
        )
    if text.startswith("@"):
        if text.lower().startswith("@every"):
            raise ScheduleError("InvalidSchedule", f"{text!r}: use spec.interval for fixed-rate schedules")
        if text.lower() not in MACROS:
            raise ScheduleError("InvalidSchedule", f"unknown macro {text!r}: use one of {', '.join(MACROS)}")
        text = MACROS[text.lower()]
    parts = text.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise ScheduleError(
            "InvalidSchedule",
            f"{expression!r} has {len(parts)} fields: use 5 "
            "(min hour dom mon dow) or 6 with seconds first (sec min hour dom mon dow)",
        )
    fields = " ".join(parts)
    try:
        it = croniter(
            fields,
            datetime(2000, 1, 1),
            second_at_beginning=True,
            hash_id=hash_key.encode(),
            max_years_between_matches=_MAX_YEARS_BETWEEN,
        )
        it.get_next(datetime)
    except CroniterBadDateError as exc:
        raise ScheduleError(
            "InvalidSchedule",
            f"{expression!r} never fires (no matching date within {_MAX_YEARS_BETWEEN} years)",
        ) from exc
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ScheduleError("InvalidSchedule", f"invalid cron expression {expression!r}: {exc}") from exc
    repeat = any(c in parts[1] + parts[2] for c in "*/")
    return CronSchedule(
        expression=expression, fields=fields, zone=zone, hash_key=hash_key, repeat_in_fold=repeat
    )


def compile_interval(interval: str, *, anchor: datetime) -> IntervalSchedule:
    try:
        period = parse_duration(interval)
    except ValueError as exc:
        raise ScheduleError("InvalidInterval", str(exc)) from exc
    if period < timedelta(seconds=1):
        raise ScheduleError("InvalidInterval", f"interval {interval!r} is shorter than 1s")
    if period.microseconds % 1000:
        # Due times are written with millisecond precision; a finer interval could not be read back exactly.
        raise ScheduleError("InvalidInterval", f"interval {interval!r} is not a whole number of milliseconds")
    return IntervalSchedule(anchor=_utc(anchor), period=period)


# --------------------------------------------------------------------------- next / previous


def next_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first due instant strictly after ``after`` (UTC), or None if there is none."""
    after = _utc(after)
    if isinstance(schedule, IntervalSchedule):
        if after < schedule.anchor + schedule.period:
            return schedule.anchor + schedule.period
        k = math.floor((after - schedule.anchor) / schedule.period) + 1
        return schedule.anchor + k * schedule.period
    return _cron_step(schedule, after, forward=True)


def latest_at_or_before(schedule: Schedule, moment: datetime) -> datetime | None:
    """The last due instant at or before ``moment`` (UTC), or None."""
    moment = _utc(moment)
    if isinstance(schedule, IntervalSchedule):
        k = math.floor((moment - schedule.anchor) / schedule.period)
        return schedule.anchor + k * schedule.period if k >= 1 else None
    return _cron_step(schedule, moment + timedelta(microseconds=1), forward=False)


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    t: datetime | None = after
    while len(out) < count and t is not None:
        t = next_after(schedule, t)
        if t is not None:
            out.append(t)
    return out


def due_runs(schedule: Schedule, *, since: datetime, now: datetime, limit: int = 100) -> DueRuns:
    """Due times in (since, now]: how many (up to ``limit``) and the most recent one."""
    since, now = _utc(since), _utc(now)
    if isinstance(schedule, IntervalSchedule):
        k_now = math.floor((now - schedule.anchor) / schedule.period)
        k_since = max(math.floor((since - schedule.anchor) / schedule.period), 0)
        count = max(k_now - k_since, 0)
        if count == 0:
            return DueRuns(DueKind.NONE, None, 0)
        latest = schedule.anchor + k_now * schedule.period
        return DueRuns(DueKind.MANY if count > limit else DueKind.FEW, latest, count)
    count, t = 0, since
    last_seen: datetime | None = None
    nxt: datetime | None
    while True:
        nxt = next_after(schedule, t)
        if nxt is None or nxt > now:
            break
        count, last_seen, t = count + 1, nxt, nxt
        if count > limit:
            return DueRuns(DueKind.MANY, latest_at_or_before(schedule, now), count)
    return DueRuns(DueKind.FEW if count else DueKind.NONE, last_seen, count)


# --------------------------------------------------------------------------- backoff


def backoff_delay(
    *,
    failed_attempt: int,
    initial: timedelta,
    multiplier: float,
    max_delay: timedelta,
    jitter: float,
    rand: float,
) -> timedelta:
    """Delay before the attempt after ``failed_attempt`` (1 = the first try failed).

    ``rand`` in [0, 1) picks the jitter: the delay is scaled by 1 + jitter * (2 * rand - 1), then capped.
    """
    base = initial.total_seconds() * multiplier ** max(failed_attempt - 1, 0)
    base = min(base, max_delay.total_seconds())
    jittered = base * (1 + jitter * (2 * rand - 1))
    return timedelta(seconds=max(0.0, min(jittered, max_delay.total_seconds())))


def stable_fraction(seed: str) -> float:
    """A number in [0, 1) fixed by ``seed``: deterministic jitter that a restart recomputes identically."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --------------------------------------------------------------------------- internals


@functools.lru_cache(maxsize=65536)
def _iterator(s: CronSchedule) -> croniter:
    """One parsed croniter per schedule, repositioned for each question: parsing costs more than stepping.

    Not shared across threads: the operator asks from one event loop, the CLI from one thread.
    """
    return croniter(
        s.fields,
        datetime(2000, 1, 1),
        second_at_beginning=True,
        hash_id=s.hash_key.encode(),
        max_years_between_matches=_MAX_YEARS_BETWEEN,
    )


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime: schedule arithmetic needs aware datetimes")
    return t.astimezone(UTC)


def _fold_near(zone: ZoneInfo, t: datetime) -> timedelta:
    """Length of a fold (clocks going back) within the window around ``t``; zero when there is none.

    Only folds break the order of wall times against instants: in a gap (clocks going forward) several wall
    times collapse onto one instant, but order is kept, so the first match is still the nearest.
    """
    before = (t - _TRANSITION_WINDOW).astimezone(zone).utcoffset() or timedelta(0)
    after = (t + _TRANSITION_WINDOW).astimezone(zone).utcoffset() or timedelta(0)
    return max(before - after, timedelta(0))


def _instants_of(s: CronSchedule, wall: datetime) -> list[datetime]:
    """The instants at which a matching wall time is due (the contract's DST rule).

    - an ordinary wall time: one instant;
    - a wall time skipped by a spring-forward gap: the first instant after the gap;
    - a wall time repeated by a fall-back: the first occurrence, and also the second one when the minute
      or hour field has a wildcard or step (elapsed-time cadence is kept).
    """
    first = wall.replace(tzinfo=s.zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=s.zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(s.zone).replace(tzinfo=None) == wall:  # exists twice: a fold
        return [first, second] if s.repeat_in_fold else [first]
    # A gap: fold=1 reads the wall time with the offset after the change (earlier instant), fold=0 with
    # the offset before it (later instant); the change itself lies between them.
    lo, hi = second, first
    after_offset = hi.astimezone(s.zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(s.zone).utcoffset() == after_offset:
            hi = mid
        else:
            lo = mid
    return [hi.replace(microsecond=0)]


def _cron_step(s: CronSchedule, t: datetime, *, forward: bool) -> datetime | None:
    """Nearest due instant strictly after ``t`` (forward) or strictly before it (backward).

    Away from a fold, wall times and instants move together, so the first match is the answer. Near one
    they do not: the second occurrence of a repeated wall time comes after later wall times' first
    occurrences. So we start one fold-length early (to meet such second occurrences), and after a candidate
    keep stepping until a wall time outside any fold maps beyond it: from there on order is kept again.
    """
    sign = 1 if forward else -1
    wall_t = t.astimezone(s.zone).replace(tzinfo=None)
    start = wall_t
    fold = _fold_walls(s.zone, t)
    if fold is not None and fold[0] <= wall_t < fold[1]:
        # Wall times of the fold on the far side of wall_t still have an occurrence beyond t.
        start = fold[0] - timedelta(microseconds=1) if forward else fold[1]
    it = _iterator(s)
    it.set_current(start, force=True)
    best: datetime | None = None
    careful = fold is not None
    while True:
        try:
            wall = it.get_next(datetime) if forward else it.get_prev(datetime)
        except CroniterBadDateError:
            return best
        instants = _instants_of(s, wall)
        if best is not None and not _ambiguous(s.zone, wall) and (instants[0] - best) * sign > timedelta(0):
            return best
        for inst in instants:
            beyond = inst > t if forward else inst < t
            if beyond and (best is None or (inst < best if forward else inst > best)):
                best = inst
                careful = careful or _fold_near(s.zone, best) > timedelta(0)
        if best is not None and not careful:
            return best


def _fold_walls(zone: ZoneInfo, t: datetime) -> tuple[datetime, datetime] | None:
    """The wall-clock range [start, end) that a fold near ``t`` repeats (02:00-03:00 in Berlin), or None."""
    lo, hi = t - _TRANSITION_WINDOW, t + _TRANSITION_WINDOW
    before, after = lo.astimezone(zone).utcoffset(), hi.astimezone(zone).utcoffset()
    if before is None or after is None or after >= before:
        return None
    while hi - lo > timedelta(seconds=1):  # the instant the clocks go back
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    change = hi.replace(microsecond=0).astimezone(UTC).replace(tzinfo=None)
    return change + after, change + before


def _ambiguous(zone: ZoneInfo, wall: datetime) -> bool:
    """Does this wall time happen twice (inside a fold)?"""
    first = wall.replace(tzinfo=zone, fold=0)
    return (
        first.utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset()
        and first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
    )
