"""The Grafana dashboard (charts/cronlet/dashboards/cronlet.json): its variables, its data source, the
metrics it shows, and PromQL that Prometheus parses (checked with promtool, from tools/build.sh)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import operator_metrics, tool

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "cronlet" / "dashboards" / "cronlet.json"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_variables_datasource_job_namespace_task() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "task"):
        assert variables[name]["type"] == "query"
        assert variables[name]["definition"].startswith("label_values(")
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panel_ids_are_unique_and_titles_present() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["title"] for panel in dashboard()["panels"])
    assert dashboard()["schemaVersion"] >= 36


def test_every_operator_metric_is_shown_and_no_other() -> None:
    shown = {name for expr in expressions() for name in re.findall(r"\b(cronlet_[a-z_]+|up)\b", expr)}
    exported = operator_metrics()
    assert shown - {"up"} <= exported, f"not exported by the operator: {shown - exported - {'up'}}"
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    missing = {family for family in families if not any(name.startswith(family) for name in shown)}
    assert not missing, f"not on the dashboard: {missing}"
    assert "up" in shown


def test_task_queries_filter_by_the_variables() -> None:
    for expr in expressions():
        for selector in re.findall(
            r"cronlet_(?:runs|attempts|retries|missed_runs|skipped_runs)_total\{([^}]*)\}", expr
        ):
            assert 'namespace=~"$namespace"' in selector and 'task=~"$task"' in selector, expr


@pytest.mark.binaries
def test_queries_parse(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule that promtool must accept."""

    def concrete(expr: str) -> str:
        return (
            expr.replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$namespace", ".*")
            .replace("$task", ".*")
        )

    rules = [
        {"record": f"dashboard:query_{n}", "expr": concrete(expr)} for n, expr in enumerate(expressions())
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_event_panels_show_each_sink_and_only_the_leaders_gauges() -> None:
    """The event metrics carry `sink` and no task labels; only the leader publishes, and a former leader's
    gauges may be left over, so the gauges are read where cronlet_leader is 1."""
    by_title = {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels()}
    events = {title: exprs for title, exprs in by_title.items() if any("cronlet_event" in e for e in exprs)}
    assert set(events) == {
        "Events published / s",
        "Event send failures / s",
        "Events dropped",
        "Events pending",
        "Oldest pending event, age",
        "Event publish latency p50 / p99",
    }
    for title, exprs in events.items():
        for expr in exprs:
            for selector in re.findall(r"cronlet_events?_[a-z_]+\{([^}]*)\}", expr):
                assert selector == 'job=~"$job"', f"{title}: {expr}"
            if "dropped" not in expr:  # the one event metric without a sink label
                assert re.search(r"by \((sink|sink, [a-z, ]+)\)", expr), f"{title}: not per sink: {expr}"
    for title in ("Events pending", "Oldest pending event, age"):
        [expr] = events[title]
        assert expr.endswith('and on (job, instance) (cronlet_leader{job=~"$job"} == 1))'), title
    quantiles = re.findall(
        r"histogram_quantile\((0\.\d+),", " ".join(events["Event publish latency p50 / p99"])
    )
    assert quantiles == ["0.5", "0.99"]
