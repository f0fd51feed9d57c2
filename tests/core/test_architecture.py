"""The house's structure, checked from the source: imports point down the layers, none goes in a circle
(function-level imports and imports by name, ``importlib.import_module("swapformer...")``, included), and no public
name hides a module of the same name."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import swapformer

SOURCE = Path(swapformer.__file__).parent

LAYERS = [
    {"errors"},
    {"registry"},
    {"compat", "config", "layer_specs"},
    {"components"},
    {"nn"},
    {"models", "data"},
    {"generation", "conformance", "training", "interop"},
    {"tasks"},
    {"cli", "lightning", "__init__", "__main__"},
]
"""Bottom to top: a module may import its own layer and those below (``docs/architecture.md`` draws them)."""
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (SOURCE / relative).with_suffix(".py").is_file() or (SOURCE / relative / "__init__.py").is_file()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno")}
    return lines


def _imported_by_name(call: ast.Call) -> str | None:
    """The swapformer module a call ``importlib.import_module(...)`` or ``__import__(...)`` names, or None: a
    string constant, or the constant head of an f-string (``f"swapformer.cli.{verb}"`` imports below
    ``swapformer.cli``)."""
    function = ast.unparse(call.func)
    if function not in ("importlib.import_module", "import_module", "__import__") or not call.args:
        return None
    name = call.args[0]
    if isinstance(name, ast.JoinedStr) and name.values and isinstance(name.values[0], ast.Constant):
        head = str(name.values[0].value)
        return head.rpartition(".")[0] if head.startswith("swapformer.") else None
    if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value.startswith("swapformer"):
        return name.value
    return None


def imports_of(tree: ast.Module) -> set[str]:
    """The swapformer modules ``tree`` imports at run time (anywhere in it, not under TYPE_CHECKING), by an import
    statement or by name. ``from package import name`` counts as importing ``package.name`` when that is a
    module."""
    skip = _type_checking_lines(tree)
    targets = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names if a.name.startswith("swapformer")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("swapformer"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                targets.add(full if _is_module(full) else node.module)
        elif isinstance(node, ast.Call) and (named := _imported_by_name(node)) is not None:
            targets.add(named)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Module -> the swapformer modules it imports at run time (:func:`imports_of`)."""
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        graph[_module_name(path)] = imports_of(ast.parse(path.read_text())) - {_module_name(path)}
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_point_down_the_layers():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target != "swapformer" and RANK[_layer(target)] > RANK[_layer(module)]
    ]
    assert upward == []


def test_no_import_cycles_inside_the_package():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_walk_sees_function_level_imports_and_imports_by_name():
    graph = import_graph()
    assert (
        "swapformer.tasks.base" in graph["swapformer.cli.generate"]
        or "swapformer.tasks" in graph["swapformer.cli.generate"]
    )
    function_level = "def f():\n    from swapformer.models import build\n"
    by_name = (
        "import importlib\n"
        "def f(verb):\n"
        "    importlib.import_module('swapformer.components')\n"
        "    __import__('swapformer.models.saving')\n"
        "    importlib.import_module(f'swapformer.cli.{verb}')\n"
        "    importlib.import_module(verb)\n"  # not known before it runs: not an edge
        "if TYPE_CHECKING:\n"
        "    from swapformer.tasks import SwapformerModule\n"
    )
    assert imports_of(ast.parse(function_level)) == {"swapformer.models"}
    assert imports_of(ast.parse(by_name)) == {
        "swapformer.components",
        "swapformer.models.saving",
        "swapformer.cli",
    }


def test_no_public_name_hides_a_module():
    hidden = []
    for info in pkgutil.walk_packages(swapformer.__path__, "swapformer."):
        module = importlib.import_module(info.name)
        parent_name, _, child = info.name.rpartition(".")
        parent = importlib.import_module(parent_name)
        if hasattr(parent, child) and getattr(parent, child) is not module:
            hidden.append(f"{parent_name}.{child} is {getattr(parent, child)!r}, not the module")
    assert hidden == []
