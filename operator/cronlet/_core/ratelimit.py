"""Client-side rate limiting of API requests: a token bucket whose waiters are served by priority.

The bucket is kube-controller-manager's (``--kube-api-qps``, ``--kube-api-burst``; client-go's
``flowcontrol`` token bucket): it holds at most ``burst`` tokens, gains ``qps`` tokens a second, and every
request takes one. What client-go does not have is an order among waiters: when the budget is short, a
waiting request of a higher priority (a lower ``Priority`` value) goes before every waiting request of a
lower one, and requests of one priority go in the order they came. So a burst of launches (claims and Job
creates) is never queued behind the status writes and Events of runs that finished, and the lease renewal
never waits behind either.

Pure: the clock is a parameter (seconds, monotonic); no I/O, no asyncio. ``_controller.kube`` does the
waiting.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

W = TypeVar("W")
# A token counts as whole from this much: refilling by (1 - tokens) / qps seconds can land a rounding error
# short of 1, and the waiter woken for it must not be sent back to sleep for an instant that never comes.
_WHOLE = 1 - 1e-9


class Priority(enum.IntEnum):
    """Who goes first when the budget is short: the lowest value."""

    ELECTION = 0  # reading and renewing the Lease: losing it stops every launch
    LAUNCH = 1  # the status write that claims an attempt, and the Job create that follows
    BOOKKEEPING = 2  # everything else: finished runs' status writes, reading messages, deletes, Events


@dataclass(frozen=True, kw_only=True)
class Limits:
    """``qps`` tokens a second, at most ``burst`` at once; ``qps <= 0`` means no limit."""

    qps: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0


@dataclass
class Bucket(Generic[W]):
    """Tokens, and the waiters of each priority in arrival order. A waiter is any value (``W``): the
    caller's handle to wake it."""

    limits: Limits
    now: float  # when ``tokens`` was last brought up to date
    tokens: float = field(init=False)
    _waiting: dict[Priority, deque[W]] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(max(1, self.limits.burst))  # full at start, as client-go's
        self._waiting = {p: deque() for p in Priority}

    def _refill(self, now: float) -> None:
        if now > self.now:
            self.tokens = min(
                float(max(1, self.limits.burst)), self.tokens + (now - self.now) * self.limits.qps
            )
            self.now = now

    def take(self, priority: Priority, now: float) -> bool:
        """Take a token at once if one is free and no waiter of this or a higher priority is ahead."""
        if self.limits.unlimited:
            return True
        self._refill(now)
        if self.tokens >= _WHOLE and not any(self._waiting[p] for p in Priority if p <= priority):
            self.tokens -= 1
            return True
        return False

    def wait(self, waiter: W, priority: Priority) -> None:
        """Queue ``waiter``, after a ``take`` that failed; ``release`` hands it its token later."""
        self._waiting[priority].append(waiter)

    def cancel(self, waiter: W) -> None:
        """Forget a waiter that no longer wants its token (its caller gave up)."""
        for queue in self._waiting.values():
            if waiter in queue:
                queue.remove(waiter)

    def release(self, now: float) -> list[W]:
        """The waiters that get their token now, highest priority first, each token taken."""
        self._refill(now)
        out: list[W] = []
        for priority in Priority:
            queue = self._waiting[priority]
            while queue and self.tokens >= _WHOLE:
                self.tokens -= 1
                out.append(queue.popleft())
        return out

    def next_release(self, now: float) -> float | None:
        """Seconds from ``now`` until the next waiter can get a token; None when nobody waits."""
        if not any(self._waiting.values()):
            return None
        self._refill(now)
        return max(0.0, (1 - self.tokens) / self.limits.qps) if self.tokens < _WHOLE else 0.0

    def waiting(self) -> dict[Priority, int]:
        return {p: len(q) for p, q in self._waiting.items()}
