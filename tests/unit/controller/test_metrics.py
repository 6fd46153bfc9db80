"""Per-task series are bounded: the first tasks seen get their own, the rest are summed per namespace."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from cronlet._controller.metrics import OTHER, Metrics
from cronlet._core.model import ActiveRun, TaskStatus
from cronlet._core.views import Plan, RunFinished


def plan(*, active: int = 0, observations: tuple[RunFinished, ...] = ()) -> Plan:
    runs = [
        ActiveRun.model_validate(
            {
                "jobName": f"j-{i}",
                "scheduledTime": "2026-01-01T00:00:00Z",
                "attempt": 1,
                "startTime": f"2026-01-01T00:00:0{i}Z",
            }
        )
        for i in range(active)
    ]
    return Plan(
        create=(),
        delete=(),
        status=TaskStatus.model_validate({"phase": "Running" if runs else "Scheduled", "active": runs}),
        events=(),
        observations=observations,
        wake_at=None,
        spec=None,
    )


def samples(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels.get(k, "") for k in ("namespace", "task", "outcome"))] = (
                    sample.value
                )
    return found


def succeeded() -> tuple[RunFinished, ...]:
    return (RunFinished(outcome="Succeeded", count=1, duration=None),)


# -- the limit ---------------------------------------------------------------------------------------------


def test_tasks_beyond_the_limit_are_counted_under_other_of_their_namespace() -> None:
    m = Metrics(per_task_limit=2)
    for name in ("a", "b", "c", "d"):
        m.record(("ns", name), plan(observations=succeeded()))
        m.track(("ns", name), plan(active=1 if name in ("b", "c", "d") else 0))
    runs = samples(m, "cronlet_runs_total")
    assert runs[("ns", "a", "Succeeded")] == 1 and runs[("ns", "b", "Succeeded")] == 1
    assert runs[("ns", OTHER, "Succeeded")] == 2
    assert not any(task in ("c", "d") for _, task, _ in runs)
    active = samples(m, "cronlet_runs_active")
    assert active == {("ns", "a", ""): 0, ("ns", "b", ""): 1, ("ns", OTHER, ""): 2}
    oldest = samples(m, "cronlet_oldest_run_start_time_seconds")
    assert oldest[("ns", OTHER, "")] == oldest[("ns", "b", "")] > 0


def test_a_deleted_task_frees_its_place_and_its_series() -> None:
    m = Metrics(per_task_limit=1)
    m.track(("ns", "a"), plan())
    m.track(("ns", "b"), plan(active=1))
    assert samples(m, "cronlet_runs_active")[("ns", OTHER, "")] == 1
    m.forget(("ns", "a"))
    assert not any(task == "a" for _, task, _ in samples(m, "cronlet_runs_total"))
    m.track(("ns", "b"), plan(active=1))  # b's next pass: its own series now, no longer summed
    active = samples(m, "cronlet_runs_active")
    assert active[("ns", "b", "")] == 1 and active[("ns", OTHER, "")] == 0


def test_no_limit_and_no_per_task_labels() -> None:
    unlimited = Metrics(per_task_limit=0)
    for i in range(50):
        unlimited.track(("ns", f"t-{i}"), plan())
    assert len(samples(unlimited, "cronlet_runs_active")) == 50
    off = Metrics(per_task=False)
    for i in range(3):
        off.track(("ns", f"t-{i}"), plan(active=1))
    assert samples(off, "cronlet_runs_active") == {("", "", ""): 3}


def test_the_tasks_gauge_counts_every_task_whatever_the_limit() -> None:
    m = Metrics(per_task_limit=1)
    for i in range(5):
        m.track(("ns", f"t-{i}"), plan())
    m.forget(("ns", "t-0"))
    m.forget(("ns", "t-3"))
    assert samples(m, "cronlet_tasks") == {("ns", "", ""): 3}


def test_a_run_claimed_ahead_counts_as_active_from_its_due_time() -> None:
    m = Metrics()
    claimed = plan(active=1)  # starts at 00:00:00
    m.track(("ns", "a"), claimed, now=datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC))
    assert samples(m, "cronlet_runs_active")[("ns", "a", "")] == 0
    assert samples(m, "cronlet_oldest_run_start_time_seconds")[("ns", "a", "")] == 0
    m.track(("ns", "a"), claimed, now=datetime(2026, 1, 1, 0, 0, 0, 10_000, tzinfo=UTC))
    assert samples(m, "cronlet_runs_active")[("ns", "a", "")] == 1
