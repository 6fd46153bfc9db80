"""Finding the prebuilt control-plane binaries.

For: telling every caller where ``etcd``, ``kube-apiserver`` and friends live, and failing with one clear
message when they are missing. Must not: build, download or search PATH for them (a kubectl found on
PATH is usually another version; the tests must run against the pinned build).
"""

from __future__ import annotations

import os
from pathlib import Path

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class MissingBinaryError(RuntimeError):
    """A binary that tools/build.sh makes is not there."""


def bin_dir() -> Path:
    """The directory tools/build.sh writes to: ``$CRONLET_BIN`` or ``~/.cache/cronlet/bin``."""
    env = os.environ.get("CRONLET_BIN")
    if env:
        return Path(env)
    # Same default as tools/build.sh, XDG_CACHE_HOME included, so both agree without configuration.
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cronlet" / "bin"


def find(name: str, *, directory: Path | None = None) -> Path:
    """The path of one binary, or MissingBinaryError naming the build command."""
    where = directory if directory is not None else bin_dir()
    path = where / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinaryError(
            f"{name} not found in {where}. Build the local control plane first: run tools/build.sh "
            f"(or set CRONLET_BIN to the directory that holds the binaries)."
        )
    return path


def find_all(names: tuple[str, ...] = CONTROL_PLANE, *, directory: Path | None = None) -> dict[str, Path]:
    """All of ``names`` at once, so a missing build is reported before anything starts."""
    missing: list[str] = []
    found: dict[str, Path] = {}
    for name in names:
        try:
            found[name] = find(name, directory=directory)
        except MissingBinaryError:
            missing.append(name)
    if missing:
        where = directory if directory is not None else bin_dir()
        raise MissingBinaryError(
            f"missing in {where}: {', '.join(missing)}. Build them first: run tools/build.sh "
            f"(or set CRONLET_BIN to the directory that holds the binaries)."
        )
    return found
