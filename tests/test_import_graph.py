"""The package's layers point only down, and nothing imports in a circle (lazy imports included).

The static import graph is read from the source with `ast` (every `import`, also those inside
functions), so an import hidden in a function body counts like one at the top of a file. The
allowed edges are README's "How the code is organised", written out as a table.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfm_edu"

CORE = {"tfm_edu", "maps", "device", "numpy_attention", "attention", "positional", "tokenize"}
# component -> the components it may import (besides itself). A component is a top-level module
# or sub-package of tfm_edu; "tfm_edu" is the package's own __init__ (seed_everything).
ALLOWED: dict[str, set[str]] = {
    "tfm_edu": set(),
    "maps": set(),
    "device": set(),
    "numpy_attention": set(),
    "tokenize": set(),
    "attention": set(),
    "positional": set(),
    "decode": set(),
    "distill": set(),
    "efficiency": CORE | {"layers", "models", "analysis"},
    "layers": {"attention", "positional"},
    "data": {"tfm_edu", "maps", "numpy_attention", "tokenize"},
    "models": CORE | {"layers", "decode", "distill"},
    "train": {"tfm_edu", "device"},
    "checkpoints": {"train"},
    "reference": {"attention", "layers"},
    "analysis": CORE | {"layers", "decode", "distill", "data", "models"},
    "viz": {"maps", "positional", "distill", "analysis"},
    "pretrained": CORE | {"checkpoints", "models"},
    "exercises": CORE
    | {
        "layers",
        "decode",
        "distill",
        "efficiency",
        "data",
        "models",
        "analysis",
        "train",
        "reference",
    },
    "recipes": CORE
    | {
        "layers",
        "decode",
        "distill",
        "efficiency",
        "data",
        "models",
        "analysis",
        "train",
        "checkpoints",
        "pretrained",
        "bench",
    },
    "teacher": set(),
    "bench": CORE | {"reference", "pretrained", "models", "decode", "data", "efficiency"},
}
# Entry points run as `python -m ...`; they sit on top of everything and nothing imports them.
# module -> the components it may import. An entry point that is a top-level module
# (tfm_edu.generate) is a component of its own, with no row in ALLOWED.
ENTRY_POINTS = {
    "tfm_edu.train.__main__": {"recipes", "train"},
    "tfm_edu.generate": {"checkpoints", "decode", "device", "pretrained"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.AST) -> set[str]:
    """The tfm_edu modules one import statement names (a package for `from pkg import name`)."""
    targets = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "tfm_edu" or alias.name.startswith("tfm_edu."):
                targets.add(alias.name)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = module if _is_package(module) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        if base == "tfm_edu" or base.startswith("tfm_edu."):
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in MODULES else base)
    unknown = targets - set(MODULES)
    assert not unknown, f"{module} imports {sorted(unknown)}, which do not exist"
    return targets


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]  # tfm_edu.x, tfm_edu.x.y, ...


def _graph() -> dict[str, set[str]]:
    """module -> the modules importing it runs, including each target's parent packages (Python
    runs a package's __init__ before its submodule) unless the importer lives inside them."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _resolve(module, node):
                edges.add(target)
                inside = set(_ancestors(module)) | {module}
                edges.update(p for p in _ancestors(target) if p not in inside)
        edges.discard(module)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _component(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "tfm_edu"


def test_every_component_has_a_place_in_the_layers():
    assert {_component(m) for m in MODULES if m not in ENTRY_POINTS} == set(ALLOWED)
    assert set(ENTRY_POINTS) <= set(MODULES)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: each one with two or more modules is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge from a component to one it may not import (see ALLOWED, ENTRY_POINTS)."""
    wrong = []
    for module, targets in graph.items():
        source = _component(module)
        allowed = ENTRY_POINTS[module] if module in ENTRY_POINTS else ALLOWED[source]
        for target in targets:
            if target in ENTRY_POINTS:
                wrong.append(f"{module} -> {target} (an entry point)")
            elif _component(target) not in allowed | {source}:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_no_import_cycle_anywhere():
    assert not find_cycles(GRAPH), f"import cycles: {find_cycles(GRAPH)}"


def test_every_import_points_down():
    wrong = layering_violations(GRAPH)
    assert not wrong, "imports that break the layering:\n" + "\n".join(wrong)


def test_the_layers_the_design_names():
    # The rules README states in words, checked apart so that editing the table cannot hide them.
    for source in ("models", "layers", "attention", "positional", "data", "decode", "tokenize"):
        assert not ALLOWED[source] & {"viz", "recipes", "exercises", "analysis", "pretrained"}
    assert not ALLOWED["viz"] & {"models", "pretrained", "recipes", "train", "checkpoints", "data"}
    assert ALLOWED["maps"] == set()
    assert not any("recipes" in allowed for c, allowed in ALLOWED.items() if c != "recipes")


def test_the_checks_catch_a_violation():
    """The guards fail when a bad edge appears (so they are not vacuously green)."""

    def with_edge(source, target):
        graph = {module: set(edges) for module, edges in GRAPH.items()}
        graph[source].add(target)
        return graph

    assert layering_violations(with_edge("tfm_edu.viz.heatmaps", "tfm_edu.models.bert"))
    assert layering_violations(with_edge("tfm_edu.models.seq2seq", "tfm_edu.viz"))
    assert layering_violations(with_edge("tfm_edu.recipes.dates", "tfm_edu.train.__main__"))
    assert layering_violations(with_edge("tfm_edu.bench", "tfm_edu.generate"))  # an entry point
    assert layering_violations(with_edge("tfm_edu.generate", "tfm_edu.viz"))
    assert find_cycles(with_edge("tfm_edu.layers", "tfm_edu.models.vit"))  # vit imports layers
    assert not find_cycles(with_edge("tfm_edu.models.vit", "tfm_edu.layers"))  # already there


def test_a_lazy_import_counts():
    source = "def f():\n    from tfm_edu.viz import heatmaps\n"
    targets = set().union(
        *(_resolve("tfm_edu.models.bert", n) for n in ast.walk(ast.parse(source)))
    )
    assert targets == {"tfm_edu.viz.heatmaps"}


def _notebook_imports() -> dict[str, list[str]]:
    found = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        lines = []
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                lines += [line.strip() for line in "".join(cell["source"]).splitlines()]
        found[notebook.name] = [
            line for line in lines if line.startswith(("import tfm_edu", "from tfm_edu"))
        ]
    return found


def test_notebooks_never_import_recipes_and_take_views_from_one_place():
    imports = _notebook_imports()
    assert imports, "no notebooks found"
    for notebook, lines in imports.items():
        for line in lines:
            assert "tfm_edu.recipes" not in line, f"{notebook}: {line}"
            assert not line.startswith("from tfm_edu.viz."), f"{notebook}: {line} (use tfm_edu.viz)"
            assert not line.startswith("import tfm_edu.viz."), f"{notebook}: {line}"
