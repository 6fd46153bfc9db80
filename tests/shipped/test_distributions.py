"""The two distributions agree: one version, the operator pinned to its handler side, scripts where they run.

(That `pip install ./handlers` alone brings neither kopf nor the Kubernetes client, and runs the executor, is
checked by tools/check-dockerfile.sh in `make image-check`, in a fresh venv.)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from cronlet import sdk

ROOT = Path(__file__).resolve().parents[2]


def _project(path: Path) -> dict[str, object]:
    data = tomllib.loads(path.read_text())
    project = data["project"]
    assert isinstance(project, dict)
    return project


def test_both_distributions_carry_the_sdk_version() -> None:
    operator, handlers = _project(ROOT / "pyproject.toml"), _project(ROOT / "handlers" / "pyproject.toml")
    assert operator["version"] == handlers["version"] == sdk.__version__


def test_the_operator_pins_its_handler_side() -> None:
    operator = _project(ROOT / "pyproject.toml")
    dependencies = operator["dependencies"]
    assert isinstance(dependencies, list)
    assert f"cronlet-handlers=={sdk.__version__}" in dependencies


def test_the_executor_and_the_handlers_ship_with_the_handler_side() -> None:
    operator, handlers = _project(ROOT / "pyproject.toml"), _project(ROOT / "handlers" / "pyproject.toml")
    assert handlers["scripts"] == {"cronlet-execute": "cronlet.executor:main"}
    assert set(operator["scripts"]) == {"cronlet", "kubectl-cronlet"}  # type: ignore[arg-type]
    entry_points = handlers["entry-points"]
    assert isinstance(entry_points, dict)
    assert set(entry_points["cronlet.handlers"]) == {"echo", "http", "shell", "sleep", "fail"}
    assert "entry-points" not in operator
