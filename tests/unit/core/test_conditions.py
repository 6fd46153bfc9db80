"""Conditions are metav1.Conditions: the CRD says so, and every condition the operator can write fits it."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
import schemacheck

from cronlet._core import model, status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATUS = schemacheck.status_schema()
CONDITIONS = STATUS["properties"]["conditions"]
CONDITION = CONDITIONS["items"]


def _time_fields(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, sub in (node.get("properties") or {}).items():
        if name.endswith("Time") or name == "time":
            out.append((f"{path}.{name}", sub))
        out += _time_fields(sub, f"{path}.{name}")
    if "items" in node:
        out += _time_fields(node["items"], f"{path}[]")
    return out


def test_conditions_are_a_list_map_keyed_on_type() -> None:
    assert CONDITIONS["x-kubernetes-list-type"] == "map"
    assert CONDITIONS["x-kubernetes-list-map-keys"] == ["type"]


def test_a_condition_has_the_fields_of_metav1_condition() -> None:
    props = CONDITION["properties"]
    assert set(CONDITION["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["lastTransitionTime"]["format"] == "date-time"
    assert props["reason"]["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    assert (props["reason"]["minLength"], props["reason"]["maxLength"]) == (1, 1024)
    assert props["message"]["maxLength"] == 32768
    assert props["type"]["maxLength"] == 316
    assert props["observedGeneration"] == {**props["observedGeneration"], "type": "integer", "minimum": 0}


def test_every_time_in_the_status_is_a_date_time() -> None:
    fields = _time_fields(dict(STATUS), "status")
    names = {path for path, _ in fields}
    assert {
        "status.conditions[].lastTransitionTime",
        "status.lastScheduleTime",
        "status.active[].startTime",
        "status.history[].completionTime",
    } <= names
    assert [path for path, node in fields if node.get("format") != "date-time"] == []


@pytest.mark.parametrize("reason", typing.get_args(model.ConditionReason))
def test_every_reason_the_operator_can_write_is_accepted(reason: str) -> None:
    assert re.fullmatch(model.CONDITION_REASON_PATTERN, reason)
    made = status.condition(
        [],
        kind="Ready",
        status="False",
        reason=reason,
        message="why",
        generation=3,
        now=NOW,  # type: ignore[arg-type]
    )
    assert list(schemacheck.problems(model.dump(made), CONDITION, "condition")) == []
    assert model.dump(made) == {
        "type": "Ready",
        "status": "False",
        "reason": reason,
        "message": "why",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
        "observedGeneration": 3,
    }


def test_a_message_longer_than_the_schema_allows_is_cut() -> None:
    made = status.condition(
        [], kind="LastRunSucceeded", status="False", reason="RetriesExhausted", message="x" * 40000, generation=1,
        now=NOW,
    )  # fmt: skip
    assert len(made.message) == model.CONDITION_MESSAGE_MAX
    assert list(schemacheck.problems(model.dump(made), CONDITION, "condition")) == []


def test_the_transition_time_moves_only_when_the_status_changes() -> None:
    earlier = status.condition(
        [], kind="Ready", status="True", reason="Scheduled", message="", generation=1, now=NOW
    )
    later = NOW.replace(hour=13)
    same = status.condition(
        [earlier], kind="Ready", status="True", reason="Suspended", message="", generation=2, now=later
    )
    flipped = status.condition(
        [earlier], kind="Ready", status="False", reason="InvalidSpec", message="", generation=2, now=later
    )
    assert same.last_transition_time == "2026-03-01T12:00:00Z"
    assert flipped.last_transition_time == "2026-03-01T13:00:00Z"


GOOD = {
    "type": "Ready",
    "status": "True",
    "reason": "Scheduled",
    "message": "",
    "lastTransitionTime": "2026-03-01T12:00:00Z",
}


@pytest.mark.parametrize(
    "field, value",
    [("reason", "Not a reason"), ("reason", ""), ("reason", "Trailing,"), ("type", "has space")],
)
def test_the_model_refuses_what_the_api_server_would(field: str, value: str) -> None:
    assert list(schemacheck.problems(GOOD, CONDITION, "c")) == []
    with pytest.raises(pydantic.ValidationError):
        model.Condition.model_validate({**GOOD, field: value})
    assert list(schemacheck.problems({**GOOD, field: value}, CONDITION, "c"))


def test_the_checker_sees_a_blank_time_and_a_duplicate_type() -> None:
    found = list(schemacheck.problems({"conditions": [GOOD, GOOD], "lastDueTime": ""}, STATUS))
    assert any("duplicate" in p for p in found), found
    assert any("lastDueTime" in p for p in found), found
