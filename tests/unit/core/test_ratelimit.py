"""The client-side token bucket: kube-controller-manager's qps and burst, and launches before bookkeeping.

The clock is a number passed in; nothing sleeps.
"""

from __future__ import annotations

import pytest

from cronlet._core.ratelimit import Bucket, Limits, Priority

LAUNCH, BOOK, ELECTION = Priority.LAUNCH, Priority.BOOKKEEPING, Priority.ELECTION


def bucket(qps: float = 10, burst: int = 3, now: float = 100.0) -> Bucket[str]:
    return Bucket(Limits(qps=qps, burst=burst), now=now)


def test_a_full_bucket_lets_burst_requests_through_at_once_then_refuses() -> None:
    b = bucket(qps=10, burst=3)
    assert [b.take(BOOK, 100.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_qps_and_never_above_burst() -> None:
    b = bucket(qps=10, burst=3)
    for _ in range(3):
        b.take(BOOK, 100.0)
    assert not b.take(BOOK, 100.05)  # half a token
    assert b.take(BOOK, 100.1)  # one token after 1/qps
    assert [b.take(BOOK, 200.0) for _ in range(4)] == [True, True, True, False]  # long idle: still only burst


def test_no_limit_when_qps_is_zero() -> None:
    b = bucket(qps=0, burst=0)
    assert all(b.take(BOOK, 100.0) for _ in range(10_000))


def test_waiters_are_served_launches_first_then_in_arrival_order() -> None:
    b = bucket(qps=10, burst=1)
    assert b.take(BOOK, 100.0)
    for name, priority in [("finish-1", BOOK), ("claim-1", LAUNCH), ("finish-2", BOOK), ("claim-2", LAUNCH)]:
        assert not b.take(priority, 100.0)
        b.wait(name, priority)
    served = []
    now = 100.0
    while (delay := b.next_release(now)) is not None:
        now += delay
        served += b.release(now)
    assert served == ["claim-1", "claim-2", "finish-1", "finish-2"]
    assert now == pytest.approx(100.4)  # one every 1/qps: queueing changes the order, not the rate


def test_the_lease_goes_before_launches() -> None:
    b = bucket(qps=1, burst=1, now=0.0)
    b.take(LAUNCH, 0.0)
    b.wait("create", LAUNCH)
    b.wait("renew", ELECTION)
    assert b.release(1.0) == ["renew"]
    assert b.release(2.0) == ["create"]


def test_a_request_does_not_overtake_waiters_of_its_priority_or_higher() -> None:
    b = bucket(qps=10, burst=2)
    b.take(BOOK, 100.0)
    b.take(BOOK, 100.0)
    b.wait("claim", LAUNCH)
    now = 100.1  # one token back, owed to the waiting launch
    assert not b.take(LAUNCH, now)
    assert not b.take(BOOK, now)
    assert b.release(now) == ["claim"]


def test_a_launch_may_pass_waiting_bookkeeping() -> None:
    b = bucket(qps=10, burst=2)
    b.take(BOOK, 100.0)
    b.take(BOOK, 100.0)
    b.wait("finish", BOOK)
    assert b.take(LAUNCH, 100.1)  # the token that came back goes to the launch
    assert b.release(100.1) == []
    assert b.release(100.2) == ["finish"]


def test_next_release_says_when_the_next_waiter_gets_a_token() -> None:
    b = bucket(qps=4, burst=1)
    assert b.next_release(0.0) is None  # nobody waits
    b.take(BOOK, 100.0)
    b.wait("a", BOOK)
    assert b.next_release(100.0) == pytest.approx(0.25)
    assert b.next_release(100.1) == pytest.approx(0.15)


def test_rounding_never_leaves_a_woken_waiter_without_its_token() -> None:
    b = bucket(qps=3, burst=1)  # 1/3 s per token: not exact in binary
    b.take(BOOK, 100.0)
    now, served = 100.0, []
    for name in "abcdefghij":
        b.wait(name, BOOK)
    for _ in range(10):
        delay = b.next_release(now)
        assert delay is not None and delay > 0.3
        now += delay
        served += b.release(now)
    assert served == list("abcdefghij")


def test_a_cancelled_waiter_gives_up_its_place() -> None:
    b = bucket(qps=10, burst=1)
    b.take(BOOK, 100.0)
    b.wait("gone", LAUNCH)
    b.wait("stays", BOOK)
    b.cancel("gone")
    assert b.waiting() == {ELECTION: 0, LAUNCH: 0, BOOK: 1}
    assert b.release(100.1) == ["stays"]
