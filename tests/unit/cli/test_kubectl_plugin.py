"""``kubectl cronlet`` without a cluster: ``next --schedule``, ``validate``, help texts and exit codes.

The commands that need a cluster are in tests/integration/test_kubectl_plugin.py; here, the clock is
always given (``--after``) except where only the exit code and the reason matter.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cronlet._cli import kubectl as kp

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*/*.yaml"))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = kp.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- next --schedule (offline)


@pytest.mark.parametrize(
    ("case", "argv", "expected"),
    [
        (
            "six fields, seconds first",
            ["--schedule", "*/5 * * * * *", "--after", "2026-01-01T00:00:00Z", "--count", "3"],
            ["2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z", "2026-01-01T00:00:15Z"],
        ),
        (
            "-c is --count; the start instant itself is excluded",
            ["--schedule", "@hourly", "--after", "2026-01-01T01:00:00Z", "-c", "2"],
            ["2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"],
        ),
        # 02:30 does not exist in Berlin on 2026-03-29 (clocks go 02:00 CET -> 03:00 CEST): it runs once, at the
        # first instant after the gap (03:00 CEST = 01:00Z). The day before, 02:30 CET is 01:30Z.
        (
            "spring-forward gap runs at the end of the gap",
            [
                "--schedule",
                "30 2 * * *",
                "--tz",
                "Europe/Berlin",
                "--after",
                "2026-03-28T00:00:00Z",
                "--count",
                "3",
            ],
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "first due time after the gap",
            [
                "--schedule",
                "30 2 * * *",
                "--tz",
                "Europe/Berlin",
                "--after",
                "2026-03-28T02:00:00Z",
                "--count",
                "1",
            ],
            ["2026-03-29T01:00:00Z"],
        ),
        (
            "--after with an offset is read as the instant it names",
            ["--schedule", "0 0 * * *", "--after", "2026-01-01T00:30:00+01:00", "--count", "1"],
            ["2026-01-01T00:00:00Z"],
        ),
        (
            "default count is 5",
            ["--schedule", "0 * * * * *", "--after", "2026-01-01T00:00:00Z"],
            [f"2026-01-01T00:0{m}:00Z" for m in range(1, 6)],
        ),
    ],
)
def test_next_schedule_prints_due_times(
    capsys: pytest.CaptureFixture[str], case: str, argv: list[str], expected: list[str]
) -> None:
    code, out, err = cli(capsys, "next", *argv)
    assert (code, err) == (0, ""), case
    assert out.splitlines() == expected, case


def test_next_schedule_hash_key_matches_the_schedule_module(capsys: pytest.CaptureFixture[str]) -> None:
    from cronlet._core import schedule

    after = datetime(2026, 1, 1, tzinfo=UTC)
    want = schedule.upcoming(schedule.compile_cron("H H * * *", hash_key="uid-1"), after, 2)
    code, out, _ = cli(
        capsys,
        "next",
        "--schedule",
        "H H * * *",
        "--hash-key",
        "uid-1",
        "--after",
        "2026-01-01T00:00:00Z",
        "-c",
        "2",
    )
    assert code == 0
    assert out.splitlines() == [kp.times.rfc3339(t) for t in want]


def test_next_schedule_without_after_starts_now(capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(UTC)
    code, out, _ = cli(capsys, "next", "--schedule", "* * * * * *", "-c", "1")
    assert code == 0
    assert kp.parse_instant(out.strip()) > before


@pytest.mark.parametrize(
    ("case", "argv", "message"),
    [
        (
            "out of range",
            ["--schedule", "61 * * * *"],
            "InvalidSchedule: invalid cron expression '61 * * * *'",
        ),
        ("wrong field count", ["--schedule", "* * *"], "has 3 fields"),
        ("unknown macro", ["--schedule", "@fortnightly"], "unknown macro"),
        ("never fires", ["--schedule", "0 0 30 2 *"], "never fires"),
        (
            "unknown zone",
            ["--schedule", "@daily", "--tz", "Mars/Olympus"],
            "UnknownTimeZone: unknown time zone",
        ),
    ],
)
def test_next_invalid_schedule_exits_2_with_the_schedule_error(
    capsys: pytest.CaptureFixture[str], case: str, argv: list[str], message: str
) -> None:
    code, out, err = cli(capsys, "next", *argv)
    assert code == 2, case
    assert out == ""
    assert message in err, case


@pytest.mark.parametrize(
    ("case", "argv", "message"),
    [
        ("neither NAME nor --schedule", ["next"], "one of the arguments NAME --schedule is required"),
        ("both NAME and --schedule", ["next", "task", "--schedule", "@daily"], "not allowed with"),
        ("count zero", ["next", "--schedule", "@daily", "--count", "0"], "between 1 and"),
        ("count not a number", ["next", "--schedule", "@daily", "-c", "many"], "not a whole number"),
        (
            "naive --after",
            ["next", "--schedule", "@daily", "--after", "2026-01-01T00:00:00"],
            "no UTC offset",
        ),
        ("--tz with NAME", ["next", "task", "--tz", "UTC"], "--tz and --hash-key go with --schedule"),
        ("no command", [], "required"),
        ("unknown command", ["frobnicate"], "invalid choice"),
        ("validate without -f", ["validate"], "-f/--filename"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], case: str, argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2, case
    assert message in err, case


# --------------------------------------------------------------------------- validate (offline)


GOOD = """\
apiVersion: cronlet.dev/v1alpha1
kind: ScheduledTask
metadata: {name: good}
spec: {schedule: "0 3 * * *", handler: echo}
"""


def _validate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> tuple[int, dict[str, str], str]:
    path = tmp_path / "tasks.yaml"
    path.write_text(text)
    code, out, err = cli(capsys, "validate", "-f", str(path))
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    return code, lines, err


def test_validate_multi_document_reports_each_task(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        GOOD
        + """\
---
apiVersion: cronlet.dev/v1alpha1
kind: ScheduledTask
metadata: {name: bad-cron}
spec: {schedule: "0 25 * * *", handler: echo}
---
apiVersion: cronlet.dev/v1alpha1
kind: ScheduledTask
metadata: {name: bad-handler}
spec: {schedule: "@daily", handler: no-such-handler}
---
apiVersion: cronlet.dev/v1alpha1
kind: ScheduledTask
metadata: {name: both}
spec: {schedule: "@daily", interval: 5m, handler: echo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""
    )
    code, lines, err = _validate(capsys, tmp_path, text)
    assert code == 2
    assert list(lines) == ["good", "bad-cron", "bad-handler", "both"]
    assert lines["good"].startswith("ok (next: ")
    assert lines["bad-cron"].startswith("InvalidSchedule: invalid cron expression '0 25 * * *'")
    assert lines["bad-handler"].startswith("UnknownHandler: handler 'no-such-handler' is not registered")
    assert lines["both"] == "InvalidSchedule: set exactly one of spec.schedule or spec.interval"
    assert "skipping ConfigMap/settings" in err


def test_validate_ok_prints_the_first_due_time(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, lines, _ = _validate(capsys, tmp_path, GOOD)
    assert code == 0
    due = kp.parse_instant(lines["good"].removeprefix("ok (next: ").removesuffix(")"))
    assert (due.hour, due.minute, due.second) == (3, 0, 0)
    assert due > datetime.now(UTC)


@pytest.mark.parametrize(
    ("case", "spec", "reason", "message"),
    [
        ("neither schedule nor interval", "{handler: echo}", "InvalidSchedule", "set exactly one"),
        ("missing handler", '{schedule: "@daily"}', "InvalidSpec", "spec.handler: Field required"),
        (
            "string where the schema wants an integer",
            '{schedule: "@daily", handler: echo, maxRetries: "3"}',
            "InvalidSpec",
            "spec.maxRetries",
        ),
        (
            "string where the schema wants a boolean",
            '{schedule: "@daily", handler: echo, suspend: "yes"}',
            "InvalidSpec",
            "spec.suspend",
        ),
        (
            "below the minimum",
            '{schedule: "@daily", handler: echo, maxRetries: -1}',
            "InvalidSpec",
            "greater than or equal to 0",
        ),
        (
            "enum",
            '{schedule: "@daily", handler: echo, concurrencyPolicy: Sometimes}',
            "InvalidSpec",
            "spec.concurrencyPolicy",
        ),
        ("interval pattern", "{interval: 5 minutes, handler: echo}", "InvalidSpec", "spec.interval"),
        ("interval below 1s", "{interval: 500ms, handler: echo}", "InvalidSpec", "at least 1s"),
        ("days are not a Go unit", "{interval: 1d, handler: echo}", "InvalidSpec", "not a Go duration"),
        ("a sign", '{schedule: "@daily", handler: echo, timeout: "-5s"}', "InvalidSpec", "spec.timeout"),
        (
            "maxDelay below initialDelay",
            '{schedule: "@daily", handler: echo, backoff: {initialDelay: 2m, maxDelay: 90s}}',
            "InvalidSpec",
            "backoff.maxDelay must not be shorter than backoff.initialDelay",
        ),
        (
            "unknown field",
            '{schedule: "@daily", handler: echo, retries: 3}',
            "InvalidSpec",
            'unknown field "spec.retries"',
        ),
        (
            "unknown nested field",
            '{schedule: "@daily", handler: echo, backoff: {initial: 1s}}',
            "InvalidSpec",
            'unknown field "spec.backoff.initial"',
        ),
        (
            "typo in podTemplate",
            '{schedule: "@daily", handler: echo, podTemplate: {spec: {containers: [{name: executor, '
            "imagePullPolice: Always}]}}}",
            "InvalidSpec",
            'unknown field "spec.podTemplate.spec.containers[0].imagePullPolice"',
        ),
        (
            "unknown time zone",
            '{schedule: "@daily", timeZone: Europe/Nowhere, handler: echo}',
            "UnknownTimeZone",
            "unknown time zone",
        ),
        ("malformed handler path", '{schedule: "@daily", handler: "pkg.mod:"}', "UnknownHandler", "empty"),
        ("TZ prefix", '{schedule: "TZ=UTC 0 3 * * *", handler: echo}', "InvalidSchedule", "spec.timeZone"),
    ],
)
def test_validate_reasons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, spec: str, reason: str, message: str
) -> None:
    text = f"apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledTask\nmetadata: {{name: t}}\nspec: {spec}\n"
    code, lines, _ = _validate(capsys, tmp_path, text)
    assert code == 2, case
    got_reason, _, got_message = lines["t"].partition(": ")
    assert got_reason == reason, (case, lines["t"])
    assert message in got_message, (case, lines["t"])


@pytest.mark.parametrize(
    ("case", "spec"),
    [
        ("registered handler of this environment", '{schedule: "@daily", handler: shell}'),
        ("unregistered name with its own image", '{schedule: "@daily", handler: custom, image: "acme/h:1"}'),
        ("path handler", '{schedule: "@daily", handler: "acme.jobs:Nightly"}'),
        ("null fields count as unset", '{schedule: "@daily", interval: null, suspend: null, handler: echo}'),
        (
            "a full podTemplate",
            '{schedule: "@daily", handler: echo, podTemplate: {metadata: {labels: {team: a}}, spec: {'
            "nodeSelector: {disk: ssd}, containers: [{name: executor, resources: {limits: {memory: 1Gi, cpu: 1}}, "
            "env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]}}}",
        ),
        ("integer where a number is expected", "{interval: 30s, handler: echo, backoff: {multiplier: 3}}"),
        (
            "Go durations",
            '{interval: 1h30m, handler: echo, timeout: 1.5s, startTimeout: "0", '
            "backoff: {initialDelay: .5s, maxDelay: 500ms}}",
        ),
    ],
)
def test_validate_accepts(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, spec: str) -> None:
    text = f"apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledTask\nmetadata: {{name: t}}\nspec: {spec}\n"
    code, lines, _ = _validate(capsys, tmp_path, text)
    assert code == 0, (case, lines)
    assert lines["t"].startswith("ok (next: "), case


@pytest.mark.parametrize(
    ("case", "doc", "reason", "message"),
    [
        (
            "wrong version",
            "apiVersion: cronlet.dev/v1\nkind: ScheduledTask\nmetadata: {name: x}\n"
            "spec: {schedule: '@daily', handler: echo}",
            "InvalidResource",
            "cronlet.dev/v1alpha1",
        ),
        (
            "wrong kind",
            "apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledJob\nmetadata: {name: x}\n"
            "spec: {schedule: '@daily', handler: echo}",
            "InvalidResource",
            "use ScheduledTask",
        ),
        (
            "bad name",
            "apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledTask\nmetadata: {name: My_Task}\n"
            "spec: {schedule: '@daily', handler: echo}",
            "InvalidResource",
            "DNS subdomain",
        ),
        (
            "no spec",
            "apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledTask\nmetadata: {name: x}\n",
            "InvalidSpec",
            "spec is required",
        ),
    ],
)
def test_validate_resource_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, doc: str, reason: str, message: str
) -> None:
    code, lines, _ = _validate(capsys, tmp_path, doc)
    assert code == 2, case
    (line,) = lines.values()
    assert line.startswith(f"{reason}: "), (case, line)
    assert message in line, (case, line)


def test_validate_missing_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, lines, _ = _validate(
        capsys,
        tmp_path,
        "apiVersion: cronlet.dev/v1alpha1\nkind: ScheduledTask\nspec: {schedule: '@daily', handler: echo}\n",
    )
    assert code == 2
    assert lines == {"document 1": "InvalidResource: metadata.name is required"}


def test_validate_reads_stdin_and_lists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        f"- {{apiVersion: cronlet.dev/v1alpha1, kind: ScheduledTask, metadata: {{name: t{i}}}, "
        f"spec: {{interval: 1m, handler: echo}}}}\n"
        for i in range(2)
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    code, out, _ = cli(capsys, "validate", "-f", "-")
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["t0", "t1"]


@pytest.mark.parametrize(
    ("case", "text", "message"),
    [
        ("invalid YAML", "spec: [unclosed\n", "invalid YAML"),
    ],
)
def test_validate_unreadable_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, text: str, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    code, _, err = cli(capsys, "validate", "-f", str(path))
    assert code == 2, case
    assert message in err, case


def test_validate_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "validate", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read" in err


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLE_FILES])
def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, err = cli(capsys, "validate", "-f", str(path))
    assert code == 0, out + err
    assert out and all(": ok (next: " in line for line in out.splitlines()), out


# --------------------------------------------------------------------------- pure helpers


def test_history_table() -> None:
    history = [
        {
            "scheduledTime": "2026-01-01T00:00:10Z",
            "startTime": "2026-01-01T00:00:10Z",
            "completionTime": "2026-01-01T00:01:15Z",
            "attempts": 2,
            "outcome": "Succeeded",
            "message": "line one\nline two " + "x" * 100,
            "jobName": "t-1767225610-2",
        },
        {"scheduledTime": "2026-01-01T00:00:00Z", "attempts": 0, "outcome": "Skipped", "message": "busy"},
    ]
    table = kp.render_table(kp.HISTORY_COLUMNS, kp.history_rows(history))
    header, first, second = table.splitlines()
    assert header.split() == list(kp.HISTORY_COLUMNS)
    assert first.split()[:5] == ["2026-01-01T00:00:10Z", "Succeeded", "2", "1m5s", "t-1767225610-2"]
    assert first.endswith("...") and "line one line two" in first
    assert len(first.split("t-1767225610-2", 1)[1].strip()) == kp.MESSAGE_WIDTH
    assert second.split() == ["2026-01-01T00:00:00Z", "Skipped", "0", "-", "-", "busy"]


def test_next_start_is_the_later_of_now_and_last_due_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = {"status": {"lastDueTime": "2026-01-02T00:00:00Z"}}
    earlier = {"status": {"lastDueTime": "2025-12-31T00:00:00Z"}}
    assert kp.next_start(later, now) == datetime(2026, 1, 2, tzinfo=UTC)
    assert kp.next_start(earlier, now) == now
    assert kp.next_start({}, now) == now


def test_task_schedule_interval_is_anchored_at_creation() -> None:
    from cronlet._core import schedule

    body = {
        "metadata": {"uid": "u", "creationTimestamp": "2026-01-01T00:00:07Z"},
        "spec": {"interval": "30s", "handler": "echo"},
    }
    sched = kp.task_schedule(body)
    assert schedule.next_after(sched, datetime(2026, 1, 1, 0, 1, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 1, 7, tzinfo=UTC
    )


# --------------------------------------------------------------------------- help and entry points


@pytest.mark.parametrize(
    "command", [[], ["run"], ["suspend"], ["resume"], ["history"], ["next"], ["validate"]]
)
def test_help_exits_0(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = cli(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: kubectl cronlet")
    assert "--namespace" in out


def test_python_dash_m_runs_the_plugin() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cronlet._cli.kubectl",
            "next",
            "--schedule",
            "@daily",
            "--after",
            "2026-01-01T00:00:00Z",
            "-c",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "2026-01-02T00:00:00Z\n"), done.stderr


def test_cluster_commands_report_a_missing_kubeconfig(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "run", "t", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 1
    assert "cannot load Kubernetes configuration" in err
