"""What the operator asks of kopf, run through kopf's own cause detection of the pinned version: its event
handlers still see every event, and no object is copied for a diff base (we have no change handlers)."""

from __future__ import annotations

import asyncio
import copy
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from kopf._cogs.configs import diffbase
from kopf._cogs.structs import bodies, patches, references
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from cronlet._controller import runtime, store
from cronlet._core.views import Tenancy

TASKS = references.Resource(
    group="cronlet.dev", version="v1alpha1", plural="scheduledtasks", namespaced=True, kind="ScheduledTask"
)


def _causes(settings: Any, raw: dict[str, Any]) -> Any:
    return asyncio.run(_detect(settings, raw))


async def _detect(settings: Any, raw: dict[str, Any]) -> Any:
    sched = SimpleNamespace(store=store.Store(), tenancy=Tenancy(), touch=lambda key: None)
    registry = runtime.build_registry(sched, runtime.Intake(sched.store, expected=set()))  # type: ignore[arg-type]
    body = bodies.Body(raw)
    logger = logging.LoggerAdapter(logging.getLogger("test"), {})
    return processing._detect_causes(
        indexers=indexing.OperatorIndexers(),
        registry=registry,
        settings=settings,
        resource=TASKS,
        raw_event={"type": "MODIFIED", "object": raw},
        body=body,
        patch=patches.Patch(body=body),
        memory=inventory.ResourceMemory(),
        local_logger=logger,
        event_logger=logger,
    )


def _task() -> dict[str, Any]:
    return {
        "apiVersion": "cronlet.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"namespace": "ns", "name": "t", "uid": "u", "resourceVersion": "3"},
        "spec": {"schedule": "@daily", "handler": "echo", "parameters": {"pad": "x" * 1024}},
    }


def test_no_object_is_copied_for_a_diff_base_and_the_event_handler_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies: list[object] = []
    real = copy.deepcopy
    monkeypatch.setattr(diffbase.copy, "deepcopy", lambda x, *a: copies.append(x) or real(x, *a))
    causes = _causes(runtime.kopf_settings(), _task())
    assert causes.watching_cause is not None  # the event handlers are called
    assert causes.changing_cause is None and causes.spawning_cause is None
    assert not [c for c in copies if isinstance(c, dict) and "spec" in c]  # only kopf's empty essences
    _causes(runtime.kopf_settings().__class__(), _task())  # kopf's defaults: the whole body copied
    assert [c for c in copies if isinstance(c, dict) and "spec" in c]
