"""The package's layers only look down: models take sizes, evaluation never reaches into an engine, engines know no
concrete objective, tasks know nothing of the workflows above them, and no module imports itself in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "greedy_infomax"


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package -> the package modules it imports, at its top or inside a function."""
    modules = {_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("greedy_infomax"):
                for alias in node.names:  # `from greedy_infomax import tasks` imports a module
                    found.add(
                        f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    )
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("greedy_infomax")}
        graph[name] = found - {name}
    return graph


GRAPH = _imports()

FORBIDDEN = {
    "greedy_infomax.models": [
        "greedy_infomax.config",
        "greedy_infomax.data",
        "greedy_infomax.tasks",
        "greedy_infomax.engines",
        "greedy_infomax.evaluation",
        "greedy_infomax.objectives",
    ],
    "greedy_infomax.objectives": [
        "greedy_infomax.config",
        "greedy_infomax.data",
        "greedy_infomax.tasks",
        "greedy_infomax.engines",
        "greedy_infomax.models",
    ],
    "greedy_infomax.evaluation": [
        "greedy_infomax.engines",
        "greedy_infomax.tasks",
        "greedy_infomax.workflows",
        "greedy_infomax.config",
    ],
    "greedy_infomax.engines": [
        "greedy_infomax.objectives",
        "greedy_infomax.models",
        "greedy_infomax.tasks",
        "greedy_infomax.evaluation",
        "greedy_infomax.workflows",
    ],
    "greedy_infomax.data": [
        "greedy_infomax.config",
        "greedy_infomax.models",
        "greedy_infomax.tasks",
        "greedy_infomax.engines",
        "greedy_infomax.evaluation",
    ],
    "greedy_infomax.tasks": [
        "greedy_infomax.workflows",
        "greedy_infomax.engines",
        "greedy_infomax.cli",
        "greedy_infomax.reproduce",
        "greedy_infomax.bench",
    ],
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        for above in FORBIDDEN[layer]
        if target == above or target.startswith(above + ".")
    )
    assert not wrong, wrong


def test_there_are_no_import_cycles():
    """The package's own __init__ (which registers the tasks) is left out: Python runs it before any submodule."""
    graph = {
        module: {t for t in targets if t != "greedy_infomax"}
        for module, targets in GRAPH.items()
        if module != "greedy_infomax"
    }
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_task_branches_outside_the_tasks():
    """Shared code asks the task; it never tests which task it has."""
    branches = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "tasks" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if any(
            pattern in line
            for pattern in ('task == "', 'task != "', "isinstance(config, Audio", "isinstance(config, Vision")
        )
    ]
    assert not branches, branches
