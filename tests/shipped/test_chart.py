"""The Helm chart (charts/cronlet): lints strictly, renders the right resources for each mode, keeps
least-privilege RBAC and secure pod settings, rejects unknown values, and documents every value.

helm comes from tools/build.sh (into $CRONLET_BIN, default ~/.cache/cronlet/bin). Without it the helm
tests fail rather than skip: CI builds the tools first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localkube import binaries
from localkube import node as localkube_node

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "cronlet"
RELEASE = "cronlet"  # so the full name is just "cronlet"
NAMESPACE = "cronlet-system"

EXPECTED_RBAC_RULES = [
    {"apiGroups": ["cronlet.dev"], "resources": ["scheduledtasks"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["cronlet.dev"],
        "resources": ["scheduledtasks/status"],
        "verbs": ["patch"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "create", "patch"]},
]


# What the Deployment gives the operator for leader election, by default.
LIMIT_ENV = [
    {"name": "CRONLET_KUBE_API_QPS", "value": "100"},
    {"name": "CRONLET_KUBE_API_BURST", "value": "2000"},
]
ELECTION_ENV = [
    {"name": "CRONLET_LEADER_ELECT", "value": "true"},
    {"name": "CRONLET_LEADER_ELECT_LEASE_DURATION", "value": "15s"},
    {"name": "CRONLET_LEADER_ELECT_RENEW_DEADLINE", "value": "10s"},
    {"name": "CRONLET_LEADER_ELECT_RETRY_PERIOD", "value": "2s"},
    {"name": "CRONLET_LEADER_ELECT_RESOURCE_NAME", "value": "cronlet"},
    {"name": "CRONLET_LEADER_ELECT_RESOURCE_NAMESPACE", "value": NAMESPACE},
    {"name": "CRONLET_LEADER_ELECT_IDENTITY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
]


EVENTS_MOUNTS = "/etc/cronlet/events"

# Every events value set: Kafka over SASL_SSL with a client certificate, and HTTP with a headers Secret.
ALL_EVENTS = [
    "--set",
    "events.kafka.bootstrapServers={kafka-0.messaging:9093,kafka-1.messaging:9093},"
    "events.kafka.topic=platform.task-events,events.kafka.contentMode=structured,"
    "events.kafka.securityProtocol=SASL_SSL,events.kafka.saslMechanism=SCRAM-SHA-512,"
    "events.kafka.existingSecret=cronlet-kafka,events.kafka.tlsSecret=cronlet-kafka-tls,"
    "events.http.url=https://events.example.com/cronlet,events.http.contentMode=structured,"
    "events.http.headersSecret=cronlet-events-http,events.outbox.maxEntries=200,events.outbox.maxBytes=65536",
]


def tool(name: str) -> Path:
    """A binary built by tools/build.sh; fails the test (not skips) when it is missing."""
    try:
        return binaries.find(name)
    except binaries.MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("helm")), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        # Keep helm away from the user's repositories, plugins and cache.
        env={
            **os.environ,
            "HELM_CACHE_HOME": "/nonexistent-cache",
            "HELM_CONFIG_HOME": "/nonexistent-config",
        },
    )


def render(*args: str) -> list[dict[str, Any]]:
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "Pod":
            yield doc["metadata"]["name"], spec
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec and "spec" in spec["template"]:
            yield doc["metadata"]["name"], spec["template"]["spec"]


# --- lint and modes --------------------------------------------------------------------------------


@pytest.mark.binaries
@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "namespaces={team-a,team-b}"],
        ["--set", "serviceMonitor.forceEnable=true,prometheusRule.forceEnable=true,dashboard.enabled=true"],
        [
            "--set",
            "events.kafka.bootstrapServers={kafka:9093},events.kafka.securityProtocol=SASL_SSL,"
            "events.kafka.saslMechanism=PLAIN,events.kafka.existingSecret=k,events.kafka.tlsSecret=t,"
            "events.http.url=https://e.example/x,events.http.headersSecret=h",
        ],
    ],
    ids=["defaults", "namespaced", "monitoring", "events"],
)
def test_helm_lint_strict(values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.binaries
def test_defaults_render_a_cluster_wide_operator() -> None:
    docs = render()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRole",  # aggregated into view/edit/admin
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "PodDisruptionBudget",
            "Role",  # leader election, in the release namespace
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cronlet",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cronlet", "namespace": NAMESPACE}]


@pytest.mark.binaries
def test_namespaces_give_a_role_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render("--set", "namespaces={team-a,team-b}")
    # Nothing cluster-wide for the operator; only the users' roles aggregated into view/edit/admin.
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == ["cronlet-view", "cronlet-edit"]
    assert not of_kind(docs, "ClusterRoleBinding")
    task_roles = [r for r in of_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    assert sorted(role["metadata"]["namespace"] for role in task_roles) == ["team-a", "team-b"]
    bindings = [
        b for b in of_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cronlet", "namespace": NAMESPACE}]
    env = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "CRONLET_NAMESPACE", "value": "team-a,team-b"} in env


@pytest.mark.binaries
def test_deployment_runs_two_electing_replicas_with_probes_on_the_metrics_port() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "cronlet:0.1.0"
    assert container["command"] == ["cronlet"]
    assert container["args"] == ["operator"]
    assert container["env"] == [
        {"name": "CRONLET_EXECUTOR_IMAGE", "value": "cronlet:0.1.0"},
        {"name": "CRONLET_METRICS_PORT", "value": "8080"},
        {"name": "CRONLET_LOG_FORMAT", "value": "json"},
        {"name": "CRONLET_PER_TASK_METRICS", "value": "true"},
        {"name": "CRONLET_PER_TASK_METRICS_LIMIT", "value": "1000"},
        *LIMIT_ENV,
        *ELECTION_ENV,
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # Measured defaults (tools/bench_scale.py); no CPU limit, since throttling would delay runs.
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


@pytest.mark.binaries
def test_values_reach_the_operator_environment() -> None:
    docs = render(
        "--set",
        "image.repository=registry.example.com/cronlet,image.tag=1.2.3,executorImage=handlers:9,"
        "metrics.port=9090,metrics.perTaskMetrics=false,metrics.perTaskMetricsLimit=50,logFormat=text",
        "--set-string",
        "extraEnv[0].name=CRONLET_WORKERS,extraEnv[0].value=8",
    )
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/cronlet:1.2.3"
    assert container["env"] == [
        {"name": "CRONLET_EXECUTOR_IMAGE", "value": "handlers:9"},
        {"name": "CRONLET_METRICS_PORT", "value": "9090"},
        {"name": "CRONLET_LOG_FORMAT", "value": "text"},
        {"name": "CRONLET_PER_TASK_METRICS", "value": "false"},
        {"name": "CRONLET_PER_TASK_METRICS_LIMIT", "value": "50"},
        *LIMIT_ENV,
        *ELECTION_ENV,
        {"name": "CRONLET_WORKERS", "value": "8"},
    ]
    assert container["ports"][0]["containerPort"] == 9090
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9090


@pytest.mark.binaries
def test_operator_cli_reads_the_environment_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart configures the operator only through CRONLET_* variables, which the CLI would ignore
    silently if it did not read them: parse them with the real CLI."""
    from cronlet._cli import operator as cli

    docs = render(
        "--set",
        "namespaces={team-a,team-b},executorImage=handlers:9,metrics.port=9090,"
        "metrics.perTaskMetrics=false,logFormat=text,kubeApi.qps=50,kubeApi.burst=500",
    )
    for variable in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in variable:  # filled in by the kubelet: the pod's name
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            monkeypatch.setenv(variable["name"], "cronlet-abc-123")
            continue
        monkeypatch.setenv(variable["name"], variable["value"])
    args = cli.parser().parse_args(["operator"])
    assert args.leader_elect is True
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline) == (15.0, 10.0)
    assert args.leader_elect_retry_period == 2.0
    assert args.leader_elect_resource_name == RELEASE
    assert args.leader_elect_resource_namespace == NAMESPACE
    assert args.leader_elect_identity == "cronlet-abc-123"
    assert (args.namespace or args.env_namespaces) == ["team-a", "team-b"]
    assert args.executor_image == "handlers:9"
    assert args.metrics_port == 9090
    assert args.per_task_metrics is False
    assert args.per_task_metrics_limit == 1000
    assert args.log_format == "text"
    assert (args.kube_api_qps, args.kube_api_burst) == (50.0, 500)


# --- monitoring ----------------------------------------------------------------------------------


@pytest.mark.binaries
def test_servicemonitor_absent_by_default_present_when_forced() -> None:
    assert not of_kind(render(), "ServiceMonitor")
    monitor = one(render("--set", "serviceMonitor.forceEnable=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "interval": "30s",
            "scrapeTimeout": "10s",
            "honorLabels": True,
        }
    ]
    assert not of_kind(
        render("--set", "serviceMonitor.forceEnable=true,serviceMonitor.enabled=false"), "ServiceMonitor"
    )


@pytest.mark.binaries
def test_servicemonitor_and_rule_follow_the_cluster_apis() -> None:
    docs = render(
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
    )
    assert one(docs, "ServiceMonitor")
    assert one(docs, "PrometheusRule")


@pytest.mark.binaries
def test_prometheusrule_defaults_are_the_rule_file() -> None:
    rule = one(render("--set", "prometheusRule.forceEnable=true"), "PrometheusRule")
    source = (CHART / "rules" / "cronlet-alerts.yaml").read_text()
    expected = yaml.safe_load(source.replace('job=~".*cronlet.*"', 'job=~"cronlet"'))["groups"]
    rendered = rule["spec"]["groups"]
    for group in expected + rendered:  # a replaced threshold drops the block scalar's final newline
        for each in group["rules"]:
            each["expr"] = each["expr"].strip()
    assert rendered == expected


@pytest.mark.binaries
def test_prometheusrule_values_adjust_the_alerts() -> None:
    rule = one(
        render(
            "--set",
            "prometheusRule.forceEnable=true,prometheusRule.operatorJobRegex=ops/cronlet.*,"
            "prometheusRule.alerts.CronletScheduleLagHigh.for=30m,"
            "prometheusRule.alerts.CronletRetriesExhausted.severity=info,"
            "prometheusRule.alerts.CronletMissedRuns.enabled=false",
            "--set-json",
            "prometheusRule.alerts.CronletScheduleLagHigh.threshold=12.5",
        ),
        "PrometheusRule",
    )
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert "CronletMissedRuns" not in rules
    assert rules["CronletScheduleLagHigh"]["expr"].strip().endswith("> 12.5")
    assert rules["CronletScheduleLagHigh"]["for"] == "30m"
    assert rules["CronletRetriesExhausted"]["labels"]["severity"] == "info"
    assert rules["CronletOperatorDown"]["expr"].count('job=~"ops/cronlet.*"') == 2


@pytest.mark.binaries
def test_rendered_rules_with_overrides_pass_promtool(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "prometheusRule": {
                    "forceEnable": True,
                    "operatorJobRegex": "monitoring/cronlet-.*",
                    "alerts": {
                        "CronletTaskFailingRepeatedly": {"threshold": 5},
                        "CronletScheduleLagHigh": {"threshold": 2.5},
                        "CronletMissedRuns": {"threshold": 1},
                    },
                }
            }
        )
    )
    rule = one(render("--values", str(values)), "PrometheusRule")
    rule_file = tmp_path / "rendered.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", "--lint=all", "--lint-fatal", str(rule_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exprs = {r["alert"]: r["expr"].strip() for group in rule["spec"]["groups"] for r in group["rules"]}
    assert exprs["CronletTaskFailingRepeatedly"].endswith(">= 5")
    assert exprs["CronletMissedRuns"].endswith("> 1")


@pytest.mark.binaries
def test_dashboard_configmap_carries_the_dashboard() -> None:
    assert not of_kind(render(), "ConfigMap")
    configmap = one(render("--set", "dashboard.enabled=true,dashboard.namespace=monitoring"), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    shipped = json.loads((CHART / "dashboards" / "cronlet.json").read_text())
    assert json.loads(configmap["data"]["cronlet.json"]) == shipped


# --- CRD -----------------------------------------------------------------------------------------


def test_chart_crd_is_a_byte_equal_copy_of_crds() -> None:
    source = REPO / "crds" / "scheduledtasks.cronlet.dev.yaml"
    copy = CHART / "files" / "scheduledtasks.cronlet.dev.yaml"
    assert copy.read_bytes() == source.read_bytes(), (
        "charts/cronlet/files/scheduledtasks.cronlet.dev.yaml is out of date: "
        "cp crds/scheduledtasks.cronlet.dev.yaml charts/cronlet/files/"
    )


@pytest.mark.binaries
def test_crd_is_rendered_with_keep_policy_and_can_be_left_out() -> None:
    crd = one(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    source = yaml.safe_load((CHART / "files" / "scheduledtasks.cronlet.dev.yaml").read_text())
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["spec"] == source["spec"]
    assert not of_kind(render("--set", "crds.install=false"), "CustomResourceDefinition")


# --- security ------------------------------------------------------------------------------------


@pytest.mark.binaries
@pytest.mark.parametrize("values", [[], ["--set", "namespaces={team-a}"]], ids=["cluster", "namespaced"])
def test_rbac_is_least_privilege(values: list[str]) -> None:
    docs = render(*values)
    roles = of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
    roles = [r for r in roles if not r["metadata"]["name"].endswith(("-view", "-edit"))]  # users', below
    election = [r for r in roles if r["metadata"]["name"].endswith("-leader-election")]
    roles = [r for r in roles if r not in election]
    assert roles
    # Leader election: the one Lease, in the release namespace only.
    assert [r["metadata"]["namespace"] for r in election] == [NAMESPACE]
    assert election[0]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [RELEASE],
            "verbs": ["get", "update"],
        },
    ]
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['kind']} has * in {field}: {rule}"
            assert "resourceNames" not in rule or rule["resourceNames"]
        assert role["rules"] == EXPECTED_RBAC_RULES


@pytest.mark.binaries
@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "serviceMonitor.forceEnable=true,prometheusRule.forceEnable=true,dashboard.enabled=true"],
        ALL_EVENTS,
    ],
    ids=["defaults", "everything", "events"],
)
def test_every_container_has_the_secure_security_context(values: list[str]) -> None:
    specs = list(pod_specs(render(*values)))
    assert specs
    for name, spec in specs:
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, name
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container.get("securityContext", {})
            label = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot") is True, label
            assert context.get("runAsUser") == 65532, label
            assert context.get("readOnlyRootFilesystem") is True, label
            assert context.get("allowPrivilegeEscalation") is False, label
            assert context.get("capabilities", {}).get("drop") == ["ALL"], label
            assert context.get("seccompProfile", pod_context.get("seccompProfile")) == {
                "type": "RuntimeDefault"
            }
            assert not context.get("privileged", False), label


# --- values and schema ---------------------------------------------------------------------------


@pytest.mark.binaries
@pytest.mark.parametrize(
    "setting",
    [
        "nosuchkey=1",
        "image.reposiotry=typo",
        "serviceMonitor.intervall=15s",
        "prometheusRule.alerts.CronletMissedRuns.treshold=2",
        "prometheusRule.alerts.NoSuchAlert.enabled=false",
        "securityContext.runAsNonroot=true",
        "events.kafka.bootstrapServer=kafka:9092",
        "events.http.headers=Authorization",
        "events.kafka.password=hunter2",
    ],
)
def test_unknown_value_keys_are_rejected(setting: str) -> None:
    result = helm("template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "additional properties" in result.stderr.lower() or "additionalproperties" in result.stderr.lower()


@pytest.mark.binaries
@pytest.mark.parametrize(
    "setting",
    [
        "logFormat=xml",
        "metrics.port=80",
        "image.pullPolicy=Sometimes",
        "prometheusRule.alerts.CronletScheduleLagHigh.threshold=120",
        "namespaces={Not_A_Namespace}",
        "events.kafka.bootstrapServers={kafka}",
        "events.kafka.contentMode=avro",
        "events.kafka.securityProtocol=TLS",
        "events.kafka.saslMechanism=GSSAPI",
        "events.kafka.existingSecret=Not_A_Secret",
        "events.http.url=ftp://files.example.com/",
        "events.outbox.maxEntries=0",
    ],
)
def test_invalid_values_are_rejected(setting: str) -> None:
    result = helm("template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0, f"{setting} was accepted"


def test_schema_is_closed_at_every_level() -> None:
    """Every object the chart defines has additionalProperties: false; only string maps (labels,
    annotations, nodeSelector) and Kubernetes pass-through objects stay open."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = {
        "global",
        "affinity.nodeAffinity",
        "affinity.podAffinity",
        "affinity.podAntiAffinity",
        "extraEnv[].valueFrom",
    }

    def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield path, node
        for key, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}{{}}")

    for path, node in walk(schema, ""):
        if node.get("type") != "object" or path in open_objects:
            continue
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path or '<root>'}: additionalProperties must be false"
        else:
            assert isinstance(extra, dict), f"{path}: a free-form object must type its values"


def test_every_value_is_preceded_by_a_comment_with_an_example() -> None:
    """Every key has a comment right above it; every leaf value's comment shows an example (a parent's
    example is in its children's comments)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    content = [(n, line) for n, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")]
    for index, (number, line) in enumerate(content):
        match = key.match(line)
        if not match:
            continue
        indent, _, rest = match.groups()
        following = content[index + 1][1] if index + 1 < len(content) else ""
        is_parent = not rest.strip() and len(following) - len(following.lstrip()) > len(indent)
        comment: list[str] = []
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.insert(0, lines[above])
            above -= 1
        assert comment, f"values.yaml:{number + 1}: {line.strip()!r} has no comment above it"
        if not is_parent:
            assert any("Example" in text for text in comment), f"values.yaml:{number + 1}: no example"


def test_every_values_key_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            assert key in node["properties"], f"{path}{key} is not in values.schema.json"
            check(child, node["properties"][key], f"{path}{key}.")

    check(values, schema, "")


@pytest.mark.binaries
def test_a_disruption_budget_keeps_one_replica_and_one_replica_needs_no_election() -> None:
    budget = one(render(), "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    single = render("--set", "replicaCount=1,leaderElection.enabled=false")
    assert of_kind(single, "PodDisruptionBudget") == []
    deployment = one(single, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CRONLET_LEADER_ELECT"] == "false" and "CRONLET_LEADER_ELECT_IDENTITY" not in env
    assert not [r for r in of_kind(single, "Role") if r["metadata"]["name"].endswith("-leader-election")]


@pytest.mark.binaries
def test_two_replicas_without_election_are_refused() -> None:
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "leaderElection.enabled=false"
    )
    assert result.returncode != 0
    assert "needs leaderElection.enabled" in result.stderr


@pytest.mark.binaries
def test_users_roles_aggregate_into_view_edit_and_admin_and_never_write_status() -> None:
    roles = {r["metadata"]["name"]: r for r in of_kind(render(), "ClusterRole")}
    view, edit = roles["cronlet-view"], roles["cronlet-edit"]
    labels = "rbac.authorization.k8s.io/aggregate-to-{}"
    assert all(view["metadata"]["labels"][labels.format(r)] == "true" for r in ("view", "edit", "admin"))
    assert all(edit["metadata"]["labels"][labels.format(r)] == "true" for r in ("edit", "admin"))
    assert labels.format("view") not in edit["metadata"]["labels"]
    assert view["rules"] == [
        {
            "apiGroups": ["cronlet.dev"],
            "resources": ["scheduledtasks", "scheduledtasks/status"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert edit["rules"][0]["resources"] == ["scheduledtasks"]  # not scheduledtasks/status
    assert not [
        r
        for r in of_kind(render("--set", "aggregatedRoles.enabled=false"), "ClusterRole")
        if r["metadata"]["name"].endswith(("-view", "-edit"))
    ]


@pytest.mark.binaries
def test_host_network_stops_a_replica_before_its_successor_and_keeps_cluster_dns() -> None:
    default = one(render(), "Deployment")["spec"]
    assert "hostNetwork" not in default["template"]["spec"]
    assert "dnsPolicy" not in default["template"]["spec"]
    deployment = one(render("--set", "hostNetwork=true"), "Deployment")["spec"]
    assert deployment["template"]["spec"]["hostNetwork"] is True
    assert deployment["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"
    # A surge pod would need the port its predecessor holds on the same node.
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    single = one(
        render("--set", "hostNetwork=true,replicaCount=1,leaderElection.enabled=false"), "Deployment"
    )
    assert single["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.binaries
def test_api_server_endpoint_sets_the_in_cluster_configuration_and_needs_a_port() -> None:
    def env(*args: str) -> dict[str, Any]:
        container = one(render(*args), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "KUBERNETES_SERVICE_HOST" not in env()
    set_env = env("--set", "apiServer.host=127.0.0.1,apiServer.port=6443")
    assert set_env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert set_env["KUBERNETES_SERVICE_PORT"] == "6443"
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "apiServer.host=127.0.0.1"
    )
    assert result.returncode != 0
    assert "apiServer.port is required with apiServer.host" in result.stderr


@pytest.mark.binaries
def test_local_values_place_one_host_network_replica_on_the_real_node() -> None:
    local = str(CHART / "ci" / "local-values.yaml")
    assert helm("template", RELEASE, str(CHART), "-f", local).returncode != 0  # the port is per cluster
    lint = helm("lint", "--strict", str(CHART), "-f", local, "--set", "apiServer.port=6443")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    spec = one(render("-f", local, "--set", "apiServer.port=6443"), "Deployment")["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]["spec"]
    # Exactly what localkube gives a pod that must run on its dedicated real node.
    placement = localkube_node.placement()
    assert pod["nodeSelector"] == placement["nodeSelector"]
    assert pod["tolerations"] == placement["tolerations"]
    assert pod["hostNetwork"] is True
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")
    assert env["CRONLET_LEADER_ELECT"] == "true"


NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}


@pytest.mark.binaries
def test_tenancy_values_reach_the_operator_and_only_a_namespace_selector_reads_namespaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cronlet._cli import operator as cli

    default = render()
    env = one(default, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not [v for v in env if v["name"].startswith(("CRONLET_ALLOWED", "CRONLET_POD_TEMPLATE"))]
    assert all(NAMESPACES_RULE not in r["rules"] for r in of_kind(default, "ClusterRole"))
    docs = render(
        "--set",
        "tenancy.allowedServiceAccounts={reporter,team-a/etl}",
        "--set-string",
        "tenancy.podTemplateNamespaceSelector.cronlet\\.dev/allow-pod-template=true",
    )
    env = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    ours = {v["name"]: v["value"] for v in env if "value" in v}
    assert ours["CRONLET_ALLOWED_SERVICE_ACCOUNTS"] == "reporter,team-a/etl"
    assert ours["CRONLET_POD_TEMPLATE_NAMESPACE_SELECTOR"] == "cronlet.dev/allow-pod-template=true"
    for name, value in ours.items():
        monkeypatch.setenv(name, value)
    args = cli.parser().parse_args(["operator"])
    assert args.allowed_service_accounts == frozenset({"reporter", "team-a/etl"})
    assert args.pod_template_namespace_selector == {"cronlet.dev/allow-pod-template": "true"}
    operator_role = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == RELEASE)
    assert operator_role["rules"] == [*EXPECTED_RBAC_RULES, NAMESPACES_RULE]


@pytest.mark.binaries
def test_a_namespaced_operator_with_a_namespace_selector_gets_a_cluster_role_for_namespaces_only() -> None:
    docs = render(
        "--set",
        "namespaces={team-a}",
        "--set-string",
        "tenancy.podTemplateNamespaceSelector.tier=trusted",
    )
    operator_role = next(r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == RELEASE)
    assert operator_role["rules"] == [NAMESPACES_RULE]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == RELEASE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


# --- task events ---------------------------------------------------------------------------------


def operator_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def events_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    env = operator_pod(docs)["containers"][0]["env"]
    return {
        v["name"]: v.get("value", v.get("valueFrom")) for v in env if v["name"].startswith("CRONLET_EVENTS_")
    }


@pytest.mark.binaries
@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "events.kafka.topic=other,events.kafka.securityProtocol=SSL,events.http.headersSecret=h"],
    ],
    ids=["defaults", "settings-without-a-sink"],
)
def test_no_sink_sets_no_event_option_and_mounts_nothing(values: list[str]) -> None:
    pod = operator_pod(render(*values))
    assert events_env(render(*values)) == {}
    assert "volumes" not in pod
    assert "volumeMounts" not in pod["containers"][0]


@pytest.mark.binaries
def test_event_values_reach_the_operator_with_credentials_from_secrets_only() -> None:
    docs = render(*ALL_EVENTS)
    assert events_env(docs) == {
        "CRONLET_EVENTS_KAFKA_BOOTSTRAP_SERVERS": "kafka-0.messaging:9093,kafka-1.messaging:9093",
        "CRONLET_EVENTS_KAFKA_TOPIC": "platform.task-events",
        "CRONLET_EVENTS_KAFKA_CONTENT_MODE": "structured",
        "CRONLET_EVENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CRONLET_EVENTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRONLET_EVENTS_KAFKA_SASL_USERNAME": {"secretKeyRef": {"name": "cronlet-kafka", "key": "username"}},
        "CRONLET_EVENTS_KAFKA_SASL_PASSWORD": {"secretKeyRef": {"name": "cronlet-kafka", "key": "password"}},
        "CRONLET_EVENTS_KAFKA_SSL_CAFILE": f"{EVENTS_MOUNTS}/kafka-tls/ca.crt",
        "CRONLET_EVENTS_KAFKA_SSL_CERTFILE": f"{EVENTS_MOUNTS}/kafka-tls/tls.crt",
        "CRONLET_EVENTS_KAFKA_SSL_KEYFILE": f"{EVENTS_MOUNTS}/kafka-tls/tls.key",
        "CRONLET_EVENTS_HTTP_URL": "https://events.example.com/cronlet",
        "CRONLET_EVENTS_HTTP_CONTENT_MODE": "structured",
        "CRONLET_EVENTS_HTTP_HEADERS_FILE": f"{EVENTS_MOUNTS}/http/headers",
        "CRONLET_EVENTS_OUTBOX_MAX_ENTRIES": "200",
        "CRONLET_EVENTS_OUTBOX_MAX_BYTES": "65536",
    }
    pod = operator_pod(docs)
    # Each file option names a file of a read-only Secret volume: a key the Secret must have.
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    assert set(mounts) == set(volumes) == {"events-kafka-tls", "events-http-headers"}
    assert all(m["readOnly"] is True and "subPath" not in m for m in mounts.values())
    assert volumes["events-kafka-tls"]["secretName"] == "cronlet-kafka-tls"
    assert volumes["events-http-headers"]["secretName"] == "cronlet-events-http"
    files = {
        f"{mounts[name]['mountPath']}/{item['path']}": item["key"]
        for name, secret in volumes.items()
        for item in secret["items"]
    }
    assert files == {
        f"{EVENTS_MOUNTS}/kafka-tls/ca.crt": "ca.crt",
        f"{EVENTS_MOUNTS}/kafka-tls/tls.crt": "tls.crt",
        f"{EVENTS_MOUNTS}/kafka-tls/tls.key": "tls.key",
        f"{EVENTS_MOUNTS}/http/headers": "headers",
    }
    # Readable by the operator's non-root user: the files belong to root and there is no fsGroup.
    assert all(secret["defaultMode"] == 0o444 for secret in volumes.values())
    assert "fsGroup" not in pod["securityContext"]


@pytest.mark.binaries
def test_the_operator_makes_both_sinks_from_what_the_chart_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The chart's variables, read by the real CLI and handed to the operator's own sink factory (which
    rejects what would make no usable sink), with the Secrets' files where the chart mounts them."""
    from cronlet._cli import operator as cli
    from cronlet._controller import runtime

    secrets = {"cronlet-kafka": {"username": "cronlet", "password": "s3cret"}}
    (tmp_path / "http").mkdir()
    (tmp_path / "http" / "headers").write_text("Authorization: Bearer abc\n")
    for variable in operator_pod(render(*ALL_EVENTS))["containers"][0]["env"]:
        if "valueFrom" in variable:
            source = variable["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                monkeypatch.setenv(variable["name"], secrets[ref["name"]][ref["key"]])
            continue
        value = variable["value"]
        if value.startswith(EVENTS_MOUNTS):
            value = str(tmp_path) + value.removeprefix(EVENTS_MOUNTS)
        monkeypatch.setenv(variable["name"], value)
    args = cli.parser().parse_args(["operator"])
    assert args.events_kafka_bootstrap_servers == "kafka-0.messaging:9093,kafka-1.messaging:9093"
    assert (args.events_kafka_topic, args.events_kafka_content_mode) == ("platform.task-events", "structured")
    assert (args.events_kafka_security_protocol, args.events_kafka_sasl_mechanism) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert args.events_kafka_ssl_keyfile == str(tmp_path / "kafka-tls" / "tls.key")
    assert (args.events_http_url, args.events_http_content_mode) == (
        "https://events.example.com/cronlet",
        "structured",
    )
    assert (args.events_outbox_max_entries, args.events_outbox_max_bytes) == (200, 65536)
    options = runtime.EventOptions(
        kafka_bootstrap_servers=args.events_kafka_bootstrap_servers,
        kafka_topic=args.events_kafka_topic,
        kafka_mode=args.events_kafka_content_mode,
        kafka_security_protocol=args.events_kafka_security_protocol,
        kafka_sasl_mechanism=args.events_kafka_sasl_mechanism,
        kafka_sasl_username=os.environ["CRONLET_EVENTS_KAFKA_SASL_USERNAME"],
        kafka_sasl_password=os.environ["CRONLET_EVENTS_KAFKA_SASL_PASSWORD"],
        kafka_ssl_cafile=args.events_kafka_ssl_cafile,
        kafka_ssl_certfile=args.events_kafka_ssl_certfile,
        kafka_ssl_keyfile=args.events_kafka_ssl_keyfile,
        http_url=args.events_http_url,
        http_mode=args.events_http_content_mode,
        http_headers_file=args.events_http_headers_file,
    )
    assert [sink.name for sink in options.sinks()] == ["kafka", "http"]


@pytest.mark.binaries
def test_a_kafka_tls_secret_without_a_client_certificate_gives_only_the_ca() -> None:
    docs = render(
        "--set",
        "events.kafka.bootstrapServers={kafka:9093},events.kafka.securityProtocol=SSL,"
        "events.kafka.tlsSecret=kafka-ca,events.kafka.tlsClientCertificate=false",
    )
    env = events_env(docs)
    assert env["CRONLET_EVENTS_KAFKA_SSL_CAFILE"] == f"{EVENTS_MOUNTS}/kafka-tls/ca.crt"
    assert "CRONLET_EVENTS_KAFKA_SSL_CERTFILE" not in env and "CRONLET_EVENTS_KAFKA_SASL_USERNAME" not in env
    [volume] = operator_pod(docs)["volumes"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    # Only HTTP: no Kafka option at all, the outbox caps still.
    only_http = events_env(render("--set", "events.http.url=http://receiver.apps:8080/events"))
    assert sorted(only_http) == [
        "CRONLET_EVENTS_HTTP_CONTENT_MODE",
        "CRONLET_EVENTS_HTTP_URL",
        "CRONLET_EVENTS_OUTBOX_MAX_BYTES",
        "CRONLET_EVENTS_OUTBOX_MAX_ENTRIES",
    ]


@pytest.mark.binaries
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "events.kafka.securityProtocol=SASL_SSL,events.kafka.existingSecret=k",
            "needs events.kafka.saslMechanism",
        ),
        ("events.kafka.securityProtocol=SASL_PLAINTEXT,events.kafka.saslMechanism=PLAIN", "existingSecret"),
        ("events.kafka.existingSecret=k", "need securityProtocol SASL_PLAINTEXT or SASL_SSL"),
        ("events.kafka.saslMechanism=PLAIN,events.kafka.securityProtocol=SSL", "need securityProtocol SASL_"),
        (
            "events.kafka.tlsSecret=t,events.kafka.securityProtocol=SASL_PLAINTEXT,events.kafka.saslMechanism=PLAIN,"
            "events.kafka.existingSecret=k",
            "tlsSecret needs securityProtocol SSL or SASL_SSL",
        ),
    ],
    ids=[
        "sasl-without-mechanism",
        "sasl-without-secret",
        "secret-without-sasl",
        "mechanism-without-sasl",
        "tls-without-ssl",
    ],
)
def test_kafka_security_the_operator_would_refuse_fails_the_render(setting: str, message: str) -> None:
    result = helm(
        "template", RELEASE, str(CHART), "--set", f"events.kafka.bootstrapServers={{kafka:9092}},{setting}"
    )
    assert result.returncode != 0, f"{setting} was accepted"
    assert message in result.stderr
