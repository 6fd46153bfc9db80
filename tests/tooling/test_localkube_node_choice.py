"""`python -m localkube up --node real|auto`: no silent fallback to the fake kubelet."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube import __main__ as cli
from localkube import kubelet, node


def unavailable(*, bin_dir: Path | None = None) -> dict[str, Path]:
    raise node.RealNodeUnavailable(
        "this machine cannot run the real node:\n  runc is missing: apt-get install runc"
    )


@pytest.fixture
def fake_up(monkeypatch: pytest.MonkeyPatch) -> list[kubelet.Mode]:
    calls: list[kubelet.Mode] = []

    def record(state_file: Path, mode: kubelet.Mode) -> int:
        calls.append(mode)
        return 0

    monkeypatch.setattr(node, "check_machine", unavailable)
    monkeypatch.setattr(cli, "_up", record)
    return calls


def test_real_fails_with_the_reason_when_the_machine_cannot_run_it(
    fake_up: list[kubelet.Mode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up", "--node", "real", "--state-file", str(tmp_path / "state.json")]) == 1
    assert fake_up == []
    assert "runc is missing" in capsys.readouterr().err


def test_auto_falls_back_to_the_fake_kubelet_loudly(
    fake_up: list[kubelet.Mode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up", "--node", "auto", "--state-file", str(tmp_path / "state.json")]) == 0
    assert fake_up == [kubelet.Mode.EXECUTE]
    err = capsys.readouterr().err
    assert "THE REAL NODE CANNOT RUN ON THIS MACHINE; FALLING BACK TO THE FAKE KUBELET" in err
    assert "runc is missing" in err
