"""docs/argocd-health.lua, run as Argo CD runs it (Lua 5.1, as gopher-lua), on statuses the operator writes."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

from cronlet._core import decision, model, naming, status, views

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def _task(spec: dict[str, Any], st: model.TaskStatus | None = None, generation: int = 1) -> views.TaskView:
    return views.TaskView(
        namespace="ns",
        name="t",
        uid="u",
        generation=generation,
        created=T0,
        spec={"schedule": "*/10 * * * * *", "handler": "echo", **spec},
        status=st or model.TaskStatus(),
        known_handlers=frozenset({"echo"}),
    )


def _job(run_at: int, attempt: int, state: views.JobState) -> views.JobObservation:
    rid = naming.scheduled_run_id(T0 + timedelta(seconds=run_at))
    return views.JobObservation(
        name=naming.job_name("t", rid, attempt),
        owner_uid="u",
        run_id=rid,
        attempt=attempt,
        scheduled_time=T0 + timedelta(seconds=run_at),
        created=T0 + timedelta(seconds=run_at),
        state=state,
        failure=views.Failure.RETRYABLE if state is views.JobState.FAILED else None,
        completion_time=T0 + timedelta(seconds=run_at + 1) if state is not views.JobState.ACTIVE else None,
        started=True,
    )


def _object(task: views.TaskView, st: model.TaskStatus | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {"name": task.name, "generation": task.generation},
        "spec": dict(task.spec),
    }
    if st is not None:
        out["status"] = model.dump(st)
    return out


def _plan(spec: dict[str, Any], now: float, jobs: list[views.JobObservation] | None = None, **kw: Any) -> Any:
    task = _task(spec, **kw)
    return task, decision.plan(task, jobs or [], now=T0 + timedelta(seconds=now)).status


def test_a_task_the_operator_has_not_seen_is_progressing() -> None:
    assert health(_object(_task({}), None))[0] == "Progressing"


def test_a_spec_edit_not_acted_on_yet_is_progressing() -> None:
    task, st = _plan({}, 5)
    edited = {**_object(task, st), "metadata": {"name": "t", "generation": 2}}
    assert health(edited) == ("Progressing", "Waiting for the operator to act on this spec")


def test_a_scheduled_task_is_healthy() -> None:
    task, st = _plan({}, 5)
    assert health(_object(task, st)) == ("Healthy", "Scheduled: next run at 2026-01-01T00:00:10Z")


def test_a_running_task_is_healthy() -> None:
    task, st = _plan({}, 10.5)
    assert st.phase == "Running"
    assert health(_object(task, st))[0] == "Healthy"


def test_a_task_waiting_to_retry_is_healthy_and_says_when() -> None:
    task, first = _plan({"backoff": {"initialDelay": "5s", "jitter": 0}}, 10.5)
    task = _task(task.spec, first)
    st = decision.plan(task, [_job(10, 1, views.JobState.FAILED)], now=T0 + timedelta(seconds=12)).status
    assert st.phase == "Retrying"
    assert health(_object(task, st)) == ("Healthy", "Retrying: attempt 2 at 2026-01-01T00:00:16Z")


def test_a_run_that_failed_after_its_retries_is_degraded() -> None:
    task, first = _plan({"maxRetries": 0}, 10.5)
    task = _task(task.spec, first)
    st = decision.plan(task, [_job(10, 1, views.JobState.FAILED)], now=T0 + timedelta(seconds=12)).status
    assert st.phase == "Failed"
    state, message = health(_object(task, st))
    assert state == "Degraded" and message.startswith("RetriesExhausted: run of 2026-01-01T00:00:10Z failed")


def test_an_invalid_spec_is_degraded_with_its_reason() -> None:
    task, st = _plan({"schedule": "61 * * * *"}, 5)
    state, message = health(_object(task, st))
    assert state == "Degraded" and message.startswith("InvalidSchedule: ")


def test_a_refused_job_is_degraded() -> None:
    task, st = _plan({}, 5)
    refused = status.condition(
        st.conditions,
        kind="Ready",
        status="False",
        reason="JobCreateFailed",
        message="quota",
        generation=1,
        now=T0,
    )
    obj = _object(task, st.model_copy(update={"conditions": [refused]}))
    assert health(obj) == ("Degraded", "JobCreateFailed: quota")


def test_a_suspended_task_is_suspended() -> None:
    task, st = _plan({"suspend": True}, 5)
    assert health(_object(task, st)) == ("Suspended", "Suspended: no new runs start")


def test_operations_md_carries_the_same_script() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    found = re.search(
        r"resource\.customizations\.health\.cronlet\.dev_ScheduledTask: \|\n(.*?)\n```", text, re.S
    )
    assert found, "docs/operations.md has no argocd-cm health entry"
    assert textwrap.dedent(found.group(1)).strip() == SCRIPT.read_text().strip()


def test_a_blocked_task_is_degraded() -> None:
    task, st = _plan({}, 5)
    patch = status.not_ready(task, reason="StatusUnreadable", message="bad", now=T0)
    assert patch is not None
    obj = _object(task, st)
    obj["status"].update(patch)
    assert health(obj) == ("Degraded", "StatusUnreadable: bad")
