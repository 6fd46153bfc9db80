"""The ``shell`` handler: runs one command; exit status 0 is success.

``command`` is a list (run directly, no shell) or a string (run by ``/bin/sh -c``). Its output is
logged line by line as it comes, and the tail of it goes into the result message, unless
``includeOutput: false`` (the message lands in ``status.history`` and Events, readable by anyone who may read
the task; output that may hold secrets should stay in the pod's log). A non-zero exit or a
timeout is a retryable failure; a command that cannot be started at all (no such executable or working
directory) is permanent, since the image will not change between attempts.

The command runs in its own process group, so that on a timeout, on SIGTERM, and when it exits, nothing it
started outlives the attempt. This module must not interpret the command's output beyond keeping its tail.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import threading
from typing import IO, Any

import pydantic

from cronlet import sdk
from cronlet_handlers import _params

_TAIL_LINES = 50
_TAIL_CHARS = 1500
# How long a command gets to exit after SIGTERM before it is killed.
_GRACE_SECONDS = 2.0


class ShellParameters(pydantic.BaseModel):
    # Numbers become strings so that YAML such as `env: {PORT: 8080}` or `command: [sleep, 5]` works.
    model_config = _params.PARAMETERS_CONFIG | pydantic.ConfigDict(coerce_numbers_to_str=True)

    command: str | list[str] = pydantic.Field(
        description="A list of arguments run directly, or a string run by /bin/sh -c."
    )
    env: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Variables added to the executor's environment."
    )
    timeout_seconds: float | None = pydantic.Field(
        None, gt=0, allow_inf_nan=False, description="Stop the command after this long (a retryable failure)."
    )
    working_dir: str | None = pydantic.Field(
        None, min_length=1, description="Directory to run the command in."
    )
    include_output: bool = pydantic.Field(
        True, description="Put the tail of the output in the result message (false: in the pod's log only)."
    )

    @pydantic.field_validator("command", mode="before")
    @classmethod
    def _command_shape(cls, value: Any) -> Any:
        # Checked before the union so that the message says what is wanted instead of listing how each
        # member of str | list[str] failed.
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("the command string is empty")
            return value
        if isinstance(value, list):
            if not value:
                raise ValueError("the command list is empty")
            return value
        raise ValueError("must be a string (run by /bin/sh -c) or a list of strings (run directly)")


class ShellHandler(sdk.TaskHandler):
    """Run a command and report its exit status."""

    def execute(self, context: sdk.TaskContext) -> sdk.TaskResult:
        parameters = _params.parse(ShellParameters, context.parameters, handler="shell")
        if isinstance(parameters.command, str):
            argv = ["/bin/sh", "-c", parameters.command]
            context.logger.info("running via /bin/sh -c: %s", parameters.command)
        else:
            argv = list(parameters.command)
            context.logger.info("running: %s", shlex.join(argv))
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **parameters.env},
                cwd=parameters.working_dir,
                start_new_session=True,
            )
        except OSError as exc:
            raise sdk.PermanentError(f"cannot start the command: {exc}") from exc

        tails = _Tails(keep=parameters.include_output)
        pumps = [
            _pump(stream=process.stdout, tail=tails.stdout, label="stdout", context=context),
            _pump(stream=process.stderr, tail=tails.stderr, label="stderr", context=context),
        ]
        returncode: int | None = None
        try:
            returncode = process.wait(timeout=parameters.timeout_seconds)
        except subprocess.TimeoutExpired:
            pass  # returncode stays None
        finally:
            # Whatever happened (exit, timeout, SIGTERM raised in this thread), stop what the command
            # left running: it would hold the output pipes open and outlive the attempt.
            _stop(process)
            _join(pumps)
        if returncode is None:
            return sdk.TaskResult.failure(
                _with_tail(f"command timed out after {parameters.timeout_seconds:g}s", tails.last())
            )
        if returncode == 0:
            return sdk.TaskResult.success(
                _with_tail("command succeeded", tails.last(prefer_stderr=False)), data={"exitCode": 0}
            )
        if returncode < 0:
            status = f"command was killed by {_signal_name(-returncode)}"
        else:
            status = f"command exited with status {returncode}"
        return sdk.TaskResult.failure(_with_tail(status, tails.last()), data={"exitCode": returncode})


class _Tails:
    """The last lines of each output stream, for the result message."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.stdout: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.stderr: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)

    def last(self, *, prefer_stderr: bool = True) -> str:
        if not self.keep:
            return ""
        # On failure the reason is usually on stderr; on success what matters is on stdout.
        first, second = (self.stderr, self.stdout) if prefer_stderr else (self.stdout, self.stderr)
        lines = first or second
        return "\n".join(lines)[-_TAIL_CHARS:]


def _with_tail(status: str, tail: str) -> str:
    return f"{status}: {tail}" if tail.strip() else status


def _pump(
    *, stream: IO[bytes] | None, tail: collections.deque[str], label: str, context: sdk.TaskContext
) -> threading.Thread:
    """Log a stream line by line as it comes, keeping its tail; a thread per stream so neither blocks."""

    def run() -> None:
        assert stream is not None  # both pipes were requested
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                tail.append(line)
                context.logger.info("%s: %s", label, line)

    thread = threading.Thread(target=run, name=f"shell-{label}", daemon=True)
    thread.start()
    return thread


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        # Bounded: once the process group is gone the pipes are at EOF, but never hang the attempt on it.
        thread.join(timeout=_GRACE_SECONDS)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the command's process group: SIGTERM, then SIGKILL after a grace period."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    # Children that ignored SIGTERM or were left in the background.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # ProcessLookupError: the group is already empty.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
