"""Task events: each run transition is recorded in the outbox by the status write that records it, numbered
per task, dropped once acknowledged (in a write that happens anyway), capped; and the CloudEvent built
from an entry has the documented id, source, subject, sequence and data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from test_decision import UID, at, job, task, then

from cronlet._common.times import rfc3339
from cronlet._core import decision, events, naming, views
from cronlet._core.model import OutboxEntry

ON = events.Policy()


def step(
    t: views.TaskView,
    jobs: Sequence[views.JobObservation],
    now: float,
    *,
    outbox: events.Policy | None = ON,
    messages: dict[str, str] | None = None,
) -> views.Plan:
    return decision.plan(t, jobs, now=at(now), messages=messages, outbox=outbox)


def kinds(plan: views.Plan) -> list[tuple[int, str, int]]:
    assert plan.status.events is not None
    return [(e.sequence, e.kind, e.attempt) for e in plan.status.events.pending]


# ------------------------------------------------------------------------------ what is recorded


def test_without_sinks_no_outbox_is_kept() -> None:
    r = step(task(), [], now=10.01, outbox=None)
    assert r.create and r.status.events is None


def test_a_retried_then_successful_run_records_each_transition_in_order() -> None:
    t = task({"backoff": {"initialDelay": "1s", "jitter": 0}})
    first = step(t, [], now=10.01)
    assert kinds(first) == [(1, "started", 1)]
    started = first.status.events.pending[0]  # type: ignore[union-attr]
    assert started.run_id == naming.scheduled_run_id(at(10)) and started.time == rfc3339(at(10.01))
    assert started.job_name == naming.job_name("t", started.run_id, 1)

    failed = job(10, state=views.JobState.FAILED, done=12, failure=views.Failure.RETRYABLE)
    second = step(then(t, first), [failed], now=12.5, messages={failed.name: "boom"})
    assert kinds(second) == [(1, "started", 1), (2, "retrying", 1)]
    retrying = second.status.events.pending[1]  # type: ignore[union-attr]
    assert (retrying.reason, retrying.message) == ("AttemptFailed", "boom")
    assert retrying.time == rfc3339(at(12)) and retrying.next_retry_time == rfc3339(at(13))

    third = step(then(t, second), [failed], now=13.01)
    assert kinds(third)[-1] == (3, "started", 2)
    ok = job(10, 2, state=views.JobState.SUCCEEDED, done=14)
    fourth = step(then(t, third), [failed, ok], now=14.5, messages={ok.name: "done"})
    last = fourth.status.events.pending[-1]  # type: ignore[union-attr]
    assert (last.sequence, last.kind, last.attempt, last.message) == (4, "succeeded", 2, "done")
    assert last.completion_time == rfc3339(at(14))


def test_an_exhausted_run_ends_with_failed_and_its_reason() -> None:
    t = task({"maxRetries": 0})
    first = step(t, [], now=10.01)
    failed = job(10, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    second = step(then(t, first), [failed], now=11.5)
    assert kinds(second) == [(1, "started", 1), (2, "failed", 1)]
    assert second.status.events.pending[-1].reason == "RetriesExhausted"  # type: ignore[union-attr]


def test_skipped_missed_and_replaced_are_recorded() -> None:
    forbid = task({"schedule": "*/10 * * * * *"})
    first = step(forbid, [], now=10.01)
    skipped = step(then(forbid, first), [job(10)], now=20.01)
    assert kinds(skipped)[-1] == (2, "skipped", 0)
    assert skipped.status.events.pending[-1].reason == "ConcurrencyForbid"  # type: ignore[union-attr]

    late = task({"concurrencyPolicy": "Allow"})
    down = step(late, [], now=10.01)
    back = step(then(late, down), [job(10, state=views.JobState.SUCCEEDED, done=11)], now=45)
    recorded = back.status.events.pending  # type: ignore[union-attr]
    missed = next(e for e in recorded if e.kind == "missed")
    assert missed.count == 2 and missed.scheduled_time == rfc3339(at(30))

    replace = task({"concurrencyPolicy": "Replace"})
    one = step(replace, [], now=10.01)
    two = step(then(replace, one), [job(10)], now=20.01)
    assert [k for _, k, _ in kinds(two)][-2:] == ["replaced", "started"]


def test_a_task_may_opt_out_or_filter_kinds_without_gaps_in_its_sequence() -> None:
    out = task({"events": {"publish": False}})
    assert kinds(step(out, [], now=10.01)) == []
    only = task({"maxRetries": 0, "events": {"types": ["failed", "succeeded"]}})
    first = step(only, [], now=10.01)
    assert kinds(first) == []
    failed = job(10, state=views.JobState.FAILED, done=11, failure=views.Failure.RETRYABLE)
    assert kinds(step(then(only, first), [failed], now=11.5)) == [(1, "failed", 1)]


# ---------------------------------------------------------------------- acknowledgement and caps


def test_acknowledged_events_leave_the_outbox_only_with_a_write_that_happens_anyway() -> None:
    t = task({"concurrencyPolicy": "Allow"})
    first = step(t, [], now=10.01)
    running = [job(10)]
    idle = step(then(t, first), running, now=11, outbox=events.Policy(acked=1))
    assert idle.status == first.status  # nothing else changed: no write just to drop the acknowledged
    done = [job(10, state=views.JobState.SUCCEEDED, done=12)]
    finished = step(then(t, first), done, now=12.5, outbox=events.Policy(acked=1))
    assert kinds(finished) == [(2, "succeeded", 1)]


def test_a_full_outbox_drops_the_oldest_counts_them_and_warns() -> None:
    t = task({"concurrencyPolicy": "Allow"})
    small = events.Policy(max_entries=2)
    first = step(t, [], now=10.01, outbox=small)
    second = step(then(t, first), [job(10, state=views.JobState.SUCCEEDED, done=11)], now=20.01, outbox=small)
    assert kinds(second) == [(2, "succeeded", 1), (3, "started", 1)]
    assert second.status.events is not None and second.status.events.dropped == 1
    assert [e.reason for e in second.events] == ["EventsDropped"]
    assert views.EventsDropped(1) in second.observations


def test_the_byte_cap_holds_with_long_messages() -> None:
    entries = [
        OutboxEntry(
            sequence=0,
            kind="failed",
            time=rfc3339(at(i)),
            run_id=f"r{i}",
            scheduled_time=rfc3339(at(i)),
            message="x" * 5000,
        )
        for i in range(50)
    ]
    folded = events.fold(None, entries, policy=events.Policy(max_bytes=4096), spec_events=None)
    size = sum(len(json.dumps(e.model_dump(by_alias=True, exclude_none=True))) for e in folded.outbox.pending)
    assert size <= 4096 and folded.outbox.pending[-1].sequence == 50
    assert all(len(e.message or "") <= events.MESSAGE_LIMIT for e in folded.outbox.pending)
    assert folded.dropped == 50 - len(folded.outbox.pending)


# --------------------------------------------------------------------------------- the CloudEvent


def _entry(**kw: Any) -> OutboxEntry:
    base: dict[str, Any] = {
        "sequence": 7,
        "kind": "retrying",
        "time": "2026-01-01T00:00:12Z",
        "run_id": "1767225610",
        "attempt": 1,
        "scheduled_time": "2026-01-01T00:00:10Z",
        "job_name": "t-1767225610-1",
        "reason": "AttemptFailed",
        "next_retry_time": "2026-01-01T00:00:13Z",
    }
    return OutboxEntry(**{**base, **kw})


def test_a_cloud_event_has_a_deterministic_id_and_the_documented_attributes() -> None:
    made = [
        events.cloud_event(
            _entry(), namespace="ns", name="t", uid=UID, labels={"team": "a"}, handler="echo", max_attempts=4
        )
        for _ in range(2)
    ]
    assert made[0] == made[1]
    ev = made[0]
    assert ev.type == "dev.cronlet.run.retrying.v1"
    assert ev.source == "/apis/cronlet.dev/v1alpha1/namespaces/ns/scheduledtasks/t"
    assert ev.subject == "t-1767225610-1" and ev.time == "2026-01-01T00:00:12Z"
    assert ev.sequence == "000000000007" and ev.partitionkey == "ns/t"
    other = events.cloud_event(
        _entry(kind="started"), namespace="ns", name="t", uid=UID, labels={}, handler="echo", max_attempts=4
    )
    assert other.id != ev.id
    assert ev.data["labels"] == {"team": "a"} and ev.data["maxAttempts"] == 4
    assert "parameters" not in ev.data


def test_binary_mode_puts_attributes_in_headers_and_structured_mode_in_the_body() -> None:
    ev = events.cloud_event(
        _entry(), namespace="ns", name="t", uid=UID, labels={}, handler="echo", max_attempts=4
    )
    headers, body = events.encode(ev, mode="binary", kafka=True)
    named = dict(headers)
    assert named["content-type"] == "application/json" and named["ce_specversion"] == "1.0"
    assert named["ce_id"] == ev.id and named["ce_sequence"] == ev.sequence
    assert json.loads(body)["runId"] == "1767225610"
    http_headers, _ = events.encode(ev, mode="binary", kafka=False)
    assert dict(http_headers)["ce-type"] == ev.type
    s_headers, s_body = events.encode(ev, mode="structured", kafka=False)
    assert dict(s_headers)["Content-Type"].startswith("application/cloudevents+json")
    doc = json.loads(s_body)
    assert doc["id"] == ev.id and doc["data"]["reason"] == "AttemptFailed"


# ------------------------------------------------------------------------- found in review


def test_an_operator_without_sinks_keeps_the_recorded_outbox() -> None:
    t = task({"concurrencyPolicy": "Allow"})
    first = step(t, [], now=10.01)
    assert first.status.events is not None
    later = step(then(t, first), [job(10, state=views.JobState.SUCCEEDED, done=11)], now=11.5, outbox=None)
    assert later.status.events == first.status.events  # neither sent nor lost: the next sinks send it


def test_an_acknowledgement_beyond_a_reset_outbox_drops_nothing_of_it() -> None:
    t = task({"concurrencyPolicy": "Allow"})
    first = step(t, [], now=10.01)  # sequence 1 of an outbox counted from scratch (a reset status)
    done = [job(10, state=views.JobState.SUCCEEDED, done=12)]
    later = step(then(t, first), done, now=12.5, outbox=events.Policy(acked=50))
    assert kinds(later) == [(1, "started", 1), (2, "succeeded", 1)]


def test_a_drop_is_warned_and_counted_only_when_it_is_written() -> None:
    t = task({"concurrencyPolicy": "Allow"})
    first = step(t, [], now=10.01)
    idle = step(then(t, first), [job(10)], now=11, outbox=events.Policy(max_entries=0))
    assert idle.status == first.status and idle.events == () and idle.observations == ()
