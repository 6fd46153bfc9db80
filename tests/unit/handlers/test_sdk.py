"""The handler SDK: TaskResult helpers, the termination message bound, TaskContext, import isolation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cronlet import sdk
from cronlet._common import handlerref

# --- TaskResult -------------------------------------------------------------------------------------------


def test_success_helper_builds_a_successful_result() -> None:
    result = sdk.TaskResult.success("processed 100 rows", data={"rows": 100})
    assert result.success is True
    assert result.message == "processed 100 rows"
    assert result.data == {"rows": 100}


def test_success_helper_defaults_to_an_empty_message() -> None:
    result = sdk.TaskResult.success()
    assert result.success is True
    assert result.message == ""
    assert result.data is None


def test_failure_helper_is_retryable_by_default() -> None:
    result = sdk.TaskResult.failure("database unavailable")
    assert result.success is False
    assert result.retryable is True
    assert result.message == "database unavailable"


def test_failure_helper_can_be_permanent_and_carry_data() -> None:
    result = sdk.TaskResult.failure("bad input", retryable=False, data={"row": 7})
    assert (result.success, result.retryable, result.data) == (False, False, {"row": 7})


def test_result_reads_success_as_a_field_on_instances() -> None:
    # `success` is both a classmethod and a field; an instance must see the field.
    assert sdk.TaskResult(success=False, message="x").success is False
    assert sdk.TaskResult.model_validate({"success": True}).success is True


def test_result_is_immutable() -> None:
    result = sdk.TaskResult.success("done")
    with pytest.raises(Exception, match="frozen"):
        result.message = "changed"  # type: ignore[misc]


def test_result_round_trips_through_the_termination_message() -> None:
    result = sdk.TaskResult.failure("nope", retryable=False, data={"a": [1, 2]})
    assert sdk.TaskResult.model_validate_json(result.to_termination_message()) == result


def test_lone_surrogates_in_the_message_are_replaced() -> None:
    result = sdk.TaskResult.failure("bad byte: \udcff")
    result.to_termination_message().encode("utf-8")  # must not raise
    assert "\udcff" not in result.message


# --- termination message bound ----------------------------------------------------------------------------


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ascii", "x" * 10_000),
        ("multibyte", "é€😀" * 3_000),
        ("needs escaping", '"\\\n\t' * 3_000),
        ("control characters", "\x00\x01" * 3_000),
    ],
)
def test_long_message_is_truncated_to_fit(name: str, message: str) -> None:
    text = sdk.TaskResult.failure(message).to_termination_message()
    assert _size(text) <= sdk.TERMINATION_MESSAGE_LIMIT
    parsed = json.loads(text)
    assert parsed["message"].endswith("…[truncated]")
    kept = parsed["message"].removesuffix(" …[truncated]")
    assert message.startswith(kept)
    # Not wastefully short: the head kept fills most of the budget.
    assert _size(text) > sdk.TERMINATION_MESSAGE_LIMIT - 16


def test_message_that_fits_is_not_touched() -> None:
    message = "y" * 3_000
    assert json.loads(sdk.TaskResult.success(message).to_termination_message())["message"] == message


def test_exactly_fitting_result_is_returned_whole() -> None:
    empty = sdk.TaskResult.failure("").to_termination_message()
    message = "z" * (sdk.TERMINATION_MESSAGE_LIMIT - _size(empty))
    text = sdk.TaskResult.failure(message).to_termination_message()
    assert _size(text) == sdk.TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["message"] == message


def test_large_data_is_dropped_before_the_message_is_cut() -> None:
    result = sdk.TaskResult.success("done", data={"blob": "b" * 10_000})
    text = result.to_termination_message()
    assert _size(text) <= sdk.TERMINATION_MESSAGE_LIMIT
    parsed = json.loads(text)
    assert parsed["data"] is None
    assert parsed["message"].startswith("done [data omitted")


def test_small_data_is_kept_when_the_message_is_cut() -> None:
    text = sdk.TaskResult.failure("m" * 10_000, data={"status": 503}).to_termination_message()
    assert _size(text) <= sdk.TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["data"] == {"status": 503}


def test_data_that_is_not_json_is_dropped_with_a_note() -> None:
    text = sdk.TaskResult.success("done", data={"thing": object()}).to_termination_message()
    parsed = json.loads(text)
    assert parsed["data"] is None
    assert "not JSON-serializable" in parsed["message"]


def test_custom_limit_is_honoured() -> None:
    text = sdk.TaskResult.failure("q" * 2_000).to_termination_message(limit=512)
    assert _size(text) <= 512
    json.loads(text)


def test_absurdly_small_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        sdk.TaskResult.success().to_termination_message(limit=10)


# --- TaskContext ------------------------------------------------------------------------------------------

_DUE = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)


def _context(**overrides: Any) -> sdk.TaskContext:
    fields: dict[str, Any] = {
        "task": "nightly",
        "namespace": "jobs",
        "scheduled_time": _DUE,
        "run_id": "run-1",
        "handler": "echo",
    }
    fields.update(overrides)
    return sdk.TaskContext(**fields)


def test_context_defaults_to_the_first_attempt_and_no_parameters() -> None:
    context = _context()
    assert context.attempt == 1
    assert context.parameters == {}
    assert isinstance(context.logger, logging.Logger)


def test_context_is_frozen() -> None:
    with pytest.raises(AttributeError):
        _context().attempt = 2  # type: ignore[misc]


def test_context_normalises_the_scheduled_time_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    context = _context(scheduled_time=datetime(2025, 6, 1, 12, 0, tzinfo=paris))
    assert context.scheduled_time == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert context.scheduled_time.utcoffset() == timedelta(0)


def test_context_rejects_a_naive_scheduled_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _context(scheduled_time=datetime(2025, 1, 1))


def test_context_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="from 1"):
        _context(attempt=0)


def test_context_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        sdk.TaskContext("nightly", "jobs", _DUE, "run-1", "echo")  # type: ignore[call-arg]


# --- TaskHandler ------------------------------------------------------------------------------------------


def test_handler_without_execute_cannot_be_instantiated() -> None:
    class Incomplete(sdk.TaskHandler):
        pass

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


def test_handler_subclass_runs() -> None:
    class Sample(sdk.TaskHandler):
        def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
            return sdk.TaskResult.success(f"batch {context.parameters['batchSize']}")

    assert Sample().execute(_context(parameters={"batchSize": 3})) == sdk.TaskResult.success("batch 3")


# --- import isolation -------------------------------------------------------------------------------------

# Makes `import kopf` and `import kubernetes` fail, as in a handler image without the operator's
# dependencies installed.
_BLOCK = "import sys; sys.modules['kopf'] = None; sys.modules['kubernetes'] = None; "


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "module",
    [
        "cronlet",
        "cronlet.sdk",
        "cronlet._common.handlerref",
        "cronlet._common.times",
        "cronlet._common.logs",
        "cronlet.executor",
        "cronlet_handlers.echo",
        "cronlet_handlers.http",
        "cronlet_handlers.shell",
        "cronlet_handlers.sleep",
        "cronlet_handlers.fail",
    ],
)
def test_module_imports_without_the_operator_dependencies(module: str) -> None:
    completed = _python(
        _BLOCK + f"import {module}; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes') "
        "and sys.modules[m] is not None); print(loaded)"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_the_import_block_does_catch_an_operator_dependency() -> None:
    # Proves the test above can fail: the same prelude makes importing kopf or kubernetes an error.
    for module in ("kopf", "kubernetes", "kubernetes.client"):
        completed = _python(_BLOCK + f"import {module}")
        assert completed.returncode != 0
        assert "ModuleNotFoundError" in completed.stderr or "ImportError" in completed.stderr


def test_the_sdk_names_are_exported() -> None:
    for name in ("TaskHandler", "TaskContext", "TaskResult", "PermanentError"):
        assert name in sdk.__all__


# --- handler references (spec.handler syntax) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "module", "attr"),
    [
        ("echo", "entrypoint", None, "echo"),
        ("my-handler_2", "entrypoint", None, "my-handler_2"),
        ("package.module:Name", "path", "package.module", "Name"),
        ("package.module.Name", "path", "package.module", "Name"),
        ("mod:Outer.Inner", "path", "mod", "Outer.Inner"),
        ("mod:handle", "path", "mod", "handle"),
        ("a.b", "path", "a", "b"),
    ],
)
def test_valid_handler_references(text: str, kind: str, module: str | None, attr: str) -> None:
    ref = handlerref.parse_handler_ref(text)
    assert (ref.kind, ref.module, ref.attr) == (kind, module, attr)
    assert handlerref.handler_name_is_valid(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" echo", "whitespace"),
        ("my handler", "whitespace"),
        ("Echo", "neither a registered name"),
        ("9lives", "neither a registered name"),
        ("a:b:c", "more than one"),
        (":Name", "empty module path"),
        ("mod:", "empty attribute"),
        ("pkg..mod:Name", "empty part"),
        ("pkg.mod-x:Name", "not a Python identifier"),
        ("pkg.class:Name", "keyword"),
        ("pkg.mod:", "empty attribute"),
        ("x" * 300, "characters long"),
    ],
)
def test_invalid_handler_references(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        handlerref.parse_handler_ref(text)
    assert not handlerref.handler_name_is_valid(text)
