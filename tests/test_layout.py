"""The package layout keeps the data flow one-directional: no import cycle, even through deferred
imports, and nothing below the API imports it; each kind of source imports only the base."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chanstats"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every chanstats module → the chanstats modules it imports anywhere (top level or deferred)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    if candidate in paths:
                        graph[name].add(candidate)
                    elif target in paths and not alias.name.startswith("_kernels"):
                        graph[name].add(target)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in paths)
        graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_even_through_deferred_imports():
    graph = import_graph()
    assert len(graph) > 30  # the walk found the subpackages
    assert find_cycle(graph) is None


def test_a_cycle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_nothing_below_the_api_imports_it():
    graph = import_graph()
    above = {"chanstats", "chanstats.cli", "chanstats.__main__", "chanstats.api"}
    assert [(m, t) for m in graph if m not in above for t in graph[m] if t in ("chanstats.api", "chanstats.cli")] == []


def test_each_kind_of_source_imports_only_the_base():
    graph = import_graph()
    for kind in ("chanstats.sources.folders", "chanstats.sources.tar", "chanstats.sources.parquet",
                 "chanstats.sources.arrays", "chanstats.sources.datasets", "chanstats.sources.files",
                 "chanstats.sources.video"):
        # user_code: importing the user's own file for --dataset; decoding.limits: the
        # decompression-bomb limit every reader checks before it allocates (leaves that import only
        # errors); storage: the file system under every kind (a shard or a table may be a URL)
        assert graph[kind] <= {"chanstats.sources.base", "chanstats.errors", "chanstats.user_code",
                               "chanstats.decoding.limits", "chanstats.sources.storage"}, kind
    for leaf in ("chanstats.user_code", "chanstats.decoding.limits"):
        assert graph[leaf] <= {"chanstats.errors"}, leaf
    # The file system itself knows no kind.
    assert graph["chanstats.sources.storage"] <= {"chanstats.sources.base", "chanstats.errors"}


def test_the_walk_from_a_source_to_the_decoder_never_climbs_back():
    """sources/ → measuring → decoding/ → stats/: each stage imports only later stages (and the
    leaves errors, kernel, user_code), so following an item from its listing to its statistics
    never goes back up; measuring reads items through sources/ (the one place it looks back)."""
    graph = import_graph()

    def stage(module: str) -> str | None:
        for prefix, name in (("chanstats.sources", "sources"), ("chanstats.decoding", "decoding"),
                             ("chanstats.stats", "stats")):
            if module.startswith(prefix):
                return name
        return "measuring" if module in ("chanstats.measure", "chanstats.pixels") else None

    later = {"sources": {"sources"}, "measuring": {"measuring", "sources", "decoding", "stats"},
             "decoding": {"decoding", "stats"}, "stats": {"stats"}}
    leaves = {"chanstats.errors", "chanstats.kernel", "chanstats.user_code", "chanstats._version",
              "chanstats.decoding.limits"}
    climbs = [(module, target) for module in graph if (here := stage(module)) is not None
              for target in graph[module] if target not in leaves and stage(target) not in later[here]
              and not (here == "measuring" and target in ("chanstats.options", "chanstats.transforms"))]
    assert climbs == []
