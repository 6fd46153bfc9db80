"""Leader election: the pure decision, and the elector against an in-memory Lease with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from cronlet._common import times
from cronlet._controller import election

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = election.Settings(
    name="cronlet", namespace="ops", identity="a", lease_duration=15, renew_deadline=10, retry_period=2
)


def record(holder: str, *, transitions: int = 0, version: str = "5") -> election.Record:
    return election.Record(
        holder=holder,
        duration=15,
        acquire_time="2026-01-01T00:00:00.000000Z",
        renew_time="2026-01-01T00:00:00.000000Z",
        transitions=transitions,
        version=version,
    )


def test_no_lease_is_created_with_us_as_holder() -> None:
    spec = election.decide(None, me="a", observed_for=0, settings=S, now=T0)
    assert spec is not None and spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 15 and spec["renewTime"] == "2026-01-01T00:00:00.000000Z"


def test_another_holders_lease_is_respected_until_it_went_unchanged_for_its_duration() -> None:
    assert election.decide(record("b"), me="a", observed_for=14.9, settings=S, now=T0) is None
    taken = election.decide(record("b", transitions=3), me="a", observed_for=15.1, settings=S, now=T0)
    assert taken is not None and taken["holderIdentity"] == "a" and taken["leaseTransitions"] == 4


def test_our_own_lease_is_renewed_keeping_its_acquire_time() -> None:
    spec = election.decide(
        record("a", transitions=2), me="a", observed_for=1, settings=S, now=T0 + timedelta(seconds=5)
    )
    assert spec is not None
    assert spec["acquireTime"] == "2026-01-01T00:00:00.000000Z" and spec["leaseTransitions"] == 2
    assert spec["renewTime"] == "2026-01-01T00:00:05.000000Z"


def test_a_released_lease_is_taken_at_once() -> None:
    spec = election.decide(record(""), me="a", observed_for=0, settings=S, now=T0)
    assert spec is not None and spec["holderIdentity"] == "a"


class FakeLeases:
    """One Lease with resourceVersion checks; ``hang`` makes every call wait for ever."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.hang = False

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.hang:
            await asyncio.Event().wait()
        return self.lease

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any] | None:
        if self.hang:
            await asyncio.Event().wait()
        current = self.lease["metadata"]["resourceVersion"] if self.lease else ""
        if resource_version != current:
            return None
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": dict(spec)}
        return self.lease


def test_two_electors_one_leader_failover_after_the_lease_and_release_hands_over_at_once() -> None:
    async def go() -> None:
        clock = [0.0]
        leases = FakeLeases()
        events: list[str] = []
        a = election.Elector(
            leases,
            S,
            monotonic=lambda: clock[0],
            on_lead=lambda: events.append("a leads"),
            on_lose=lambda: events.append("a lost"),
        )
        b = election.Elector(
            leases,
            election.Settings(**{**S.__dict__, "identity": "b"}),
            monotonic=lambda: clock[0],
            on_lead=lambda: events.append("b leads"),
        )
        assert await a.round() and not await b.round()
        for _ in range(5):  # a renews every 2 s; b keeps seeing changes and waits
            clock[0] += 2
            assert await a.round() and not await b.round()
        # a stops renewing (killed): b takes over once the lease went unchanged for 15 s of b's observation
        last_change = clock[0]
        while not await b.round():
            clock[0] += 2
        assert 15 <= clock[0] - last_change <= 17
        assert not a.leading()  # a's own renew deadline has long passed
        assert b.since is not None and a.since is None  # since when b leads (claims due later are b's)
        # a clean stop: b releases, a takes over at its next round
        acquired = leases.lease["spec"]["acquireTime"] if leases.lease else ""
        await b.release()
        assert not b.leading() and b.since is None
        clock[0] += 0.1
        assert await a.round()
        # b stopped and acted alone while it led: nobody but a has acted since b acquired the lease
        assert a.since == times.parse(acquired)
        # a, "killed", ran no round in between; it saw its lapse when asked, and leads anew (looking at
        # every task again) when it wins
        assert events == ["a leads", "b leads", "a lost", "a leads"]

    asyncio.run(go())


def test_a_hung_api_call_ends_the_round_and_the_leader_steps_down_at_its_renew_deadline() -> None:
    async def go() -> None:
        clock = [0.0]
        leases = FakeLeases()
        fast = election.Settings(
            **{**S.__dict__, "renew_deadline": 0.2, "retry_period": 0.1, "lease_duration": 0.3}
        )
        a = election.Elector(leases, fast, monotonic=lambda: clock[0])
        assert await a.round()
        leases.hang = True
        clock[0] += 0.25  # past the renew deadline of the last renew that won
        assert not await a.round()  # the hung call is cut at the bound, and a no longer leads
        assert not a.leading()

    asyncio.run(go())


def test_a_lapse_between_rounds_is_a_loss_and_winning_again_is_a_new_lead() -> None:
    """A round hung past the renew deadline (the API server restarting): passes refused while the lease was
    not valid re-arm no timer, so the next win must call on_lead, which looks at every task again."""

    async def go() -> None:
        clock = [0.0]
        leases = FakeLeases()
        events: list[str] = []
        a = election.Elector(
            leases,
            S,
            monotonic=lambda: clock[0],
            on_lead=lambda: events.append("lead"),
            on_lose=lambda: events.append("lose"),
        )
        assert await a.round()
        clock[0] += 10.5  # no round finished meanwhile: the last renew is older than the renew deadline
        assert not a.leading()
        assert not a.leading()  # told once
        assert await a.round()  # the API server is back: the same holder renews
        assert a.leading()
        assert events == ["lead", "lose", "lead"]

    asyncio.run(go())


def test_acting_alone_since_an_expired_lease_is_taken_or_since_the_releasers_acquisition() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    held = election.Record(
        holder="a", duration=15, acquire_time="2026-01-01T00:00:00.000000Z", renew_time=None, transitions=1,
        version="7",
    )  # fmt: skip
    assert election.acting_alone_since(held, me="b", now=now) == now  # taken after it expired
    released = election.Record(**{**held.__dict__, "holder": ""})
    assert election.acting_alone_since(released, me="b", now=now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert election.acting_alone_since(held, me="a", now=now) == datetime(2026, 1, 1, tzinfo=UTC)  # restarted
    assert election.acting_alone_since(None, me="b", now=now) == now
