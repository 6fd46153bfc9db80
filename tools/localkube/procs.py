"""Starting and stopping the long-running server processes of a local cluster.

For: launching a binary in its own process group with its output in a log file, and killing that whole
group (SIGTERM, then SIGKILL) without leaving zombies or orphans. Must not: decide what to run or when
it is ready; that is ``cluster``'s job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    """One started server: its name, its Popen and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(name: str, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> Process:
    """Start ``argv`` in a new session (so its pid is also its process-group id) logging to ``log``."""
    command = [*die_with_parent(), *argv]
    with log.open("ab") as out:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return Process(name=name, popen=popen, log=log)


def stop(processes: Sequence[Process], *, grace: float) -> None:
    """SIGTERM every group at once, wait up to ``grace`` seconds in all, then SIGKILL what is left.

    Groups are signalled together, not one by one, so the slowest graceful shutdown bounds the total.
    """
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        while not exited(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    for process in processes:
        # Also catches children the server forked into its group. The leader is not reaped yet (see
        # exited), so its pid, and with it the group id, cannot have been reused by another process.
        signal_group(process.pid, signal.SIGKILL)
        process.popen.wait()


def die_with_parent() -> list[str]:
    """A command prefix that makes the kernel SIGKILL the command when the thread that started it dies.

    That covers a parent killed by SIGKILL, where no Python cleanup runs. setpriv sets the flag and execs
    the command, so the pid stays the same. Empty where setpriv (util-linux) is missing.
    """
    setpriv = shutil.which("setpriv")
    return [] if setpriv is None else [setpriv, "--pdeathsig", "KILL", "--"]


def tail(path: Path, *, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    return "\n".join(text.splitlines()[-lines:])


def exited(pid: int) -> bool:
    """Whether ``pid`` (our child) has exited, without reaping it (WNOWAIT)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None and info.si_pid == pid


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(pgid, signum)
