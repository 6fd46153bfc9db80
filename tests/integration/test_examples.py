"""Every example under examples/ is applied with kubectl and shown to work on the local control plane.

Only what cannot work locally is adjusted: the custom handler's PYTHONPATH points at the example's folder
(instead of /app in an image), and the HTTP example calls a server this test starts on 127.0.0.1.
Long schedules are triggered with the run-now annotation instead of waiting.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit import ROOT, Tasks, outcomes

pytestmark = pytest.mark.cluster
EXAMPLES = ROOT / "examples"


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(f"{self.path} {self.headers.get('Authorization', '')}".strip())
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz", hits
    server.shutdown()


def _apply(docs: list[dict[str, Any]], *, ns: str, kubeconfig: str, kubectl: Path) -> None:
    text = yaml.safe_dump_all(docs)
    subprocess.run(
        [str(kubectl), "--kubeconfig", kubeconfig, "-n", ns, "apply", "-f", "-"],
        input=text,
        text=True,
        check=True,
        capture_output=True,
    )


def _load(folder: str) -> list[dict[str, Any]]:
    return [
        d for f in sorted((EXAMPLES / folder).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d
    ]


def _run_now(doc: dict[str, Any]) -> None:
    doc["metadata"].setdefault("annotations", {})["cronlet.dev/run-now"] = "example-test"


def _succeeded(n: int = 1) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("counters", {}).get("succeeded", 0) >= n


CHECKED = {
    "01-minimal",
    "02-data-processing",
    "03-http",
    "04-retries",
    "05-concurrency",
    "06-time-zone",
    "07-run-now",
    "08-task-events",  # needs the Kafka broker, not the cluster: tests/integration/test_example_task_events.py
}


def test_every_example_folder_has_a_readme_and_a_test() -> None:
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == CHECKED
    assert all((EXAMPLES / f / "README.md").is_file() for f in folders)


def test_01_minimal(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    _apply(_load("01-minimal"), ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    st = tasks.wait_status("hello", _succeeded(2), timeout=30)
    done = next(h for h in st["history"] if h["outcome"] == "Succeeded")  # a late pass may add a Missed entry
    assert "hello from cronlet" in done["message"]


def test_02_data_processing_with_a_custom_handler(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    docs = _load("02-data-processing")
    env = docs[0]["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
    env[0]["value"] = str(EXAMPLES / "02-data-processing" / "handler")
    _run_now(docs[0])
    _apply(docs, ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    st = tasks.wait_status("data-processing", _succeeded(), timeout=30)
    assert st["history"][0]["message"] == "processed 100 rows from orders"
    job = tasks.jobs("data-processing")[0]
    container = job.spec.template.spec.containers[0]
    assert container.image == "registry.example.com/acme/cronlet-handlers:1.0"
    assert container.resources.limits == {"memory": "256Mi"}
    assert job.spec.active_deadline_seconds == 900


def test_03_http(
    tasks: Tasks, kubeconfig: str, cluster_bin: Path, http_server: tuple[str, list[str]]
) -> None:
    url, hits = http_server
    docs = _load("03-http")
    docs[0]["spec"]["parameters"]["url"] = url
    _run_now(docs[0])
    _apply(docs, ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    tasks.wait_status("ping-service", _succeeded(), timeout=30)
    assert "/healthz Bearer replace-me" in hits  # the token came from the Secret, not from parameters


def test_04_retries(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    docs = _load("04-retries")
    _run_now(docs[0])
    _apply(docs, ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    st = tasks.wait_status(
        "flaky",
        lambda s: any(h["outcome"] == "Succeeded" and h["attempts"] == 3 for h in s.get("history") or []),
        timeout=60,
    )
    assert st["counters"]["retries"] >= 2


def test_05_concurrency(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    _apply(_load("05-concurrency"), ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    tasks.wait_status("slow-forbid", lambda s: "Skipped" in outcomes(s), timeout=30)
    tasks.wait_status("slow-replace", lambda s: "Replaced" in outcomes(s), timeout=30)


def test_06_time_zone(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    docs = _load("06-time-zone")
    _run_now(docs[0])
    _apply(docs, ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    st = tasks.wait_status("berlin-morning-report", _succeeded(), timeout=30)
    assert st["nextRunTime"][11:16] in ("07:30", "08:30")  # 09:30 Berlin in summer / winter


def test_07_run_now(tasks: Tasks, kubeconfig: str, cluster_bin: Path) -> None:
    _apply(_load("07-run-now"), ns=tasks.ns, kubeconfig=kubeconfig, kubectl=cluster_bin / "kubectl")
    tasks.wait_status("on-demand", lambda s: s.get("phase") == "Scheduled", timeout=20)
    subprocess.run(
        [
            str(cluster_bin / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "-n",
            tasks.ns,
            "annotate",
            "st",
            "on-demand",
            "cronlet.dev/run-now=now-1",
            "--overwrite",
        ],
        check=True,
        capture_output=True,
    )
    st = tasks.wait_status("on-demand", _succeeded(), timeout=30)
    assert st["lastRunNowToken"] == "now-1"
