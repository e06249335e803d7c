"""The two houses: the product never imports the lab, and no import cycle runs through either (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("stito_server",)
LAB = ("bench", "training")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the product and the lab -> the project modules it imports (function-local ones too)."""
    files = {module_name(p): p for top in PRODUCT + LAB for p in (ROOT / top).rglob("*.py")
             if "reaper_scripts" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in found:  # the longest project module the import names
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_product_never_imports_the_lab():
    graph = import_graph()
    assert {"stito_server.cli", "bench.cli", "training.cli", "training.data.corpus"} <= set(graph)
    crossings = sorted((a, b) for a, targets in graph.items() if a.split(".")[0] in PRODUCT
                       for b in targets if b.split(".")[0] in LAB)
    assert crossings == []
    # the lab does import the product (the check sees imports at all)
    assert "stito_server.engine.match" in graph["bench.transfer"]


def test_no_import_cycle_in_the_product_or_the_lab():
    graph = import_graph()
    assert cycles(graph) == []
    # and the check finds one where there is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_between_the_lab_packages():
    graph = import_graph()
    edges = {(a.split(".")[0], b.split(".")[0]) for a, targets in graph.items() for b in targets}
    assert ("training", "bench") not in edges  # the benchmarks use the corpora; the corpora know no benchmark
    assert ("bench", "training") in edges
