"""The package's import graph has no cycle, counting every import: module level, inside functions and
under `if TYPE_CHECKING:`.

A function-level import only postpones a circle: the two modules still need each other, and the order
in which they are first imported decides whether a name is there yet. So every `import` statement of
every module under textcls/ is an edge, read with `ast` (nothing is imported):

- `import textcls.a.b` and `from textcls.a.b import c` are edges to `textcls.a.b.c` when that names a module
  (textcls/a/b/c.py or a package textcls/a/b/c/), else to `textcls.a.b`; relative imports are resolved
  against the importing module's package. A package stands for its `__init__.py`. Imports of anything
  outside textcls are left out.
- Importing `textcls.x.y` first runs the package's `textcls/x/__init__.py` (and its parents'). So an import
  of `textcls.x.y` from a module *outside* package `textcls.x` is also an edge to `textcls.x` (its
  `__init__`), and likewise for every enclosing package. A module inside `textcls.x` gets no such edge: the
  package's `__init__` has always started before any of its modules runs, so `textcls/x/__init__.py`
  importing its own `textcls.x.y` (re-exports) is not a circle. An `__init__` that imports nothing from
  textcls has no edge out, so an edge to it can never close a circle: in effect the parent counts only
  when its `__init__` imports things.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` (a folder under `root`): dotted name -> file; a package is its __init__."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement asks for (before deciding which of them are modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:  # relative: `from . import x` in textcls/a/b.py is textcls.a.x
        package = module.split(".") if is_package else module.split(".")[:-1]
        base_parts = package[:len(package) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names] + [base]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, with the rules of this file's docstring."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            wanted = _targets(node, name, is_package)
            if isinstance(node, ast.ImportFrom):  # `from a import b`: a.b if that is a module, else a
                base = wanted.pop()
                found = {w if w in modules else base for w in wanted}
            else:
                found = {_nearest_module(w, modules) for w in wanted}
            for target in found:
                if target is None or target not in modules:
                    continue
                graph[name].add(target)
                graph[name].update(_entered_packages(name, target, modules))
            graph[name].discard(name)
    return graph


def _nearest_module(dotted: str, modules: dict[str, Path]) -> Optional[str]:
    """`import a.b.c` imports module a.b.c; if that is no module of ours (a typo, an attribute), the
    deepest enclosing one that is."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) if parts else None


def _entered_packages(importer: str, target: str, modules: dict[str, Path]) -> set[str]:
    """The packages whose __init__ importing `target` may run from `importer`: those enclosing the target
    but not the importer."""
    parts = target.split(".")
    out = set()
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        if package in modules and not (importer == package or importer.startswith(package + ".")):
            out.add(package)
    return out


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One cycle of `graph` as [a, b, ..., a], or None (an iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if color[start] != WHITE:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        color[start] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = BLACK
                stack.pop()
            elif color.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            elif color.get(nxt) == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles until none is left, each broken by dropping its closing edge once found: every cycle of
    `graph` shares an edge with one of those listed."""
    graph = {k: set(v) for k, v in graph.items()}
    cycles = []
    while (cycle := find_cycle(graph)) is not None and len(cycles) < 50:
        cycles.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])
    return cycles


def test_textcls_imports_have_no_cycle():
    graph = import_graph(ROOT, "textcls")
    assert len(graph) > 40 and "textcls.config" in graph and "textcls.config.schema" in graph["textcls.config"]
    cycles = all_cycles(graph)
    listing = "\n".join(" -> ".join(cycle) for cycle in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) in textcls (imports inside functions count):\n{listing}"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_walker_finds_a_function_level_cycle_and_resolves_imports(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a  # the circle, hidden in a function\n    return a\n",
        "pkg/sub/__init__.py": "from .c import C\n",  # re-exports its own module: not a circle
        "pkg/sub/c.py": "import os\nfrom ..a import helper\nfrom typing import TYPE_CHECKING\n"
                        "if TYPE_CHECKING:\n    import pkg.d\nC = 1\n",
        "pkg/d.py": "import pkg.sub.c as c\nimport numpy\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.sub.c"}  # no edge back to itself, none to numpy or os
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.d"}  # relative and TYPE_CHECKING imports count
    assert graph["pkg.d"] == {"pkg.sub.c", "pkg.sub"}  # from outside pkg.sub: its __init__ runs too
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    cycles = all_cycles(graph)
    assert ["pkg.a", "pkg.b", "pkg.a"] in cycles
    assert ["pkg.d", "pkg.sub", "pkg.sub.c", "pkg.d"] in cycles or ["pkg.d", "pkg.sub.c", "pkg.d"] in cycles
    (tmp_path / "pkg" / "b.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("C = 1\n", encoding="utf-8")
    assert all_cycles(import_graph(tmp_path, "pkg")) == []


def test_an_import_through_a_package_init_closes_a_circle(tmp_path):
    """config -> data.segment runs data/__init__, which imports data.pipeline, which imports config."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/config.py": "def check():\n    from pkg.data.segment import cut\n",
        "pkg/data/__init__.py": "from pkg.data.pipeline import run\n",
        "pkg/data/segment.py": "def cut(): pass\n",
        "pkg/data/pipeline.py": "from pkg.config import check\n",
    })
    cycle = find_cycle(import_graph(tmp_path, "pkg"))
    assert cycle == ["pkg.config", "pkg.data", "pkg.data.pipeline", "pkg.config"]
    (tmp_path / "pkg" / "data" / "__init__.py").write_text("", encoding="utf-8")  # an empty __init__: no circle
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


# The layers, lowest first (docs/architecture.md): a module imports only from its own layer and those below.
LAYERS = [
    ("textcls.errors", "textcls.io", "textcls.device", "textcls.metrics", "textcls.progress", "textcls"),
    ("textcls.config",),
    ("textcls.data",),
    ("textcls.model",),
    ("textcls.run",),
    ("textcls.predictor",),
    ("textcls.train", "textcls.pretrain"),
    ("textcls.tune", "textcls.info", "textcls.plot", "textcls.evaluation", "textcls.predict", "textcls.recipe",
     "textcls.serve", "textcls.distill", "textcls.explain", "textcls.mistakes", "textcls.export"),
    ("textcls.cli", "textcls.__main__"),
]


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module` (`textcls` alone: the package __init__)."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    assert found is not None, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return found


def test_imports_only_go_down_the_layers():
    graph = import_graph(ROOT, "textcls")
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))
    assert not upward, "imports from a higher layer (move the thing down, or pass it in):\n" + "\n".join(upward)
