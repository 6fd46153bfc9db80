"""Applying CustomResourceDefinitions to a local control plane and waiting until they serve.

``kubectl wait --for=condition=Established`` fails at once, instead of waiting, while a CRD just created has
no conditions yet ("<nil> is of the type <nil>"): a large CRD (ours embeds the PodTemplateSpec schema) stays
in that state long enough to hit it every time. So the wait is asked again until it answers or the time is up.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def apply(kubectl: Sequence[str], path: Path, *, name: str, timeout: float = 60) -> None:
    """Server-side apply ``path`` (a file or folder; no last-applied annotation to outgrow), then wait until
    the CRD ``name`` is Established. Raises RuntimeError with kubectl's words when it does not get there."""
    applied = subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
        capture_output=True,
        text=True,
    )
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl apply -f {path} failed: {applied.stderr.strip()}")
    deadline = time.monotonic() + timeout
    while True:
        waited = subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", f"--timeout={timeout:g}s", f"crd/{name}"],
            capture_output=True,
            text=True,
        )
        if waited.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the CRD {name} was not established: {waited.stderr.strip()}")
        time.sleep(0.2)
