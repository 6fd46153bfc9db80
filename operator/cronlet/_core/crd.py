"""Generate the ScheduledTask CRD from the models in ``cronlet._core.model``.

``make crd`` (``cronlet crd > crds/scheduledtasks.cronlet.dev.yaml``) writes it; ``tests/unit/core/test_crd.py``
fails when the committed file differs. Pure: builds a dict and renders YAML; never talks to a cluster.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

import yaml
from pydantic import BaseModel

from cronlet._core import model

_DROP = {"title"}
_TASK_DESCRIPTION = (
    "A task that Cronlet runs on a cron or fixed-rate schedule, as one executor Job per attempt, with retries, "
    "history and metrics."
)


def _structural(node: dict[str, Any], defs: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """Turn one pydantic JSON-schema node into a structural OpenAPI v3 schema node."""
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs, keep_defaults=keep_defaults)
    if "anyOf" in node:  # Optional[X] -> X; absence means "not set"
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**options[0], **rest}, defs, keep_defaults=keep_defaults)
    out: dict[str, Any] = {}
    if node.get("description"):
        out["description"] = " ".join(node["description"].split())
    kind = node.get("type")
    if kind == "object" and "properties" in node:
        out["type"] = "object"
        props = {
            name: _structural(sub, defs, keep_defaults=keep_defaults)
            for name, sub in node["properties"].items()
        }
        out["properties"] = props
        if node.get("required"):
            out["required"] = list(node["required"])
        if keep_defaults and any("default" in p for p in props.values()):
            out["default"] = {}  # so the API server fills nested defaults when the object is left out
    elif kind == "object":
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["type"] = "array"
        out["items"] = _structural(node["items"], defs, keep_defaults=keep_defaults)
    else:
        out["type"] = kind
    for src, dst in (
        ("enum", "enum"),
        ("pattern", "pattern"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("minLength", "minLength"),
        ("maxLength", "maxLength"),
        ("format", "format"),
    ):
        if src in node:
            out[dst] = node[src]
    out.update({k: v for k, v in node.items() if k.startswith("x-kubernetes-")})
    if keep_defaults and node.get("default") is not None and kind != "object":
        out["default"] = node["default"]
    elif keep_defaults and kind == "object" and node.get("default") == {}:
        out["default"] = {}
    return out


def _schema_of(cls: type[BaseModel], *, keep_defaults: bool) -> dict[str, Any]:
    js = cls.model_json_schema(by_alias=True, mode="validation")
    return _structural(js, js.get("$defs", {}), keep_defaults=keep_defaults)


@functools.cache
def pod_template_schema() -> dict[str, Any]:
    """Kubernetes' PodTemplateSpec as a structural schema, vendored by tools/podtemplate_schema.py.

    Read from the package's own data (like the zoneinfo data the core reads); never from a cluster.
    """
    text = importlib.resources.files(__package__).joinpath("podtemplate_schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)["schema"]
    return schema


def build_crd() -> dict[str, Any]:
    spec = _schema_of(model.TaskSpec, keep_defaults=True)
    spec.pop("default", None)
    template = spec["properties"]["podTemplate"]
    spec["properties"]["podTemplate"] = {**pod_template_schema(), "description": template["description"]}
    spec["x-kubernetes-validations"] = [
        {
            "rule": "has(self.schedule) != has(self.interval)",
            "message": "set exactly one of spec.schedule or spec.interval",
        },
    ]
    status = _schema_of(model.TaskStatus, keep_defaults=False)
    columns = [
        # A JSONPath union prints whichever of the two is set (exactly one is, by the rule above).
        {
            "name": "Schedule",
            "type": "string",
            "jsonPath": ".spec['schedule','interval']",
            "description": "Cron schedule or fixed interval.",
        },
        {
            "name": "TimeZone",
            "type": "string",
            "jsonPath": ".spec.timeZone",
            "description": "Zone in which the schedule is read.",
        },
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {
            "name": "Active",
            "type": "integer",
            "jsonPath": ".status.activeCount",
            "description": "Unfinished runs (running or waiting to retry).",
        },
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            # What CronJob calls it: the due time of the last run started, not when it ran or ended.
            "name": "Last Schedule",
            "type": "date",
            "jsonPath": ".status.lastScheduleTime",
            "description": "Due time of the most recent run started.",
        },
        {
            "name": "Next Run",
            "type": "string",
            "jsonPath": ".status.nextRunTime",
            "description": "Next due time (UTC).",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Handler", "type": "string", "jsonPath": ".spec.handler", "priority": 1},
        {"name": "Attempt", "type": "integer", "jsonPath": ".status.currentAttempt", "priority": 1},
        {"name": "Last Result", "type": "string", "jsonPath": ".status.lastResult", "priority": 1},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{model.PLURAL}.{model.GROUP}"},
        "spec": {
            "group": model.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": model.KIND,
                "listKind": f"{model.KIND}List",
                "plural": model.PLURAL,
                "singular": "scheduledtask",
                "shortNames": ["st"],
                "categories": ["cronlet"],
            },
            "versions": [
                {
                    "name": model.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _TASK_DESCRIPTION,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "cronlet.dev/v1alpha1"},
                                "kind": {"type": "string", "description": "ScheduledTask"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `cronlet crd` (make crd) from operator/cronlet/_core/model.py. Do not edit.\n"
    # libyaml's dumper when PyYAML has it: the same text as the pure-Python one, five times faster on this CRD.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return header + yaml.dump(build_crd(), Dumper=dumper, sort_keys=False, width=100)
