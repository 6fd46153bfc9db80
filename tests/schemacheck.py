"""A small checker of values against the CRD's structural schema, for unit tests that have no API server.

For: asserting that what the operator writes (a status, a condition) is what the API server would accept:
types, required fields, enums, patterns, lengths, ``format: date-time``, list-map keys. Must not: replace the
integration tests that send the same objects to the real API server (tests/integration/test_crd_conditions.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import yaml

from cronlet._core import crd

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def status_schema() -> Mapping[str, Any]:
    # Through YAML, as the committed file is read: the schema the API server is given.
    doc = yaml.load(crd.render(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema: Mapping[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "status"
    ]
    return schema


def problems(value: Any, schema: Mapping[str, Any], path: str = "status") -> Iterator[str]:
    """Every way ``value`` breaks ``schema`` (empty when the API server would accept it)."""
    kind = schema.get("type")
    if (kind and not isinstance(value, _TYPES[kind])) or (
        kind in ("integer", "number") and isinstance(value, bool)
    ):
        yield f"{path}: {value!r} is not of type {kind}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: {value!r} is not one of {schema['enum']}"
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{path}: {value!r} does not match {schema['pattern']}"
        if len(value) > schema.get("maxLength", len(value)):
            yield f"{path}: longer than {schema['maxLength']}"
        if len(value) < schema.get("minLength", 0):
            yield f"{path}: shorter than {schema['minLength']}"
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                yield f"{path}: {value!r} is not an RFC 3339 date-time"
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
                yield f"{path}: {value!r} is not an RFC 3339 date-time"
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        yield f"{path}: {value} is below {schema['minimum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                yield f"{path}.{name}: required"
        props = schema.get("properties")
        for name, sub in value.items():
            if props is not None and name in props:
                yield from problems(sub, props[name], f"{path}.{name}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{path}.{name}: unknown field (pruned by the API server)"
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from problems(item, schema["items"], f"{path}[{i}]")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            if len(keys) != len(set(keys)):
                yield f"{path}: duplicate entries for the list-map keys {schema['x-kubernetes-list-map-keys']}"
