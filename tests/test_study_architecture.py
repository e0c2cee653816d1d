"""geostudy's architecture, from its import statements: every module imports, the module import
graph has no cycle, and every import goes to the same layer or a lower one."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "geostudy"

# Lowest first: a module may import from its own layer and the layers before it, never after.
LAYERS = [
    ("errors", ("geostudy.errors",)),
    ("runtime", ("geostudy.runtime",)),  # threads, forked helpers, malloc, progress: no science
    ("run folder", ("geostudy.rundir", "geostudy.scale.layout")),
    ("inputs", ("geostudy.corpus", "geostudy.sites", "geostudy.scale", "geostudy.scale.sources", "geostudy.scale.sequences")),
    ("measure", ("geostudy.measure", "geostudy.scale.partitions", "geostudy.scale.analyses", "geostudy.scale.compare")),
    ("store", ("geostudy.store", "geostudy.scale.forward", "geostudy.scale.store", "geostudy.scale.store_files")),
    ("options", ("geostudy.options", "geostudy.scale.options")),
    ("plan", ("geostudy.plan", "geostudy.scale.plan")),
    ("outputs", ("geostudy.outputs", "geostudy.scale.tables")),
    ("pipeline", ("geostudy.pipeline", "geostudy.scale.tasks", "geostudy.scale.study", "geostudy.cluster")),
    ("command line", ("geostudy.cli", "geostudy.__main__")),
    ("public API", ("geostudy",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported_modules(name: str) -> set[str]:
    """The geostudy modules `name` imports anywhere in its source (functions included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import geostudy.rundir.lock` etc.
                target = target.rpartition(".")[0]
            if target.split(".")[0] == "geostudy" and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def layer_of(name: str) -> int:
    """The index of the layer whose prefix matches `name` most closely."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (prefix != "geostudy" and name.startswith(prefix + ".")):  # the API: __init__ only
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name if name != "geostudy.__main__" else "geostudy.cli")


def test_the_graph_is_read_from_the_sources():
    # a few edges that must be there, so that a parser that finds nothing cannot pass
    assert "geostudy.plan" in GRAPH["geostudy.pipeline.study"]
    assert "geostudy.rundir.manifest" in GRAPH["geostudy.plan"]  # from .rundir import manifest as mf
    assert "geostudy.outputs.figures" in GRAPH["geostudy.pipeline.study"]  # imported inside a function
    assert len(MODULES) >= 30


def test_the_module_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_imports_follow_the_layer_order():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a in sorted(GRAPH) for b in sorted(GRAPH[a]) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_the_science_and_the_runtime_do_not_reach_into_the_pipeline_outputs_or_cli():
    forbidden = ("geostudy.pipeline", "geostudy.outputs", "geostudy.cli")
    for name, imports in GRAPH.items():
        if name.startswith(("geostudy.runtime", "geostudy.measure")):
            assert not [m for m in imports if m.startswith(forbidden)], name
        if name.startswith("geostudy.outputs"):
            assert not [m for m in imports if m.startswith(("geostudy.pipeline", "geostudy.cli"))], name
