"""Make the schema of ``spec.podTemplate`` from Kubernetes' own OpenAPI v3 of PodTemplateSpec.

    python -m localkube up &                     # a control plane built from tools/k8s (or make cluster-up)
    python tools/podtemplate_schema.py --kubeconfig "$KUBECONFIG"    # rewrites _core/podtemplate_schema.json
    python tools/podtemplate_schema.py --input v1.json --check       # a saved /openapi/v3/api/v1; compare only

The input is what the kube-apiserver of the version ``tools/k8s/go.mod`` builds serves at ``/openapi/v3/api/v1``
(tests/integration/test_crd_podtemplate.py converts the served document and compares it with the committed
file, so a version bump that changes the schema fails until this is run again). The served document, not
``api/openapi-spec/v3/api__v1_openapi.json`` of the module: only the served one has the enums (imagePullPolicy,
restartPolicy, ...), which catch typos in values too. ``convert`` is pure, so ``cronlet crd`` needs no cluster.

What a CRD's structural schema needs, and what it does here:
- no ``$ref``/``allOf``: references are inlined (PodTemplateSpec has no cycles);
- a ``type`` on every node: IntOrString becomes ``x-kubernetes-int-or-string``, and so does Quantity
  (a string or a number, as ``cpu: 1`` or ``memory: 1Gi``);
- only the ``x-kubernetes-*`` extensions a CRD may carry and that hold here: list and map types and patch
  strategies are dropped (a task's podTemplate is replaced as a whole, like any field of a custom resource);
- no defaults: the Job built from the template gets Kubernetes' defaults when it is created, and defaults in
  the CRD would be written into the stored task (a GitOps diff the user never wrote);
- ``metadata`` keeps ``labels`` and ``annotations``, the only fields Cronlet merges; ``spec.containers`` is not
  required (Cronlet adds the executor container); ``ephemeralContainers`` goes (no Job may create them);
- each description is cut to its first sentence: ``kubectl explain`` shows what a field is, and the whole CRD
  stays under 256 KiB as compact JSON, the limit of the ``last-applied-configuration`` annotation that
  ``kubectl apply`` without ``--server-side`` (and Argo CD's default sync) writes; with every description in
  full, the pod template alone is 282 KB (tests/unit/core/test_crd.py measures the CRD).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "operator" / "cronlet" / "_core" / "podtemplate_schema.json"
GO_MOD = ROOT / "tools" / "k8s" / "go.mod"
ROOT_TYPE = "io.k8s.api.core.v1.PodTemplateSpec"
INT_OR_STRING = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
}
_KEEP_FORMATS = {"int32", "int64", "double", "float", "byte", "date-time"}


def kubernetes_version(go_mod: str) -> str:
    """The ``k8s.io/kubernetes`` version a go.mod requires."""
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE)
    if found is None:
        raise ValueError("tools/k8s/go.mod requires no k8s.io/kubernetes version")
    return found.group(1)


def served(kubeconfig: str) -> dict[str, Any]:
    """/openapi/v3/api/v1 of the API server of ``kubeconfig``, read with the pinned kubectl."""
    kubectl = Path.home() / ".cache" / "cronlet" / "bin" / "kubectl"
    argv = [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw", "/openapi/v3/api/v1"]
    document: dict[str, Any] = json.loads(
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    )
    return document


_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?])\s+(?=[A-Z`\"(])")


def first_sentence(text: str) -> str:
    folded = " ".join(text.split())
    return _SENTENCE_END.split(folded, maxsplit=1)[0]


def convert(openapi: dict[str, Any]) -> dict[str, Any]:
    """The structural schema of PodTemplateSpec from an OpenAPI v3 document of the core/v1 group."""
    schemas: dict[str, Any] = openapi["components"]["schemas"]
    out = _node(schemas[ROOT_TYPE], schemas, seen=(ROOT_TYPE,))
    meta = out["properties"]["metadata"]
    meta["properties"] = {k: v for k, v in meta["properties"].items() if k in ("labels", "annotations")}
    pod = out["properties"]["spec"]
    pod.pop("required", None)
    pod["properties"].pop("ephemeralContainers", None)
    return out


def _node(node: dict[str, Any], schemas: dict[str, Any], *, seen: tuple[str, ...]) -> dict[str, Any]:
    refs = (
        [node["$ref"]]
        if "$ref" in node
        else [part["$ref"] for part in node.get("allOf", []) if "$ref" in part]
    )
    if refs:
        (ref,) = refs
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"{name} refers to itself: a structural schema cannot say that")
        rest = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
        if name in INT_OR_STRING:
            target = {"x-kubernetes-int-or-string": True}
            return _node({**target, **rest}, schemas, seen=seen)
        merged = {**schemas[name], **{k: v for k, v in rest.items() if k == "description"}}
        return _node(merged, schemas, seen=(*seen, name))
    out: dict[str, Any] = {}
    if node.get("description"):
        out["description"] = first_sentence(node["description"])
    if node.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-int-or-string"] = True
        return out
    out["type"] = node["type"]
    if node.get("format") in _KEEP_FORMATS:
        out["format"] = node["format"]
    if "enum" in node:
        out["enum"] = list(node["enum"])
    if "properties" in node:
        out["properties"] = {k: _node(v, schemas, seen=seen) for k, v in sorted(node["properties"].items())}
        if node.get("required"):
            out["required"] = sorted(node["required"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _node(node["additionalProperties"], schemas, seen=seen)
    if "items" in node:
        out["items"] = _node(node["items"], schemas, seen=seen)
    if out["type"] == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = (
            True  # a free-form object (none in PodTemplateSpec today)
        )
    return out


def render(schema: dict[str, Any], *, version: str) -> str:
    source = f"/openapi/v3/api/v1 of kube-apiserver {version} (k8s.io/kubernetes in tools/k8s/go.mod)"
    return (
        json.dumps({"source": source, "schema": schema}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, do not write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--kubeconfig", help="read /openapi/v3/api/v1 from this cluster's API server")
    source.add_argument("--input", type=Path, help="a saved /openapi/v3/api/v1 document")
    args = parser.parse_args(argv)
    version = kubernetes_version(GO_MOD.read_text())
    document = served(args.kubeconfig) if args.kubeconfig else json.loads(args.input.read_text())
    text = render(convert(document), version=version)
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what the input gives: run this without --check", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
