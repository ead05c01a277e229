"""The import graph, computed from the code: no cycle, and no import from a lower layer to a higher one.

The layer map is read from docs/architecture.md (its one home); the graph from every import statement of
lighthouse/ and kernels/ (ast; imports inside functions count: they run too).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Source folders and the package name each is imported as (pyproject.toml's package-dir).
SOURCES = {"lighthouse": "lighthouse", "kernels": "lighthouse.kernels", "suites": "lighthouse.suites"}


def layer_map():
    """[(module prefix, layer number, layer name)] from the table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    out = []
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d+)\s+(\w+)\s*\|\s*([^|]+)\|", line)
        if m:
            for module in re.findall(r"`([\w.]+)`", m.group(3)):
                out.append((module, int(m.group(1)), m.group(2)))
    return out


def modules():
    """{module name: path} of every Python file of the package (and the root folders it maps)."""
    found = {}
    for folder, package in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name, path, known):
    """The package modules `name` imports (a `from X import y` counts y when y is a module, else X)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out |= set(subs)
            if len(subs) < len(node.names) and target in known:
                out.add(target)
    return out - {name}


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(module, layers):
    best = max(
        (m for m in layers if module == m[0] or module.startswith(m[0] + ".")), key=lambda m: len(m[0]), default=None
    )
    return best


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_code():
    """Catches a graph builder that finds nothing (and so would pass any layering): known edges are there."""
    edges = graph()
    assert "lighthouse.harness.tables" in edges["lighthouse.harness.loop"]
    assert "lighthouse.plan" in edges["lighthouse.kernels.layer"]  # kernels/ mapped to lighthouse.kernels
    assert "lighthouse.report.build" in edges["lighthouse.cli"]  # an import inside a function counts


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_every_module_has_a_layer_and_nothing_imports_upward():
    layers = layer_map()
    assert len({n for _, n, _ in layers}) >= 9, layers
    edges = graph()
    unmapped = sorted(m for m in edges if layer_of(m, layers) is None)
    assert unmapped == [], f"modules missing from docs/architecture.md: {unmapped}"
    upward = []
    for a, targets in sorted(edges.items()):
        la = layer_of(a, layers)
        for b in sorted(targets):
            lb = layer_of(b, layers)
            if lb[1] > la[1]:
                upward.append(f"{a} ({la[2]}) -> {b} ({lb[2]})")
    assert upward == [], "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_checker_catches_a_cycle_and_an_upward_import():
    """The two checks on a made-up graph: they can fail."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    layers = layer_map()
    assert layer_of("lighthouse.harness.loop", layers)[1] < layer_of("lighthouse.bench.sweep", layers)[1]
    assert layer_of("lighthouse.attention", layers)[1] < layer_of("lighthouse.harness.tables", layers)[1]
