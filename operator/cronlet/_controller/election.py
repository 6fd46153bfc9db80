"""Leader election on a Lease: one replica acts, the others keep warm caches and wait to take over.

The same protocol as client-go's ``leaderelection`` (kube-controller-manager's flags and defaults: lease
duration 15 s, renew deadline 10 s, retry period 2 s), with what that package leaves out: the monotonic
clock for every duration (never the wall clock), a bound on every round, and a release on a clean stop so a
standby takes over at once. ``decide`` is pure; ``Elector`` runs it against the API through ``kube``.

Election alone does not fence: a leader paused past its lease can still write when it wakes. Its writes are
gated on a locally valid lease (``leading()``: a renew won within the renew deadline), and every write that
matters is fenced anyway by the task's resourceVersion (claim, then create; see ``reconciler``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cronlet._common import times

log = logging.getLogger("cronlet.election")


@dataclass(frozen=True, kw_only=True)
class Settings:
    name: str = "cronlet"
    namespace: str = "default"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True, kw_only=True)
class Record:
    """The Lease as read: who holds it and since when (the wall times are for people; ``version`` and
    our own observation times decide)."""

    holder: str
    duration: float
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    version: str  # resourceVersion; "" for a Lease that does not exist yet


def decide(
    record: Record | None, *, me: str, observed_for: float, settings: Settings, now: datetime
) -> dict[str, Any] | None:
    """The Lease spec to write (create or replace) to lead, or None to wait.

    ``observed_for``: seconds (monotonic) since this process last saw the record change. Another holder's
    lease counts as expired only once it stayed unchanged for its whole duration in our own observation,
    whatever the clocks of the two machines say.
    """
    stamp = _micro(now)
    if record is None:
        return _spec(me, settings, acquire=stamp, renew=stamp, transitions=0)
    if record.holder and record.holder != me and observed_for < record.duration:
        return None
    mine = record.holder == me
    return _spec(
        me,
        settings,
        acquire=record.acquire_time if mine and record.acquire_time else stamp,
        renew=stamp,
        transitions=record.transitions if mine else record.transitions + 1,
    )


def acting_alone_since(record: Record | None, *, me: str, now: datetime) -> datetime:
    """Once we win ``record``: since when no other replica can have acted (created a Job of a claim it holds).

    A lease taken over after it expired: from now (its holder's renew deadline ended before its lease did). A
    lease its holder released on a clean stop, or one held under our own identity (an earlier process of ours:
    the container restarted in its pod): from when that holder acquired it, since it acts no more and nobody
    else acted while it led (its acquireTime is its own wall clock: callers keep a margin).
    """
    if record is not None and record.holder in ("", me) and record.acquire_time:
        with contextlib.suppress(ValueError):
            return min(now, times.parse(record.acquire_time))
    return now


def _spec(me: str, settings: Settings, *, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": max(1, round(settings.lease_duration)),
        "acquireTime": acquire,
        "renewTime": renew,
        "leaseTransitions": transitions,
    }


def _micro(moment: datetime) -> str:
    """Lease times are MicroTime: RFC 3339 with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_record(lease: dict[str, Any] | None) -> Record | None:
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return Record(
        holder=spec.get("holderIdentity") or "",
        duration=float(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        version=(lease.get("metadata") or {}).get("resourceVersion") or "",
    )


class LeaseApi(Protocol):
    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any] | None: ...


class Elector:
    def __init__(
        self,
        api: LeaseApi,
        settings: Settings,
        *,
        on_lead: Callable[[], None] = lambda: None,
        on_lose: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.settings = settings
        self._on_lead = on_lead
        self._on_lose = on_lose
        self._monotonic = monotonic
        self._wall = wall
        self._valid_until = 0.0
        self._was_leading = False
        # While leading: since when no other replica can have acted (``acting_alone_since``); else None.
        self.since: datetime | None = None
        self._since_if_won = wall()
        self._seen: Record | None = None
        self._seen_at = monotonic()
        self._lease: dict[str, Any] | None = None

    def leading(self) -> bool:
        """Whether this process may act now: its last renew won less than the renew deadline ago.

        A lapse seen here, between rounds (a round hung on a slow API server), is a loss like one a round
        sees: passes refused meanwhile re-arm no timer, and only on_lead, when a round wins again, looks at
        every task anew. Without it, a leader that lapsed and renewed left those tasks without a pass for ever.
        """
        valid = self._valid()
        if self._was_leading and not valid:
            self._transition()
        return valid

    def _valid(self) -> bool:
        return self._monotonic() < self._valid_until

    async def run(self) -> None:
        """Try to lead, then renew, every retry period, for ever."""
        while True:
            await self.round()
            await asyncio.sleep(self.settings.retry_period)

    async def round(self) -> bool:
        """One try to acquire or renew, bounded in time; True when we lead afterwards."""
        started = self._monotonic()
        bound = self.settings.renew_deadline if self._was_leading else self.settings.retry_period
        try:
            won = await asyncio.wait_for(self._try(), timeout=bound)
        except (TimeoutError, Exception) as exc:  # a round that fails is a round not won, nothing more
            log.debug("lease round failed: %s", exc)
            won = False
        if won:
            self._valid_until = started + self.settings.renew_deadline
        self._transition()
        return self._valid()

    async def _try(self) -> bool:
        s = self.settings
        lease = await self.api.read_lease(s.namespace, s.name)
        record = read_record(lease)
        if record != self._seen:
            self._seen, self._seen_at = record, self._monotonic()
        spec = decide(
            record,
            me=s.identity,
            observed_for=self._monotonic() - self._seen_at,
            settings=s,
            now=self._wall(),
        )
        if spec is None:
            return False
        self._since_if_won = acting_alone_since(record, me=s.identity, now=self._wall())
        written = await self.api.write_lease(
            s.namespace, s.name, spec, resource_version=record.version if record else ""
        )
        if written is None:
            return False  # someone else wrote first (409)
        self._seen, self._seen_at = read_record(written), self._monotonic()
        return True

    def _transition(self) -> None:
        now_leading = self._valid()
        if now_leading and not self._was_leading:
            self.since = self._since_if_won
            log.info(
                "became the leader (lease %s/%s, identity %s)",
                self.settings.namespace,
                self.settings.name,
                self.settings.identity,
            )
            self._on_lead()
        elif self._was_leading and not now_leading:
            log.warning("lost the lease %s/%s: no longer acting", self.settings.namespace, self.settings.name)
            self.since = None
            self._on_lose()
        self._was_leading = now_leading

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over at its next round, not after 15 s."""
        if not self._was_leading or self._seen is None:
            return
        self._valid_until = 0.0
        self._transition()
        spec = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": self._seen.acquire_time,
            "renewTime": _micro(self._wall()),
            "leaseTransitions": self._seen.transitions,
        }
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.api.write_lease(
                    self.settings.namespace, self.settings.name, spec, resource_version=self._seen.version
                ),
                timeout=self.settings.retry_period,
            )
            log.info("released the lease %s/%s", self.settings.namespace, self.settings.name)
