"""RFC 3339 instants, the one way Cronlet writes and reads times (status, Job annotations, CRONLET_* env).

Written as Kubernetes writes timestamps: UTC with a ``Z``, milliseconds only when there are any. Read
strictly: an instant needs an offset, because a naive time would be read in whatever zone the reader is in.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC with a Z; milliseconds only when there are any (microseconds are dropped)."""
    moment = moment.astimezone(UTC)
    if moment.microsecond // 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    """An RFC 3339 instant (``Z`` or an offset such as ``+02:00``) as an aware UTC datetime.

    Raises ValueError, with a message fit for a user, for text that is not an instant or has no offset.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an RFC 3339 time (like 2026-01-01T00:00:00Z)") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or an offset such as +01:00")
    return moment.astimezone(UTC)


def parse_optional(text: str | None) -> datetime | None:
    """``parse`` for a field that may be absent or empty."""
    return parse(text) if text else None
