"""The CRD is generated from the models: the committed file must match, and every field must explain itself."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from cronlet._core import crd, model

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "scheduledtasks.cronlet.dev.yaml"


@functools.cache
def _crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return loaded


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{name}")
    if "items" in node:
        out += _walk(node["items"], f"{path}[]")
    return out


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD.read_text() == crd.render(), "run `make crd` and commit the result"


def test_chart_carries_the_same_crd() -> None:
    chart_copy = ROOT / "charts" / "cronlet" / "files" / "scheduledtasks.cronlet.dev.yaml"
    assert chart_copy.read_text() == CRD.read_text(), "run `make crd` and commit the result"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for section in ("spec", "status"):
        for path, node in _walk(schema["properties"][section], section):
            if path in (section,) or path.endswith("[]"):
                continue
            assert node.get("description"), f"{path} has no description (kubectl explain would be empty)"


def test_spec_fields_and_defaults_match_the_contract() -> None:
    spec = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert set(props) == {
        "schedule",
        "interval",
        "timeZone",
        "handler",
        "parameters",
        "image",
        "podTemplate",
        "maxRetries",
        "backoff",
        "timeout",
        "startTimeout",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "suspend",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "historyLimit",
        "events",
    }
    defaults = {k: v.get("default") for k, v in props.items() if "default" in v}
    assert defaults == {
        "timeZone": "UTC",
        "maxRetries": 3,
        "backoff": {},
        "events": {},
        "startTimeout": "10m",
        "concurrencyPolicy": "Forbid",
        "suspend": False,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "historyLimit": 10,
    }
    assert {k: v["default"] for k, v in props["backoff"]["properties"].items()} == {
        "initialDelay": "10s",
        "multiplier": 2.0,
        "maxDelay": "10m",
        "jitter": 0.1,
    }
    assert props["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert props["historyLimit"]["maximum"] == 100
    assert spec["required"] == ["handler"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "has(self.schedule) != has(self.interval)"
    assert props["parameters"]["x-kubernetes-preserve-unknown-fields"] is True


def test_names_and_columns() -> None:
    crd = _crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        model.KIND,
        model.PLURAL,
        ["st"],
        ["cronlet"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Schedule", 0),
        ("TimeZone", 0),
        ("Suspend", 0),
        ("Active", 0),
        ("Phase", 0),
        ("Last Schedule", 0),
        ("Next Run", 0),
        ("Age", 0),
        ("Handler", 1),
        ("Attempt", 1),
        ("Last Result", 1),
    ]


DURATION_FIELDS = ["interval", "timeout", "startTimeout", "backoff.initialDelay", "backoff.maxDelay"]


def _spec_props() -> dict[str, Any]:
    schema = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props: dict[str, Any] = schema["properties"]["spec"]["properties"]
    return props


def test_every_duration_has_the_one_go_duration_pattern() -> None:
    props = _spec_props()
    for field in DURATION_FIELDS:
        node = props
        *parents, leaf = field.split(".")
        for parent in parents:
            node = node[parent]["properties"]
        assert node[leaf]["pattern"] == model.DURATION_PATTERN, field
        assert node[leaf]["maxLength"] == model.DURATION_MAX_LENGTH, field  # bounds CEL's cost estimate


def test_cel_rules_compare_durations_where_the_schema_cannot() -> None:
    props = _spec_props()
    [backoff] = props["backoff"]["x-kubernetes-validations"]
    assert backoff["rule"].endswith("duration(self.maxDelay) >= duration(self.initialDelay)")
    assert backoff["fieldPath"] == ".maxDelay"
    [interval] = props["interval"]["x-kubernetes-validations"]
    assert interval["rule"].endswith("duration(self) >= duration('1s')")


# What a CRD's schema may carry (apiextensions' structural-schema rules); nothing else of Kubernetes' own
# OpenAPI (x-kubernetes-patch-strategy, -group-version-kind, -unions, $ref) may reach the CRD.
ALLOWED_EXTENSIONS = {
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
}
# kubectl apply (client side) and Argo CD's default sync store the object in an annotation of at most 256 KiB.
LAST_APPLIED_LIMIT = 256 * 1024


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_pod_template_has_kubernetes_schema_of_pod_template_spec() -> None:
    template = _spec_props()["podTemplate"]
    assert set(template["properties"]) == {"metadata", "spec"}
    assert set(template["properties"]["metadata"]["properties"]) == {"labels", "annotations"}
    pod = template["properties"]["spec"]
    assert "required" not in pod  # Cronlet adds the executor container
    container = pod["properties"]["containers"]["items"]
    assert {"name", "image", "env", "envFrom", "resources", "securityContext", "volumeMounts"} <= set(
        container["properties"]
    )
    assert container["properties"]["resources"]["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }
    assert "x-kubernetes-preserve-unknown-fields" not in template


def test_the_crd_is_structural_and_small_enough_for_client_side_apply() -> None:
    document = _crd()
    keys = _keys(document["spec"]["versions"][0]["schema"])
    assert "$ref" not in keys and "allOf" not in keys and "oneOf" not in keys
    assert {k for k in keys if k.startswith("x-kubernetes-")} <= ALLOWED_EXTENSIONS
    template = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["podTemplate"]
    assert "default" not in _keys(template)  # defaults would be written into stored tasks
    size = len(json.dumps(document, separators=(",", ":")))
    assert size < LAST_APPLIED_LIMIT, f"the CRD is {size} bytes as compact JSON"
