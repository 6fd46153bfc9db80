"""The executor: runs one attempt of a task inside the executor container (``cronlet-execute``).

It reads the attempt from the environment the operator sets on the Job::

    CRONLET_HANDLER          what to run: a registered name or package.module:Name   (required)
    CRONLET_TASK             name of the ScheduledTask                              (required)
    CRONLET_NAMESPACE        its namespace                                          (required)
    CRONLET_PARAMETERS       JSON object handed over as context.parameters          (default {})
    CRONLET_SCHEDULED_TIME   due time of the run, RFC 3339                          (default now)
    CRONLET_ATTEMPT          attempt number, 1 = first try                          (default 1)
    CRONLET_RUN_ID           identifier of the run, the same for all its attempts   (default random)
    CRONLET_TERMINATION_LOG  where the TaskResult JSON goes        (default /dev/termination-log)
    CRONLET_LOG_FORMAT       "text" (default) or "json": one log line per record on stdout

The operator always sets all of them; the defaults only make running a handler by hand easier.

It resolves the handler, runs it (with ``asyncio.run`` when it is a coroutine), writes the
:class:`~cronlet.sdk.TaskResult` to the termination log and exits with the code the operator reads:

    0  success
    1  failure that may be retried: a retryable TaskResult.failure, any exception other than
       PermanentError, a handler stopped by SIGTERM
    2  permanent failure: PermanentError, TaskResult.failure(retryable=False), a handler that cannot be
       resolved or imported, a malformed environment

A handler that returns None counts as a success with an empty message.

This module runs in handler images, so like ``cronlet.sdk`` it must import only the standard library,
pydantic and the SDK: never kopf, the Kubernetes client or the operator's modules.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import importlib
import importlib.metadata
import inspect
import json
import logging
import os
import signal
import sys
import threading
import types
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from cronlet import sdk
from cronlet._common import handlerref, logs, times

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExitCode",
    "HandlerResolutionError",
    "known_handlers",
    "main",
    "resolve_handler",
]

ENTRY_POINT_GROUP = handlerref.ENTRY_POINT_GROUP
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

logger = logging.getLogger("cronlet.executor")


class ExitCode(enum.IntEnum):
    """The executor's exit codes: the contract with the operator (see API.md, "Executor Jobs")."""

    SUCCESS = 0
    RETRYABLE = 1
    PERMANENT = 2


class HandlerResolutionError(LookupError):
    """The handler reference is malformed, unknown, cannot be imported or is not a handler."""


class _ConfigurationError(Exception):
    """The environment the executor was started with is malformed."""


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM.

    A BaseException, like KeyboardInterrupt, so that a handler's ``except Exception`` does not swallow it,
    while its ``finally`` blocks and context managers still run (a subprocess gets killed, a file closed).
    """


# --- handler resolution -----------------------------------------------------------------------------------


def known_handlers() -> dict[str, str]:
    """Registered short names and their targets: ``{"echo": "cronlet_handlers.echo:EchoHandler", ...}``."""
    return handlerref.registered()


def resolve_handler(name: str) -> object:
    """The object ``name`` refers to (a TaskHandler subclass or instance, or a callable), not yet called.

    Raises HandlerResolutionError with a message naming the handler and the cause.
    """
    try:
        ref = handlerref.parse_handler_ref(name)
    except ValueError as exc:
        raise HandlerResolutionError(str(exc)) from exc
    if ref.kind == "entrypoint":
        return _load_entry_point(name)
    assert ref.module is not None  # guaranteed by parse_handler_ref for kind "path"
    try:
        module = importlib.import_module(ref.module)
    except Exception as exc:
        # Anything raised while importing (ImportError, but also a SyntaxError or a failing top-level
        # statement in the user's module) will happen again on a retry, so it is permanent.
        raise HandlerResolutionError(
            f"handler {name!r}: cannot import module {ref.module!r}: {_describe(exc)}"
        ) from exc
    found: object = module
    for part in ref.attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise HandlerResolutionError(
                f"handler {name!r}: module {ref.module!r} has no attribute {ref.attr!r}"
            ) from exc
    return found


def _load_entry_point(name: str) -> object:
    matches = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not matches:
        known = ", ".join(known_handlers()) or "none"
        raise HandlerResolutionError(
            f"unknown handler {name!r}: no entry point of that name in group {ENTRY_POINT_GROUP!r} "
            f"(registered: {known}); use a path such as 'package.module:Name' for an unregistered handler"
        )
    # Two distributions may register one name; take the first, as importlib.metadata orders them.
    entry_point = next(iter(matches))
    try:
        return entry_point.load()
    except Exception as exc:
        raise HandlerResolutionError(
            f"handler {name!r} (entry point {entry_point.value!r}) cannot be imported: {_describe(exc)}"
        ) from exc


def _as_callable(name: str, found: object) -> Callable[[sdk.TaskContext], object]:
    """Turn what a reference points to into the one call that runs an attempt."""
    if isinstance(found, type):
        cls = found
        # Duck typing on purpose: a class with an execute() method works without subclassing TaskHandler.
        if not (issubclass(cls, sdk.TaskHandler) or callable(getattr(cls, "execute", None))):
            raise HandlerResolutionError(
                f"handler {name!r} is the class {cls.__qualname__}, which is not a TaskHandler "
                "and has no execute() method"
            )
        try:
            found = cls()
        except Exception as exc:
            raise HandlerResolutionError(
                f"handler {name!r}: cannot instantiate {cls.__qualname__} with no arguments: {_describe(exc)}"
            ) from exc
    execute = getattr(found, "execute", None)
    if callable(execute):
        return execute  # type: ignore[no-any-return]
    if callable(found):
        return found
    raise HandlerResolutionError(
        f"handler {name!r} is a {type(found).__name__}, neither a TaskHandler nor a callable"
    )


# --- running an attempt -----------------------------------------------------------------------------------


def _context_from_env(env: Mapping[str, str], *, task_logger: logging.Logger) -> sdk.TaskContext:
    def required(key: str) -> str:
        value = env.get(key, "")
        if not value:
            raise _ConfigurationError(f"{key} is not set")
        return value

    raw_parameters = env.get("CRONLET_PARAMETERS", "") or "{}"
    try:
        parameters = json.loads(raw_parameters)
    except json.JSONDecodeError as exc:
        raise _ConfigurationError(f"CRONLET_PARAMETERS is not valid JSON: {exc}") from exc
    if not isinstance(parameters, dict):
        raise _ConfigurationError(
            f"CRONLET_PARAMETERS must be a JSON object, got a JSON {type(parameters).__name__}"
        )

    raw_time = env.get("CRONLET_SCHEDULED_TIME", "")
    if raw_time:
        try:
            scheduled_time = times.parse(raw_time)
        except ValueError as exc:
            raise _ConfigurationError(f"CRONLET_SCHEDULED_TIME is not an RFC 3339 time: {exc}") from exc
    else:
        scheduled_time = datetime.now(UTC)

    raw_attempt = env.get("CRONLET_ATTEMPT", "") or "1"
    try:
        attempt = int(raw_attempt)
    except ValueError:
        attempt = 0
    if attempt < 1:
        raise _ConfigurationError(f"CRONLET_ATTEMPT must be a whole number from 1, got {raw_attempt!r}")

    return sdk.TaskContext(
        task=required("CRONLET_TASK"),
        namespace=required("CRONLET_NAMESPACE"),
        handler=required("CRONLET_HANDLER"),
        parameters=parameters,
        scheduled_time=scheduled_time,
        attempt=attempt,
        run_id=env.get("CRONLET_RUN_ID", "") or uuid.uuid4().hex,
        logger=task_logger,
    )


def _run(call: Callable[[sdk.TaskContext], object], context: sdk.TaskContext) -> sdk.TaskResult:
    """Run the handler once and turn whatever happens (except termination) into a TaskResult."""
    try:
        returned = call(context)
        if inspect.isawaitable(returned):
            # Only now start a loop, so that synchronous handlers never run inside one.
            returned = asyncio.run(_await(returned))
    except sdk.PermanentError as exc:
        # No traceback: a PermanentError is a deliberate verdict, its message says it all.
        logger.error("handler failed permanently: %s", exc)
        return sdk.TaskResult.failure(str(exc) or type(exc).__name__, retryable=False)
    except SystemExit as exc:
        # sys.exit() in a handler must not bypass the termination message; honour its intent.
        if exc.code in (None, 0):
            return sdk.TaskResult.success(f"handler called sys.exit({exc.code})")
        return sdk.TaskResult.failure(f"handler called sys.exit({exc.code!r})")
    except Exception as exc:
        logger.error("handler raised an exception", exc_info=True)
        return sdk.TaskResult.failure(_describe(exc))
    if returned is None:
        return sdk.TaskResult.success()
    if not isinstance(returned, sdk.TaskResult):
        # A programming error in the handler: retrying the same code returns the same thing.
        return sdk.TaskResult.failure(
            f"handler returned {type(returned).__name__}, expected a TaskResult", retryable=False
        )
    return returned


async def _await(awaitable: Awaitable[object]) -> object:
    return await awaitable


def _exit_code(result: sdk.TaskResult) -> ExitCode:
    if result.success:
        return ExitCode.SUCCESS
    return ExitCode.RETRYABLE if result.retryable else ExitCode.PERMANENT


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_result(result: sdk.TaskResult, *, path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(result.to_termination_message())
    except OSError as exc:
        # Outside a pod (running by hand) there may be no termination log; the exit code still tells.
        logger.warning("cannot write the result to %s: %s", path, exc)


def _finish(result: sdk.TaskResult, *, path: str) -> int:
    code = _exit_code(result)
    _write_result(result, path=path)
    log = logger.info if code is ExitCode.SUCCESS else logger.error
    log("attempt finished: %s (exit code %d): %s", code.name.lower(), code.value, result.message)
    return int(code)


# --- logging ----------------------------------------------------------------------------------------------


def _configure_logging(*, json_format: bool, fields: Mapping[str, object]) -> None:
    formatter: logging.Formatter = logs.JsonFormatter(fields=fields) if json_format else logs.TextFormatter()
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    # force=True: called twice (before and after the context is known), the second call replaces the first.
    logging.basicConfig(level=logging.INFO, handlers=[stream], force=True)


# --- signals ----------------------------------------------------------------------------------------------


_SignalHandler = Callable[[int, types.FrameType | None], Any] | int | None


def _install_sigterm_handler(*, path: str) -> _SignalHandler:
    """Make SIGTERM stop the handler; returns the previous disposition to restore."""

    def on_sigterm(signum: int, frame: types.FrameType | None) -> NoReturn:
        logger.warning("received SIGTERM: stopping the handler")
        # Write the result now: if the handler does not unwind before the kubelet's SIGKILL, the
        # operator still learns that the attempt was terminated rather than lost.
        _write_result(_TERMINATED, path=path)
        raise _Terminated()

    previous = signal.getsignal(signal.SIGTERM)
    _set_sigterm(on_sigterm)
    return previous


def _set_sigterm(disposition: _SignalHandler) -> None:
    # Signal handlers can only be set from the main thread; main() called elsewhere (an embedding
    # program, a test) just runs without SIGTERM handling. None means "not set from Python".
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL if disposition is None else disposition)


_TERMINATED = sdk.TaskResult.failure("terminated", retryable=True)


# --- entry point ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one attempt as configured by the environment; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="cronlet-execute",
        description="Run one attempt of a Cronlet task, configured by CRONLET_* environment variables.",
    )
    parser.add_argument("--list-handlers", action="store_true", help="print the registered handlers and exit")
    options = parser.parse_args(argv)
    if options.list_handlers:
        for name, value in known_handlers().items():
            print(f"{name}\t{value}")
        return int(ExitCode.SUCCESS)

    env = os.environ
    path = env.get("CRONLET_TERMINATION_LOG", "") or DEFAULT_TERMINATION_LOG
    json_format = env.get("CRONLET_LOG_FORMAT", "text").strip().lower() == "json"
    _configure_logging(json_format=json_format, fields={})
    previous_sigterm = _install_sigterm_handler(path=path)
    try:
        try:
            result = _attempt(env, json_format=json_format)
        except _Terminated:
            result = _TERMINATED
        # The attempt is over: a SIGTERM now must not replace its result with "terminated".
        _set_sigterm(signal.SIG_IGN)
        return _finish(result, path=path)
    finally:
        _set_sigterm(previous_sigterm)


def _attempt(env: Mapping[str, str], *, json_format: bool) -> sdk.TaskResult:
    """Everything between reading the environment and having a result; raises only _Terminated."""
    handler_name = env.get("CRONLET_HANDLER", "")
    task_logger = logging.getLogger("cronlet.handler." + handler_name.replace(":", "."))
    try:
        context = _context_from_env(env, task_logger=task_logger)
    except (_ConfigurationError, ValueError) as exc:
        logger.error("bad executor environment: %s", exc)
        return sdk.TaskResult.failure(f"bad executor environment: {exc}", retryable=False)
    _configure_logging(json_format=json_format, fields=_log_fields(context))
    logger.info("running handler %r, attempt %d", context.handler, context.attempt)
    try:
        call = _as_callable(context.handler, resolve_handler(context.handler))
    except HandlerResolutionError as exc:
        logger.error("%s", exc)
        return sdk.TaskResult.failure(str(exc), retryable=False)
    return _run(call, context)


def _log_fields(context: sdk.TaskContext) -> dict[str, Any]:
    return {
        "task": context.task,
        "namespace": context.namespace,
        "handler": context.handler,
        "runId": context.run_id,
        "attempt": context.attempt,
    }


if __name__ == "__main__":
    sys.exit(main())
