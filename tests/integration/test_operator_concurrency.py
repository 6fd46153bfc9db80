"""What a due run does while an earlier one is unfinished: Allow, Forbid, Replace."""

from __future__ import annotations

import itertools

import pytest
from helpers import wait_for
from kit import Tasks, outcomes

pytestmark = pytest.mark.cluster

SLOW = {"schedule": "*/2 * * * * *", "handler": "sleep", "parameters": {"seconds": 5}}


def test_forbid_skips_while_a_run_is_unfinished(tasks: Tasks) -> None:
    tasks.create("forbid", {**SLOW, "concurrencyPolicy": "Forbid"})
    st = tasks.wait_status(
        "forbid",
        lambda s: "Skipped" in outcomes(s) and s.get("counters", {}).get("succeeded", 0) >= 1,
        timeout=40,
    )
    assert st["counters"]["skipped"] >= 1
    jobs = tasks.jobs("forbid")
    for earlier, later in itertools.pairwise(jobs):  # never two at once
        finished = earlier.status.completion_time
        assert finished is not None and later.metadata.creation_timestamp >= finished.replace(microsecond=0)


def test_allow_runs_alongside(tasks: Tasks) -> None:
    tasks.create("allow", {**SLOW, "concurrencyPolicy": "Allow"})
    tasks.wait_status("allow", lambda s: len(s.get("active") or []) >= 2, timeout=30)


def test_replace_stops_the_old_run(tasks: Tasks) -> None:
    tasks.create("replace", {**SLOW, "concurrencyPolicy": "Replace"})
    st = tasks.wait_status("replace", lambda s: "Replaced" in outcomes(s), timeout=30)
    replaced = next(h for h in st["history"] if h["outcome"] == "Replaced")
    assert len(st["active"]) == 1
    assert st["active"][0]["jobName"] != replaced["jobName"]

    def old_job_gone() -> bool:
        return all(
            j.metadata.name != replaced["jobName"] or j.metadata.deletion_timestamp
            for j in tasks.jobs("replace")
        )

    wait_for(old_job_gone, timeout=20, message="the replaced Job was not deleted")
