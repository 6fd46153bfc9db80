"""A real Prometheus scrapes the shared operator: the chart's alert rules and dashboard queries run on live data.

Prometheus (the ``prometheus`` binary from tools/build.sh) listens on 127.0.0.1, scrapes the operator's
/metrics every second under the job name ``cronlet`` (what CronletOperatorDown matches and a ServiceMonitor of
a release named ``cronlet`` produces) and evaluates charts/cronlet/rules/cronlet-alerts.yaml every second.
Three tasks give the metrics something to count: one succeeding every 2 s, one failed once by run-now
(retries exhausted at once) and one failing every 2 s. The rules and queries are checked with promtool in
tests/unit; here they meet the metrics the operator really exports.

One Prometheus and one set of tasks serve the whole module (module-scoped fixture): the tests only read.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import wait_for
from kit import ROOT, OperatorProcess, Tasks
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localkube import binaries
from localkube.ports import free_port

pytestmark = pytest.mark.cluster

RULES = ROOT / "charts" / "cronlet" / "rules" / "cronlet-alerts.yaml"
DASHBOARD = ROOT / "charts" / "cronlet" / "dashboards" / "cronlet.json"
JOB = "cronlet"
Sample = dict[str, Any]  # one element of a vector result: {"metric": {...}, "value": [time, "text"]}


class PromQLError(AssertionError):
    """Prometheus answered with status "error" (a query that does not parse or cannot be evaluated)."""


@dataclass(frozen=True)
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400 and 422 carry the reason as JSON
            text = error.read()
            try:
                body = json.loads(text)
            except ValueError:
                raise AssertionError(f"{path} {params}: HTTP {error.code}: {text[:500]!r}") from error
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Sample]:
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/alerts")["alerts"])


@dataclass(frozen=True)
class Scenario:
    prometheus: Prometheus
    namespace: str


def value(sample: Sample) -> float:
    return float(sample["value"][1])


def rule_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def alert_rules() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in rule_file()["groups"] for rule in group["rules"]}


def dashboard_panels() -> list[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    return [panel for panel in walk(json.loads(DASHBOARD.read_text())["panels"]) if panel.get("targets")]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every dashboard target."""
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]


def concrete(expr: str, namespace: str) -> str:
    """A dashboard query with Grafana's variables filled in as a user looking at the test namespace would."""
    for variable, text in (
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("${namespace}", namespace),
        ("$namespace", namespace),
        ("${task}", ".*"),
        ("$task", ".*"),
        ("${job}", JOB),
        ("$job", JOB),
    ):
        expr = expr.replace(variable, text)
    assert "$" not in expr, f"a variable is left: {expr}"
    return expr


def write_config(directory: Path, *, target: str) -> Path:
    path = directory / "prometheus.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        # As the chart's ServiceMonitor (honorLabels: true): the metrics' own `namespace` label stays.
                        "honor_labels": True,
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def scenario(kube: client.ApiClient, operator_process: OperatorProcess) -> Iterator[Scenario]:
    """Tasks in a fresh namespace, the shared operator running, and a Prometheus scraping it."""
    operator_process.start()  # no-op when running; a test of another module may have stopped it
    core = client.CoreV1Api(kube)
    namespace = f"t-prometheus-{free_port()}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=namespace, labels={"localkube.dev/test": "true"})
        )
    )
    directory = Path(tempfile.mkdtemp(prefix="cronlet-prometheus-"))
    process: subprocess.Popen[bytes] | None = None
    log = directory / "prometheus.log"
    try:
        tasks = Tasks(kube, namespace)
        tasks.create("ticker", {"schedule": "*/2 * * * * *", "handler": "echo"})
        tasks.create("doomed", {"schedule": "@yearly", "handler": "fail", "maxRetries": 0})
        tasks.create("flapping", {"schedule": "*/2 * * * * *", "handler": "fail", "maxRetries": 0})

        port = free_port()
        config = write_config(directory, target=f"127.0.0.1:{operator_process.port}")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    str(binaries.find("prometheus")),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                cwd=directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        prometheus = Prometheus(f"http://127.0.0.1:{port}")

        def ready() -> bool:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited {process.returncode}:\n{log.read_text(errors='replace')}"
                )
            try:
                with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:  # not listening yet, or 503 while it loads
                return False

        wait_for(ready, timeout=60, message="Prometheus ready (/-/ready)")
        wait_for(
            lambda: [s for s in prometheus.query(f'up{{job="{JOB}"}}') if value(s) == 1],
            timeout=30,
            message="Prometheus scraped the operator (up == 1)",
        )
        # doomed fails once, by run-now, only after Prometheus has seen its Failed counter at 0: the alert on
        # a task's first failure depends on that (a counter born at 1 has no increase).
        failed = f'cronlet_runs_total{{namespace="{namespace}", task="doomed", outcome="Failed"}}'
        wait_for(
            lambda: [s for s in prometheus.query(failed) if value(s) == 0],
            timeout=30,
            message="doomed's Failed counter scraped at 0",
        )
        tasks.annotate("doomed", {"cronlet.dev/run-now": "now"})
        tasks.wait_status("doomed", lambda s: s.get("phase") == "Failed", timeout=30)
        yield Scenario(prometheus=prometheus, namespace=namespace)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)
        try:
            core.delete_namespace(namespace)
        except ApiException as error:
            if error.status != 404:
                raise


# --- The alert rules load and evaluate on the operator's metrics -------------------------------------


def test_rule_groups_are_loaded_and_every_rule_evaluates_healthy(scenario: Scenario) -> None:
    expected = {
        group["name"]: sorted(rule["alert"] for rule in group["rules"]) for group in rule_file()["groups"]
    }

    def loaded() -> dict[str, list[dict[str, Any]]]:
        groups = scenario.prometheus.api("/api/v1/rules", type="alert")["groups"]
        return {group["name"]: group["rules"] for group in groups}

    def all_evaluated() -> bool:
        # A rule is "unknown" until its first evaluation.
        return all(rule["health"] != "unknown" for rules in loaded().values() for rule in rules)

    wait_for(all_evaluated, timeout=30, message="every rule evaluated once")
    groups = loaded()
    assert {name: sorted(rule["name"] for rule in rules) for name, rules in groups.items()} == expected
    unhealthy = {
        rule["name"]: (rule["health"], rule.get("lastError"))
        for rules in groups.values()
        for rule in rules
        if rule["health"] != "ok" or rule.get("lastError")
    }
    assert not unhealthy


@pytest.mark.parametrize("alert", sorted(alert_rules()))
def test_alert_expression_evaluates_through_the_query_api(scenario: Scenario, alert: str) -> None:
    scenario.prometheus.query(alert_rules()[alert])  # PromQLError on a parse or evaluation error


def test_operator_down_alert_matches_the_scrape_job_and_stays_silent(scenario: Scenario) -> None:
    expr = alert_rules()["CronletOperatorDown"]
    matchers = set(re.findall(r'up\{(job=~"[^"]*")\}', expr))
    assert len(matchers) == 1, expr
    (matcher,) = matchers
    # One scrape slower than the 1 s timeout on a loaded machine reads up 0 for a second: wait for a good one.
    wait_for(
        lambda: (
            [(s["metric"]["job"], value(s)) for s in scenario.prometheus.query(f"up{{{matcher}}}")]
            == [(JOB, 1.0)]
        ),
        timeout=15,
        message=lambda: f"up{{{matcher}}} = 1 for the one job {JOB}",
    )
    wait_for(lambda: scenario.prometheus.query(expr) == [], timeout=15, message=f"{expr} returns nothing")
    # Rules may have been evaluated before the first scrape (absent(up) was true then: pending, for 5m);
    # the next evaluation after it clears that.
    wait_for(
        lambda: "CronletOperatorDown" not in {a["labels"]["alertname"] for a in scenario.prometheus.alerts()},
        timeout=10,
        message="CronletOperatorDown not active",
    )


def _active(scenario: Scenario, alertname: str) -> dict[str, str]:
    """Task -> state of ``alertname``'s alerts about the test namespace."""
    return {
        a["labels"]["task"]: a["state"]
        for a in scenario.prometheus.alerts()
        if a["labels"]["alertname"] == alertname and a["labels"].get("namespace") == scenario.namespace
    }


@pytest.mark.parametrize("alertname", ["CronletRetriesExhausted", "CronletTaskFailingRepeatedly"])
def test_task_failure_alert_fires_for_a_task_that_keeps_failing(scenario: Scenario, alertname: str) -> None:
    wait_for(
        lambda: _active(scenario, alertname).get("flapping") == "firing",
        timeout=60,
        message=f"{alertname} firing for flapping",
    )
    assert "ticker" not in _active(scenario, alertname)


def test_a_tasks_first_failed_run_fires_retries_exhausted(scenario: Scenario) -> None:
    # The operator creates a task's counters at 0 when it first sees the task (the fixture checks that
    # Prometheus saw 0 before the run), so the first failure is an increase that increase() sees.
    wait_for(
        lambda: _active(scenario, "CronletRetriesExhausted").get("doomed") == "firing",
        timeout=60,
        message="CronletRetriesExhausted firing for doomed's first (and only) failed run",
    )


# --- The dashboard's queries evaluate, and its core panels show data -------------------------------


@pytest.mark.parametrize(
    ("panel", "expr"), dashboard_queries(), ids=[title for title, _ in dashboard_queries()]
)
def test_dashboard_query_evaluates(scenario: Scenario, panel: str, expr: str) -> None:
    scenario.prometheus.query(
        concrete(expr, scenario.namespace)
    )  # PromQLError on a parse or evaluation error


def _labels(samples: list[Sample], label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): value(s) for s in samples}


CORE_PANELS: dict[str, Callable[[list[Sample]], bool]] = {
    "Operator up": lambda r: [value(s) for s in r] == [1.0],
    "Operator ready": lambda r: [value(s) for s in r] == [1.0],
    "Runs by outcome": lambda r: {"Succeeded", "Failed"} <= set(_labels(r, "outcome")),
    # Finite: runs every 2 s give the lag histogram a rate, so the quantile is a number, not NaN.
    "Schedule lag p50 / p99": lambda r: len(r) == 1 and math.isfinite(value(r[0])) and value(r[0]) >= 0,
    # doomed stays Failed until next year.
    "Tasks by phase": lambda r: _labels(r, "phase").get("Failed", 0) >= 1,
    "Active runs": lambda r: len(r) >= 1 and all(value(s) >= 0 for s in r),
}


@pytest.mark.parametrize("title", sorted(CORE_PANELS))
def test_core_panel_shows_the_test_namespaces_data(scenario: Scenario, title: str) -> None:
    targets = [
        (panel["type"], target["refId"], target["expr"])
        for panel in dashboard_panels()
        if panel["title"] == title
        for target in panel["targets"]
    ]
    assert targets, f"no panel titled {title!r}"
    for kind, ref, expr in targets:
        query = concrete(expr, scenario.namespace)
        results: list[Sample] = []

        def shows(query: str = query) -> bool:
            nonlocal results
            results = scenario.prometheus.query(query)
            return CORE_PANELS[title](results)

        wait_for(shows, timeout=60, message=f"{title} ({kind} {ref}) showing data: {query}")
