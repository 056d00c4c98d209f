"""The shape of ``callbacks``: no import cycle anywhere, and the store's base imports no backend.

The graph is read from the source with ``ast`` (every import, at module level or inside a
function, under ``TYPE_CHECKING`` or not), so a cycle is caught before it bites at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import callbacks

ROOT = Path(callbacks.__file__).parent
BACKENDS = {"callbacks.store.sqlite", "callbacks.store.postgres"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The ``callbacks`` modules that ``path`` imports (a name imported from a package counts
    as its submodule when it is one)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if is_module(candidate) else base)
    return {name for name in found if name.split(".")[0] == "callbacks"} - {this}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that starts and ends at the same module, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


def test_the_graph_is_read_from_every_module() -> None:
    graph = import_graph()
    assert {"callbacks", "callbacks.store", "callbacks.store.base", *BACKENDS} <= set(graph)
    assert "callbacks.store.base" in graph["callbacks.store.sqlite"]
    assert graph["callbacks.store"] >= BACKENDS  # the factory's imports, inside a function


def test_no_import_cycle_in_callbacks() -> None:
    assert find_cycle(import_graph()) is None


def test_find_cycle_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_store_base_imports_no_backend_and_only_the_factory_names_both() -> None:
    graph = import_graph()
    assert graph["callbacks.store.base"] <= {"callbacks.errors"}
    importers = {name for name, targets in graph.items() if targets & BACKENDS}
    assert importers == {"callbacks.store"}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_cli_is_a_leaf_and_every_command_group_is_a_module_of_it() -> None:
    graph = import_graph()
    cli = {name for name in graph if name == "callbacks.cli" or name.startswith("callbacks.cli.")}
    assert {"callbacks.cli._support", "callbacks.cli.serve", "callbacks.cli.keys"} <= cli
    importers = {name for name, targets in graph.items() if targets & cli}
    assert importers <= cli, "nothing outside the CLI imports it"
    entry_points = {"callbacks.cli", "callbacks.cli.__main__"}
    # Private modules (``_support``, ``_http``) serve the groups; every other module is a group.
    shared = {name for name in cli if name.rsplit(".", 1)[-1].startswith("_")} - entry_points
    assert "callbacks.cli._support" in shared
    assert graph["callbacks.cli"] >= cli - entry_points - shared


def test_signing_for_tests_does_not_go_through_the_request_path() -> None:
    graph = import_graph()
    request_path = {"callbacks.receiver", "callbacks.intake", "callbacks.app"}
    for signer in ("callbacks.testing", "callbacks.cli.simulate", "callbacks.cli.url"):
        assert not reachable(graph, signer) & request_path, signer
