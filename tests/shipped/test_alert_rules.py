"""The alert rules (charts/cronlet/rules/cronlet-alerts.yaml): promtool accepts them, their promtool unit
tests pass, and every alert carries what an on-call engineer needs.

promtool comes from tools/build.sh (into $CRONLET_BIN, default ~/.cache/cronlet/bin). Without it these
tests fail rather than skip: CI builds the tools first, and a skipped rule test hides broken alerts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import operator_metrics, tool

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "cronlet" / "rules" / "cronlet-alerts.yaml"
PROMTOOL_TESTS = REPO / "tests" / "promtool" / "cronlet-alerts.test.yaml"
VALUES = REPO / "charts" / "cronlet" / "values.yaml"

SEVERITIES = {"critical", "warning", "info"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, cwd=REPO, check=False)


def load_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.mark.binaries
def test_promtool_check_rules_accepts_the_rule_file() -> None:
    result = run(tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


@pytest.mark.binaries
def test_promtool_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", PROMTOOL_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.binaries
def test_every_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    cases = [
        case
        for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in load_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{rule['alert']}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), (
            f"{rule['alert']}: no case where it is silent"
        )


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for rule in load_rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert "for" in rule, f"{rule['alert']}: give every rule a `for` (the chart overrides it)"


def test_rules_only_use_known_metrics() -> None:
    for rule in load_rules():
        without_strings = re.sub(r'"[^"]*"', "", rule["expr"])
        names = set(re.findall(r"\b(cronlet_[a-z_]+|up)\b", without_strings))
        assert names, rule["alert"]
        known = operator_metrics() | {"up"}
        assert names <= known, f"{rule['alert']}: unknown metrics {names - known}"


def test_rule_file_and_chart_defaults_agree() -> None:
    """values.yaml documents each alert's defaults; the rule file must hold the same ones."""
    settings = yaml.safe_load(VALUES.read_text())["prometheusRule"]["alerts"]
    rules = {rule["alert"]: rule for rule in load_rules()}
    assert set(settings) == set(rules)
    for name, config in settings.items():
        rule = rules[name]
        assert rule["labels"]["severity"] == config["severity"], name
        assert rule["for"] == config["for"], name
        if "threshold" in config:
            match = re.search(r"(?:>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$", rule["expr"].strip())
            assert match, f"{name}: the threshold must be the last token of expr"
            assert float(match.group(1)) == float(config["threshold"]), name


def test_operator_alerts_use_the_job_matcher_the_chart_rewrites() -> None:
    expr = {rule["alert"]: rule["expr"] for rule in load_rules()}["CronletOperatorDown"]
    assert expr.count('job=~".*cronlet.*"') == 2


def test_event_alerts_are_per_sink_and_read_the_leaders_gauge() -> None:
    rules = {rule["alert"]: rule for rule in load_rules()}
    assert {"CronletEventsDropped", "CronletEventsPendingTooLong", "CronletEventSendsFailing"} <= set(rules)
    assert "by (job) (increase(cronlet_events_dropped_total[10m]))" in rules["CronletEventsDropped"]["expr"]
    pending = rules["CronletEventsPendingTooLong"]
    assert pending["expr"].startswith("max by (job, sink) (") and pending["for"] == "5m"
    # A standby sends nothing and a former leader's gauge can be left over: only the leader's counts.
    assert "and on (job, instance) (cronlet_leader == 1)" in pending["expr"]
    refused = rules["CronletEventSendsFailing"]["expr"]
    assert 'by (job, sink) (increase(cronlet_events_failed_total{retryable="false"}[15m]))' in refused
