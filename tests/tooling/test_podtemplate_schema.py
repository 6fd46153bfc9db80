"""tools/podtemplate_schema.py: Kubernetes' PodTemplateSpec OpenAPI made structural, and the vendored copy current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import podtemplate_schema as gen
import pytest

REF = "#/components/schemas/"


def _doc(**schemas: Any) -> dict[str, Any]:
    return {"components": {"schemas": schemas}}


def _pod_template(spec_props: dict[str, Any]) -> dict[str, Any]:
    return {
        "io.k8s.api.core.v1.PodTemplateSpec": {
            "type": "object",
            "properties": {
                "metadata": {"allOf": [{"$ref": REF + "meta.ObjectMeta"}], "default": {}},
                "spec": {"allOf": [{"$ref": REF + "io.k8s.api.core.v1.PodSpec"}], "default": {}},
            },
        },
        "meta.ObjectMeta": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
            },
        },
        "io.k8s.api.core.v1.PodSpec": {
            "type": "object",
            "required": ["containers"],
            "properties": spec_props,
        },
    }


def test_refs_are_inlined_and_what_a_crd_cannot_hold_is_dropped() -> None:
    schemas = _pod_template(
        {
            "containers": {
                "type": "array",
                "items": {"allOf": [{"$ref": REF + "C"}], "default": {}},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
                "description": "List of containers belonging to the pod.  Cannot be updated.",
            },
            "ephemeralContainers": {"type": "array", "items": {"type": "string"}},
        }
    )
    schemas["C"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "default": ""},
            "port": {"allOf": [{"$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]},
            "memory": {"allOf": [{"$ref": REF + "io.k8s.apimachinery.pkg.api.resource.Quantity"}]},
            "weight": {"type": "integer", "format": "int32"},
            "mode": {"type": "string", "format": "something-else"},
        },
    }
    schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"format": "int-or-string", "oneOf": []}
    schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"oneOf": []}
    out = gen.convert(_doc(**schemas))
    assert "$ref" not in json.dumps(out) and "default" not in json.dumps(out)
    assert out["properties"]["metadata"]["properties"] == {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
    }
    pod = out["properties"]["spec"]
    assert "required" not in pod and set(pod["properties"]) == {"containers"}
    containers = pod["properties"]["containers"]
    assert containers["description"] == "List of containers belonging to the pod."
    assert not [k for k in containers if k.startswith("x-kubernetes")]
    item = containers["items"]
    assert item["required"] == ["name"]
    assert item["properties"]["port"] == {"x-kubernetes-int-or-string": True}
    assert item["properties"]["memory"] == {"x-kubernetes-int-or-string": True}
    assert item["properties"]["weight"] == {"type": "integer", "format": "int32"}
    assert item["properties"]["mode"] == {"type": "string"}


def test_a_type_that_contains_itself_is_refused() -> None:
    schemas = _pod_template({"loop": {"allOf": [{"$ref": REF + "L"}]}})
    schemas["L"] = {"type": "object", "properties": {"again": {"allOf": [{"$ref": REF + "L"}]}}}
    with pytest.raises(ValueError, match="refers to itself"):
        gen.convert(_doc(**schemas))


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Number of port.  This must be a valid port number, 0 < x < 65536.", "Number of port."),
        ("Use e.g. Always. More info: https://x", "Use e.g. Always."),
        ("One sentence only", "One sentence only"),
    ],
)
def test_descriptions_keep_their_first_sentence(text: str, first: str) -> None:
    assert gen.first_sentence(text) == first


def test_the_version_is_the_one_tools_k8s_builds() -> None:
    assert gen.kubernetes_version("require (\n\tk8s.io/kubernetes v1.37.2 // indirect\n)\n") == "v1.37.2"


def test_check_says_when_the_committed_file_is_not_what_the_input_gives(tmp_path: Path) -> None:
    other = tmp_path / "v1.json"
    other.write_text(json.dumps(_doc(**_pod_template({"hostname": {"type": "string"}}))))
    assert gen.main(["--check", "--input", str(other)]) == 1
