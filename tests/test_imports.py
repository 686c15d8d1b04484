"""The package's import graph: no cycles, and no module imports one of a higher layer.

The graph counts every import of a file, at module level or inside a function (a function-level import is
still a dependency; it only runs later), except those under `if TYPE_CHECKING:`, which never run.
`from robustft.x import y` is an edge to the module robustft.x.y when that module exists, else to
robustft.x. A package's own `__init__` is not counted as imported by its submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "robustft"
SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src"

# Lowest first; a module belongs to the layer of its first name after `robustft.` and may import only
# modules of its own layer or lower ones.
LAYERS: dict[str, int] = {
    # Imports nothing of the package (errors) or only errors (io): usable everywhere.
    "errors": 0,
    "io": 0,
    # Registries, reference numbers and helpers that need no training code.
    "reference": 1,
    "data": 1,
    "models": 1,
    "methods": 1,
    "offline": 1,
    "provenance": 1,
    "stats": 1,
    "job_resources": 1,
    "resource_usage": 1,  # benchmark files against the workflow profile (robustft resource-usage)
    "schema": 1,  # the workflow config's JSON schema: a run checks its train settings against it too
    "runs": 1,  # a run directory's lifecycle and path: the training code and the tables both use it
    # One run: training and evaluation (evaluation reuses the training code of its track).
    "train": 2,
    "evals": 2,
    "launch": 2,
    "prefetch": 2,
    "gpu_check": 2,  # trains the workflow's model shapes for throughput (robustft gpu-check)
    # Results of many runs.
    "tables": 3,  # tables.glue, tables.xtreme, tables.instruct
    "artifacts": 3,
    "report": 4,  # report.glue, report.instruct and the typesetting they share
    # The workflow's config: it validates the settings of every track, so it sits above them all.
    "workflow_config": 5,
    # Publishing a finding reads and validates a whole workflow config (load_config, expected_run_dirs):
    # a command over a config, like the CLI, so above workflow_config.
    "findings": 6,
    "estimate": 6,  # prices the jobs of a whole workflow config (robustft estimate), like findings
    "cli": 7,
    "__main__": 7,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    tree: ast.Module, module: str, is_package: bool, package: str, known: set[str]
) -> dict[str, int]:
    """module -> the line of its first import, for every module of `package` that `tree` imports."""
    found: dict[str, int] = {}

    def resolve(name: str) -> str:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.orelse:
                    visit_statement(statement)
                continue
            visit_statement(child)

    def visit_statement(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    found.setdefault(resolve(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source == package or source.startswith(package + "."):
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    found.setdefault(submodule if submodule in known else resolve(source), node.lineno)
        visit(node)

    visit(tree)
    found.pop(module, None)
    return found


def import_graph(root: Path = SOURCE_ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """Every module of `package` under `root` -> {imported module of the package: line}."""
    files = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    known = set(files)
    return {
        module: _imports(
            ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py", package, known
        )
        for module, path in files.items()
    }


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in graph:
                continue
            if target not in index:
                connect(target)
                lowest[node] = min(lowest[node], lowest[target])
            elif target in on_stack:
                lowest[node] = min(lowest[node], index[target])
        if lowest[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def describe_cycles(graph: dict[str, dict[str, int]], components: list[list[str]]) -> str:
    lines = []
    for component in components:
        members = set(component)
        lines.append(f"{len(component)} modules import each other: {', '.join(component)}")
        for module in component:
            for target, line in sorted(graph[module].items()):
                if target in members:
                    lines.append(f"  {module} -> {target} (line {line})")
    return "\n".join(lines)


def layer(module: str) -> int | None:
    if module == PACKAGE:
        return 0
    return LAYERS.get(module.split(".")[1])


GRAPH = import_graph()


def test_the_graph_sees_imports_inside_functions():
    # workflow_config imports the XTREME training code only inside a function (it imports torch).
    assert "robustft.train.xtreme" in GRAPH["robustft.workflow_config"]
    assert "robustft.errors" in GRAPH["robustft.cli"]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + describe_cycles(GRAPH, found)


def test_every_module_has_a_layer():
    unassigned = sorted(module for module in GRAPH if layer(module) is None)
    assert not unassigned, f"give these modules a layer in LAYERS: {unassigned}"


def test_no_module_imports_a_higher_layer():
    offenders = [
        f"{module} (layer {layer(module)}) -> {target} (layer {layer(target)}), line {line}"
        for module, targets in sorted(GRAPH.items())
        for target, line in sorted(targets.items())
        if target in GRAPH and (layer(target) or 0) > (layer(module) or 0)
    ]
    assert not offenders, "imports of a higher layer:\n" + "\n".join(offenders)


def test_errors_imports_nothing_of_the_package():
    assert GRAPH["robustft.errors"] == {}


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from pkg.sub import high\n")
    (package / "sub" / "high.py").write_text("from pkg import low\n")
    (package / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import low\n"
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.low"] == {"pkg.sub.high": 2}
    assert graph["pkg.typed"] == {}  # only for type checkers: never imported
    assert cycles(graph) == [["pkg.low", "pkg.sub.high"]]
    assert "pkg.low -> pkg.sub.high (line 2)" in describe_cycles(graph, cycles(graph))
