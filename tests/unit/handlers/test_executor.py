"""The executor as the operator sees it: a process with CRONLET_* env, an exit code and a termination log.

Every test runs ``python -m cronlet.executor`` (or the ``cronlet-execute`` script) in a subprocess, as the
executor container does; handlers under test live in a temporary module put on PYTHONPATH.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cronlet import executor

_HANDLERS = '''
import asyncio
import time

from cronlet.sdk import PermanentError, TaskContext, TaskHandler, TaskResult


class Succeeds(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        context.logger.info("hello from %s", context.task)
        return TaskResult.success("all good", data={"n": context.parameters.get("n")})


class Reports(TaskHandler):
    """Hands the context back, to check what the executor built from the environment."""

    def execute(self, context: TaskContext) -> TaskResult:
        return TaskResult.success("context", data={
            "task": context.task, "namespace": context.namespace, "parameters": context.parameters,
            "scheduledTime": context.scheduled_time.isoformat(), "attempt": context.attempt,
            "runId": context.run_id, "handler": context.handler,
        })


class FailsRetryably(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        return TaskResult.failure("try again later")


class FailsPermanently(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        return TaskResult.failure("never going to work", retryable=False)


class Raises(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        raise ValueError("boom")


class RaisesPermanent(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        raise PermanentError("table does not exist")


class AsyncHandler(TaskHandler):
    async def execute(self, context: TaskContext) -> TaskResult:
        await asyncio.sleep(0)
        return TaskResult.success(f"async attempt {context.attempt}")


class AsyncRaises(TaskHandler):
    async def execute(self, context: TaskContext) -> TaskResult:
        await asyncio.sleep(0)
        raise RuntimeError("async boom")


class NeedsArguments(TaskHandler):
    def __init__(self, required):
        self.required = required

    def execute(self, context: TaskContext) -> TaskResult:
        return TaskResult.success()


class NotAHandler:
    pass


def function_handler(context: TaskContext) -> TaskResult:
    return TaskResult.success(f"function for {context.task}")


async def async_function_handler(context: TaskContext) -> TaskResult:
    return TaskResult.success("async function")


def returns_nothing(context: TaskContext) -> None:
    return None


def returns_a_string(context: TaskContext) -> str:
    return "oops"


def exits(context: TaskContext) -> TaskResult:
    raise SystemExit(4)


instance = Succeeds()
not_callable = 42


class Blocks(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        print("READY", flush=True)
        time.sleep(60)
        return TaskResult.success("should have been terminated")


class AsyncBlocks(TaskHandler):
    async def execute(self, context: TaskContext) -> TaskResult:
        print("READY", flush=True)
        await asyncio.sleep(60)
        return TaskResult.success("should have been terminated")


class CatchesExceptions(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        try:
            print("READY", flush=True)
            time.sleep(60)
        except Exception:
            return TaskResult.success("swallowed")
        return TaskResult.success("should have been terminated")
'''


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: int
    result: dict[str, Any] | None
    stdout: str
    stderr: str


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "handlers"
    directory.mkdir()
    (directory / "sample_handlers.py").write_text(textwrap.dedent(_HANDLERS))
    (directory / "broken_handlers.py").write_text("import definitely_not_installed_module\n")
    return directory


def _env(tmp_path: Path, handler_dir: Path, **overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(handler_dir), os.environ.get("PYTHONPATH")])),
        CRONLET_TASK="nightly-report",
        CRONLET_NAMESPACE="jobs",
        CRONLET_PARAMETERS="{}",
        CRONLET_SCHEDULED_TIME="2025-03-30T01:30:00Z",
        CRONLET_ATTEMPT="1",
        CRONLET_RUN_ID="nightly-report-29045490",
        CRONLET_TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _read_result(tmp_path: Path) -> dict[str, Any] | None:
    log = tmp_path / "termination-log"
    if not log.exists():
        return None
    text = log.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 4096
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def run(tmp_path: Path, handler_dir: Path, handler: str | None, **env: str | None) -> Outcome:
    """Run the executor as the container does: a separate process."""
    command = [sys.executable, "-m", "cronlet.executor"]
    completed = subprocess.run(
        command,
        env=_env(tmp_path, handler_dir, CRONLET_HANDLER=handler, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Outcome(completed.returncode, _read_result(tmp_path), completed.stdout, completed.stderr)


class InProcess:
    """Runs ``executor.main()`` in this process: the same code path as ``run`` minus ~0.4 s of start-up.

    Used for the many variations of one behaviour; each behaviour also has a subprocess test above.
    """

    def __init__(
        self,
        *,
        tmp_path: Path,
        handler_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self._tmp_path = tmp_path
        self._handler_dir = handler_dir
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, handler: str | None, **env: str | None) -> Outcome:
        target = _env(self._tmp_path, self._handler_dir, CRONLET_HANDLER=handler, **env)
        with self._monkeypatch.context() as patch:
            for key in set(os.environ) - set(target):
                patch.delenv(key)
            for key, value in target.items():
                patch.setenv(key, value)
            patch.syspath_prepend(str(self._handler_dir))
            # main() replaces the root logger's handlers: hand it an empty list, so pytest's own handlers
            # are neither removed nor closed, and main's are dropped afterwards.
            patch.setattr(logging.root, "handlers", [])
            patch.setattr(logging.root, "level", logging.root.level)
            for module in ("sample_handlers", "broken_handlers"):
                patch.delitem(sys.modules, module, raising=False)
            code = executor.main([])
            for module in ("sample_handlers", "broken_handlers"):
                patch.delitem(sys.modules, module, raising=False)
        captured = self._capsys.readouterr()
        return Outcome(code, _read_result(self._tmp_path), captured.out, captured.err)


@pytest.fixture
def run_here(
    tmp_path: Path, handler_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> InProcess:
    return InProcess(tmp_path=tmp_path, handler_dir=handler_dir, monkeypatch=monkeypatch, capsys=capsys)


# --- exit codes and results -------------------------------------------------------------------------------


def test_success_exits_0_and_writes_the_result(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:Succeeds", CRONLET_PARAMETERS='{"n": 5}')
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result == {"success": True, "message": "all good", "retryable": True, "data": {"n": 5}}
    assert "hello from nightly-report" in outcome.stdout


def test_retryable_failure_exits_1(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:FailsRetryably")
    assert outcome.code == 1
    assert outcome.result is not None
    assert (outcome.result["success"], outcome.result["retryable"]) == (False, True)
    assert outcome.result["message"] == "try again later"


def test_permanent_failure_result_exits_2(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:FailsPermanently")
    assert outcome.code == 2
    assert outcome.result is not None
    assert (outcome.result["success"], outcome.result["retryable"]) == (False, False)


def test_exception_exits_1_with_its_type_and_message(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:Raises")
    assert outcome.code == 1
    assert outcome.result is not None
    assert outcome.result["message"] == "ValueError: boom"
    assert outcome.result["retryable"] is True
    assert "Traceback" in outcome.stdout


def test_permanent_error_exits_2(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:RaisesPermanent")
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["message"] == "table does not exist"
    assert outcome.result["retryable"] is False


def test_sys_exit_in_a_handler_is_a_retryable_failure(run_here: InProcess) -> None:
    outcome = run_here("sample_handlers:exits")
    assert outcome.code == 1
    assert outcome.result is not None
    assert "sys.exit(4)" in outcome.result["message"]


def test_returning_none_is_a_success(run_here: InProcess) -> None:
    outcome = run_here("sample_handlers:returns_nothing")
    assert outcome.code == 0
    assert outcome.result is not None
    assert outcome.result["success"] is True


def test_returning_something_else_is_a_permanent_failure(run_here: InProcess) -> None:
    outcome = run_here("sample_handlers:returns_a_string")
    assert outcome.code == 2
    assert outcome.result is not None
    assert "returned str, expected a TaskResult" in outcome.result["message"]


def test_async_handler_runs(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:AsyncHandler", CRONLET_ATTEMPT="2")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    assert outcome.result["message"] == "async attempt 2"


def test_unknown_handler_exits_2_with_a_clear_message(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "no-such-handler")
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["retryable"] is False
    assert outcome.result["message"].startswith("unknown handler 'no-such-handler'")
    assert "registered: echo, fail, http, shell, sleep" in outcome.result["message"]


def test_unimportable_module_exits_2_naming_handler_and_error(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "broken_handlers:Handler")
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["message"] == (
        "handler 'broken_handlers:Handler': cannot import module 'broken_handlers': "
        "ModuleNotFoundError: No module named 'definitely_not_installed_module'"
    )


def test_bad_json_parameters_exit_2(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:Succeeds", CRONLET_PARAMETERS="{oops")
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["retryable"] is False
    assert outcome.result["message"].startswith(
        "bad executor environment: CRONLET_PARAMETERS is not valid JSON"
    )


# --- handler forms (in process) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("sample_handlers:AsyncHandler", "async attempt 1"),
        ("sample_handlers:async_function_handler", "async function"),
    ],
)
def test_async_handlers_run(run_here: InProcess, handler: str, message: str) -> None:
    outcome = run_here(handler)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    assert outcome.result["message"] == message


def test_async_handler_exception_exits_1(run_here: InProcess) -> None:
    outcome = run_here("sample_handlers:AsyncRaises")
    assert outcome.code == 1
    assert outcome.result is not None
    assert outcome.result["message"] == "RuntimeError: async boom"


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("sample_handlers:Succeeds", "all good"),  # colon form, a TaskHandler subclass
        ("sample_handlers.Succeeds", "all good"),  # dotted form
        ("sample_handlers:instance", "all good"),  # a TaskHandler instance
        ("sample_handlers:function_handler", "function for nightly-report"),  # a plain callable
    ],
)
def test_module_path_handlers_resolve(run_here: InProcess, handler: str, message: str) -> None:
    outcome = run_here(handler)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    assert outcome.result["message"] == message


def test_registered_short_name_resolves(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "echo", CRONLET_PARAMETERS='{"greeting": "hi"}')
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    assert outcome.result["data"] == {"greeting": "hi"}


def test_console_script_runs_the_executor(tmp_path: Path, handler_dir: Path) -> None:
    # Installed beside this interpreter by `pip install -e ./handlers` (the Makefile's venv).
    script = shutil.which("cronlet-execute", path=str(Path(sys.executable).parent))
    assert script is not None, (
        "cronlet-execute is not installed beside this Python (pip install -e ./handlers)"
    )
    completed = subprocess.run(
        [script],
        env=_env(tmp_path, handler_dir, CRONLET_HANDLER="echo", CRONLET_PARAMETERS='{"k": 1}'),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert _read_result(tmp_path) == {
        "success": True,
        "message": '{"k": 1}',
        "retryable": True,
        "data": {"k": 1},
    }


# --- handlers that cannot be resolved (in process) --------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("no-such-handler", ["unknown handler 'no-such-handler'", "registered: ", "echo"]),
        ("no_such_module:Handler", ["'no_such_module:Handler'", "No module named 'no_such_module'"]),
        ("broken_handlers:Handler", ["'broken_handlers:Handler'", "definitely_not_installed_module"]),
        ("sample_handlers:Missing", ["has no attribute 'Missing'"]),
        ("sample_handlers:NotAHandler", ["not a TaskHandler"]),
        ("sample_handlers:NeedsArguments", ["cannot instantiate NeedsArguments"]),
        ("sample_handlers:not_callable", ["neither a TaskHandler nor a callable"]),
        ("Not A Handler", ["whitespace"]),
    ],
)
def test_unresolvable_handler_exits_2_naming_it(
    run_here: InProcess, handler: str, expected: list[str]
) -> None:
    outcome = run_here(handler)
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["retryable"] is False
    for fragment in expected:
        assert fragment in outcome.result["message"]
        assert fragment in outcome.stdout


# --- the environment (in process) -------------------------------------------------------------------------


def test_context_is_built_from_the_environment(run_here: InProcess) -> None:
    outcome = run_here(
        "sample_handlers:Reports",
        CRONLET_PARAMETERS='{"batchSize": 100, "nested": {"a": [1, 2]}}',
        CRONLET_SCHEDULED_TIME="2025-03-30T03:30:00+02:00",
        CRONLET_ATTEMPT="3",
    )
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    assert outcome.result["data"] == {
        "task": "nightly-report",
        "namespace": "jobs",
        "parameters": {"batchSize": 100, "nested": {"a": [1, 2]}},
        "scheduledTime": "2025-03-30T01:30:00+00:00",
        "attempt": 3,
        "runId": "nightly-report-29045490",
        "handler": "sample_handlers:Reports",
    }


def test_optional_variables_have_defaults(run_here: InProcess) -> None:
    outcome = run_here(
        "sample_handlers:Reports",
        CRONLET_PARAMETERS=None,
        CRONLET_SCHEDULED_TIME=None,
        CRONLET_ATTEMPT=None,
        CRONLET_RUN_ID=None,
    )
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.result is not None
    data = outcome.result["data"]
    assert (data["parameters"], data["attempt"]) == ({}, 1)
    assert data["runId"]
    assert data["scheduledTime"].endswith("+00:00")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CRONLET_PARAMETERS": "{not json"}, "CRONLET_PARAMETERS is not valid JSON"),
        ({"CRONLET_PARAMETERS": "[1, 2]"}, "must be a JSON object"),
        ({"CRONLET_SCHEDULED_TIME": "yesterday"}, "CRONLET_SCHEDULED_TIME is not an RFC 3339 time"),
        ({"CRONLET_SCHEDULED_TIME": "2025-03-30T01:30:00"}, "no UTC offset"),
        ({"CRONLET_ATTEMPT": "0"}, "CRONLET_ATTEMPT must be a whole number from 1"),
        ({"CRONLET_ATTEMPT": "two"}, "CRONLET_ATTEMPT must be a whole number from 1"),
        ({"CRONLET_TASK": None}, "CRONLET_TASK is not set"),
    ],
)
def test_bad_environment_exits_2(run_here: InProcess, env: dict[str, str | None], expected: str) -> None:
    outcome = run_here("sample_handlers:Succeeds", **env)
    assert outcome.code == 2
    assert outcome.result is not None
    assert outcome.result["retryable"] is False
    assert expected in outcome.result["message"]


def test_missing_handler_variable_exits_2(run_here: InProcess) -> None:
    outcome = run_here(None)
    assert outcome.code == 2
    assert outcome.result is not None
    assert "CRONLET_HANDLER is not set" in outcome.result["message"]


def test_unwritable_termination_log_still_gives_the_exit_code(run_here: InProcess, tmp_path: Path) -> None:
    outcome = run_here(
        "sample_handlers:FailsPermanently",
        CRONLET_TERMINATION_LOG=str(tmp_path / "missing-dir" / "log"),
    )
    assert outcome.code == 2
    assert "cannot write the result" in outcome.stdout


# --- logging ----------------------------------------------------------------------------------------------


def test_json_log_format_gives_one_json_object_per_line(tmp_path: Path, handler_dir: Path) -> None:
    outcome = run(tmp_path, handler_dir, "sample_handlers:Raises", CRONLET_LOG_FORMAT="json")
    lines = outcome.stdout.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    assert all(record["task"] == "nightly-report" and record["attempt"] == 1 for record in records[1:])
    assert any("ValueError: boom" in record.get("exception", "") for record in records)


def test_text_log_keeps_a_traceback_on_one_line(run_here: InProcess) -> None:
    outcome = run_here("sample_handlers:Raises")
    traceback_lines = [line for line in outcome.stdout.splitlines() if "Traceback" in line]
    assert len(traceback_lines) == 1
    assert "ValueError: boom" in traceback_lines[0]


# --- SIGTERM ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler", ["sample_handlers:Blocks", "sample_handlers:AsyncBlocks", "sample_handlers:CatchesExceptions"]
)
def test_sigterm_writes_terminated_and_exits_1(tmp_path: Path, handler_dir: Path, handler: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cronlet.executor"],
        env=_env(tmp_path, handler_dir, CRONLET_HANDLER=handler),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # Wait until the handler runs, so the signal lands inside it rather than during start-up.
        for line in process.stdout:
            if line.strip() == "READY":
                break
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 1
    assert _read_result(tmp_path) == {
        "success": False,
        "message": "terminated",
        "retryable": True,
        "data": None,
    }


# --- public helpers ---------------------------------------------------------------------------------------


def test_known_handlers_lists_the_built_in_ones() -> None:
    handlers = executor.known_handlers()
    assert handlers["echo"] == "cronlet_handlers.echo:EchoHandler"
    assert {"echo", "http", "shell", "sleep", "fail"} <= set(handlers)


def test_resolve_handler_returns_the_object_unchanged() -> None:
    from cronlet_handlers import echo

    assert executor.resolve_handler("echo") is echo.EchoHandler
    assert executor.resolve_handler("cronlet_handlers.echo:EchoHandler") is echo.EchoHandler
    assert executor.resolve_handler("cronlet_handlers.echo.EchoHandler") is echo.EchoHandler


def test_resolve_handler_raises_a_lookup_error_naming_the_handler() -> None:
    with pytest.raises(executor.HandlerResolutionError, match="no-such-thing"):
        executor.resolve_handler("no-such-thing")
    with pytest.raises(LookupError, match="bad:handler:ref"):
        executor.resolve_handler("bad:handler:ref")


def test_list_handlers_option_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert executor.main(["--list-handlers"]) == 0
    assert "echo\tcronlet_handlers.echo:EchoHandler" in capsys.readouterr().out
