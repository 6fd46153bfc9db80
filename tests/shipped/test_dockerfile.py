"""The Dockerfile installs what the shipped image needs, read as tools/check-dockerfile.sh reads it.

The replay of that install in a fresh venv (and that aiokafka then imports) is tools/check-dockerfile.sh, run
by `make image-check`; these tests need no network.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import check_dockerfile
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_installs_the_handler_side_and_the_operator_with_its_kafka_extra() -> None:
    targets = check_dockerfile.pip_install_targets((ROOT / "Dockerfile").read_text())
    assert targets == ["./handlers", "./[kafka]"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [r.split("==")[0] for r in extras["kafka"]] == ["aiokafka"]


@pytest.mark.parametrize(
    ("run", "targets"),
    [
        ('RUN pip install --no-cache-dir ./handlers "./[kafka]"', ["./handlers", "./[kafka]"]),
        ("RUN python -m pip install --no-cache-dir --no-compile \\\n    ./handlers .", ["./handlers", "."]),
    ],
    ids=["quoted-extra", "continued"],
)
def test_install_targets_are_the_builder_stage_arguments_without_options(
    run: str, targets: list[str]
) -> None:
    text = (
        f"FROM python:3.11-slim AS builder\n{run}\nFROM python:3.11-slim\nRUN pip install --no-cache-dir x\n"
    )
    assert check_dockerfile.pip_install_targets(text) == targets


@pytest.mark.parametrize(
    "builder",
    [
        "RUN true",
        "RUN pip install --no-cache-dir ./handlers\nRUN pip install --no-cache-dir .",
        "RUN pip install --no-cache-dir . && pip check",
    ],
    ids=["none", "two", "chained"],
)
def test_a_builder_the_replay_could_not_repeat_is_an_error(builder: str) -> None:
    with pytest.raises(ValueError, match="pip install"):
        check_dockerfile.pip_install_targets(f"FROM python:3.11-slim AS builder\n{builder}\n")
