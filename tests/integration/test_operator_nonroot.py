"""The operator as its image runs it: a numeric uid with no passwd entry, and HOME=/nonexistent.

Regression test: kopf's default identity calls ``getpass.getuser()``, which raises KeyError for a uid that
has no passwd entry, so the operator crash-looped in its own image (uid 65532) under the chart's
securityContext. This runs the operator as that uid on this machine, where 65532 has no entry either.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit import ROOT, OperatorProcess, Tasks, outcomes, stopped

pytestmark = pytest.mark.cluster

UID = 65532  # the Dockerfile's USER and the chart's runAsUser


@pytest.fixture
def reachable_checkout() -> Iterator[None]:
    """Let the unprivileged uid traverse the directories above the checkout (and read nothing else there).

    A checkout under a 0700 directory (``mktemp -d``, as a CI clone may be) cannot be imported from by
    another uid. Only the search bit is added, to the directories that lack it, and taken away afterwards.
    """
    changed: list[tuple[Path, int]] = []
    for directory in [ROOT, *ROOT.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append((directory, stat.S_IMODE(mode)))
    yield
    for directory, mode in changed:
        directory.chmod(mode)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory the unprivileged uid can read and write (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="cronlet-nonroot-"))
    path.chmod(0o755)
    os.chown(path, UID, UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.usefixtures("reachable_checkout")
def test_the_operator_runs_as_a_uid_without_a_passwd_entry(
    operator_process: OperatorProcess, kubeconfig: str, tasks: Tasks, private_dir: Path
) -> None:
    with pytest.raises(KeyError):
        pwd.getpwuid(UID)  # the precondition that made the crash: no passwd entry for the image's uid
    copy = private_dir / "kubeconfig"
    shutil.copy(kubeconfig, copy)
    os.chown(copy, UID, UID)
    with stopped(operator_process):
        nonroot = OperatorProcess(str(copy), private_dir, ["--namespace", tasks.ns], run_as=UID)
        nonroot.start()  # waits for /readyz: the crash happened before kopf became ready
        try:
            tasks.create("as-65532", {"schedule": "*/2 * * * * *", "handler": "echo"})
            status = tasks.wait_status(
                "as-65532", lambda s: "Succeeded" in outcomes(s), timeout=60, what="a run succeeded"
            )
            assert status["counters"]["succeeded"] >= 1
        finally:
            code = nonroot.stop()
        assert code == 0, nonroot.log_tail()
