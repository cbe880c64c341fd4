"""The package's dependency direction (docs/ARCHITECTURE.md): no two modules
import each other, counting imports inside functions, and no library module
imports the CLI."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "ttfs_native"
pytestmark = pytest.mark.skipif(not PACKAGE.is_dir(), reason="not a source checkout")


def _import_graph() -> dict:
    """module -> the package modules it imports (anywhere in its text)."""
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["ttfs_native", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = f
    graph = {}
    for name, f in modules.items():
        here = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join((here[:len(here) - node.level + 1] if node.level else [])
                                + ([node.module] if node.module else []))
                candidates = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in modules:   # a name imported from a module: the module
                    c = c.rpartition(".")[0]
                if c and c not in (name, "ttfs_native"):
                    targets.add(c)
        graph[name] = targets
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_cli():
    offenders = sorted(m for m, targets in _import_graph().items()
                       if not m.startswith("ttfs_native.cli") and m != "ttfs_native.__main__"
                       and any(t.startswith("ttfs_native.cli") for t in targets))
    assert offenders == []


def test_no_source_file_is_over_600_lines():
    """One concern per file: a file that grows past ~600 lines is split by concern."""
    root = PACKAGE.parent.parent
    sources = [p for p in [*root.joinpath("python").rglob("*.py"), *root.joinpath("csrc").rglob("*")]
               if p.suffix in (".py", ".h", ".cpp", ".cu", ".cuh")]
    long = sorted(f"{p.relative_to(root)}: {n}" for p in sources
                  if (n := len(p.read_text(errors="replace").splitlines())) > 600)
    assert not long, "split these files by concern:\n" + "\n".join(long)
