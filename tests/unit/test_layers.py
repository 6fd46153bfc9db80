"""The package layers, enforced: who may import whom, read from the source of every module.

Layers, bottom to top: the handler side (``cronlet.sdk``, ``cronlet.executor``, ``cronlet._common``,
``cronlet_handlers``), the pure core (``cronlet._core``), the controller (``cronlet._controller``) and the
command lines (``cronlet._cli``). A module may import its own layer and the layers below, never one above.
Besides: the core and the handler side import neither kopf nor the Kubernetes client; the core does no I/O
(no network, process, thread or file-system modules); the SDK imports no other Cronlet module; the shared
helpers import nothing of Cronlet but themselves.

Every import counts: at the top of a module, inside a function, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "operator", ROOT / "handlers")

LAYERS = {"handler side": 0, "core": 1, "controller": 2, "cli": 3}
# Third-party packages each layer may use (the standard library is always allowed, except as said below).
THIRD_PARTY = {
    "handler side": {"pydantic", "pydantic_core", "tenacity"},
    "core": {"pydantic", "croniter", "yaml"},
    # aiohttp (a kopf dependency) and aiokafka (the cronlet[kafka] extra) for the event sinks only.
    "controller": {
        "pydantic",
        "kopf",
        "kubernetes",
        "urllib3",
        "tenacity",
        "prometheus_client",
        "aiohttp",
        "aiokafka",
    },
    "cli": {"pydantic", "kubernetes", "urllib3", "yaml"},
}
# Standard-library modules that do I/O, or run things concurrently: none of them in the core.
IO_MODULES = {
    "asyncio", "concurrent", "http", "multiprocessing", "os", "pathlib", "select", "selectors", "shutil",
    "signal", "socket", "ssl", "subprocess", "sys", "tempfile", "threading", "urllib",
}  # fmt: skip


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module, or a module plus the name taken from it (either may be what was meant)
    line: int


def layer_of(module: str) -> str | None:
    if module.startswith(("cronlet._core", "cronlet._core.")):
        return "core"
    if module.startswith("cronlet._controller"):
        return "controller"
    if module.startswith("cronlet._cli"):
        return "cli"
    if module == "cronlet" or module.startswith(("cronlet.sdk", "cronlet.executor", "cronlet._common")):
        return "handler side"
    if module.split(".")[0] == "cronlet_handlers":
        return "handler side"
    return None


def modules() -> Iterator[tuple[str, Path]]:
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            if "build" in path.relative_to(source).parts:
                continue
            parts = list(path.relative_to(source).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imports_of(module: str, tree: ast.AST, *, package: bool) -> Iterator[Import]:
    base = module if package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                target = ".".join([*anchor, *([target] if target else [])])
            for alias in node.names:
                yield Import(module, f"{target}.{alias.name}" if target else alias.name, node.lineno)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for module, path in modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        found.extend(imports_of(module, tree, package=path.name == "__init__.py"))
    return found


def problems(found: list[Import]) -> list[str]:
    out: list[str] = []
    stdlib = set(sys.stdlib_module_names)
    for imp in found:
        own = layer_of(imp.importer)
        if own is None:
            continue
        where = f"{imp.importer}:{imp.line} imports {imp.imported}"
        top = imp.imported.split(".")[0]
        theirs = layer_of(imp.imported)
        if theirs is not None:
            if LAYERS[theirs] > LAYERS[own]:
                out.append(f"{where}: the {own} may not import the {theirs} (upward)")
            if imp.importer.startswith("cronlet.sdk") and not imp.imported.startswith("cronlet.sdk"):
                out.append(f"{where}: the SDK imports no other Cronlet module")
            if imp.importer.startswith("cronlet._common") and not imp.imported.startswith("cronlet._common"):
                out.append(f"{where}: the shared helpers import nothing of Cronlet but themselves")
        elif top in stdlib:
            if own == "core" and top in IO_MODULES:
                out.append(f"{where}: the core does no I/O")
        elif top != "__future__" and top not in THIRD_PARTY[own]:
            out.append(f"{where}: the {own} may not use {top}")
    return out


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [module for module, _ in modules() if layer_of(module) is None]
    assert not unplaced, f"modules outside every layer: {unplaced}"


def test_no_module_imports_against_the_layers() -> None:
    found = all_imports()
    assert len(found) > 100, "the walk found too few imports to be reading the sources"
    assert problems(found) == []


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("cronlet._core.decision", "from cronlet._controller import kube", "upward"),
        ("cronlet._core.decision", "def f():\n    import kubernetes", "may not use kubernetes"),
        ("cronlet._core.schedule", "import subprocess", "does no I/O"),
        ("cronlet.sdk", "from cronlet._common import times", "imports no other Cronlet module"),
        ("cronlet.executor", "import kopf", "may not use kopf"),
        ("cronlet._controller.store", "from cronlet._cli import operator", "upward"),
        ("cronlet.executor", "from ._core import model", "upward"),
        ("cronlet._common.times", "from cronlet import sdk", "nothing of Cronlet"),
    ],
)
def test_the_check_catches_a_violation(importer: str, source: str, expected: str) -> None:
    # Proves the test above can fail: each of these would be refused.
    found = list(imports_of(importer, ast.parse(source), package=False))
    assert any(expected in problem for problem in problems(found)), problems(found)


def test_the_architecture_doc_maps_every_module() -> None:
    """docs/architecture.md's table of the tree names every package and module that exists, and no other."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## The tree") :]
    missing = []
    for module, path in modules():
        if module.startswith("cronlet_handlers") or (path.name == "__init__.py" and module.count(".") < 1):
            continue
        short = module.rsplit(".", 1)[-1]
        if f"`{short}`" not in table and f"`{module}`" not in table and f".{short}`" not in table:
            missing.append(module)
    assert missing == [], f"modules the architecture doc does not map: {missing}"
