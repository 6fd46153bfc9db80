"""What GitOps tools read from a live task: observedGeneration, Ready and Stalled (kstatus), and the Argo CD
health of docs/argocd-health.lua on the object as the API server returns it."""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51
import pytest
from kit import ROOT, Tasks

pytestmark = pytest.mark.cluster


def _argo_health(obj: dict[str, Any]) -> str:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    return str(runtime.execute((ROOT / "docs" / "argocd-health.lua").read_text())["status"])


def _conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    return {
        c["type"]: (c["status"], c["reason"], c["observedGeneration"])
        for c in obj["status"].get("conditions", [])
    }


def test_an_invalid_task_is_stalled_and_degraded_until_fixed(tasks: Tasks) -> None:
    tasks.create("gitops", {"schedule": "61 * * * * *", "handler": "echo"})
    tasks.wait_status("gitops", lambda s: s.get("phase") == "Invalid", timeout=20)
    obj = tasks.get("gitops")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 1
    assert _conditions(obj)["Stalled"] == ("True", "InvalidSchedule", 1)
    assert _argo_health(obj) == "Degraded"
    tasks.patch_spec("gitops", {"schedule": "@daily"})
    tasks.wait_status("gitops", lambda s: s.get("observedGeneration") == 2, timeout=20)
    obj = tasks.get("gitops")
    assert _conditions(obj) == {"Ready": ("True", "Scheduled", 2)}
    assert _argo_health(obj) == "Healthy"
    tasks.patch_spec("gitops", {"suspend": True})
    tasks.wait_status("gitops", lambda s: s.get("observedGeneration") == 3, timeout=20)
    assert _argo_health(tasks.get("gitops")) == "Suspended"
