"""The house's rooms, read from the imports (README, "Layout"): three independent doors over shared door parts
(doors/), Kafka plumbing (messaging/) below them, the operator's view (operations/) above the service, observability/
a leaf, and no loop between packages. Every import counts, a function's own included."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tooling around the service, not rooms of it: they may import any room.
NOT_THE_SERVICE = {"tests", "bench", "stand_ins", "build", "var"}

DOORS = {"api", "kafka_relay", "socket_door"}
# The operator's view is read by the /ops/ page and /metrics (api/) and the `payments` command only.
READS_OPERATIONS = {"api", "cli"}
LEAF_MAY_IMPORT = {"settings"}  # configuration, itself a leaf
DOMAIN_NEVER_IMPORTS = DOORS | {"doors", "tasks", "operations", "event_publisher", "messaging", "celery", "kombu"}
STRIPE_ADAPTER = {"stripe_client", "stripe_pacing"}

Graph = dict[str, set[str]]


def top_level_names(root: Path) -> set[str]:
    """The service's top-level packages and modules."""
    names = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in root.glob("*.py")}
    return names - NOT_THE_SERVICE


def imported_tops(source: str) -> set[str]:
    """The top-level names a module's source imports (absolute imports, at any depth of the module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def package_graph(root: Path) -> Graph:
    """Top-level package -> the other top-level packages (and outside libraries) it imports."""
    tops = top_level_names(root)
    graph: Graph = {top: set() for top in tops}
    for top in tops:
        files = [root / f"{top}.py"] if (root / f"{top}.py").is_file() else sorted((root / top).rglob("*.py"))
        for path in files:
            if "migrations" in path.parts:  # frozen history, never imported by the running service
                continue
            graph[top] |= imported_tops(path.read_text()) - {top}
    return graph


def loops(graph: Graph) -> list[set[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = itertools.count()

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, set()) & graph.keys():
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def broken_rules(graph: Graph) -> list[str]:
    """Every arrow that breaks the layout's rules, said in words."""
    service = set(graph)
    broken = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            if dst in DOORS:  # a door imports only its own package (those arrows are not in the graph)
                broken.append(f"{src} imports the door {dst}")
            if dst == "operations" and src not in READS_OPERATIONS:
                broken.append(f"{src} imports the operator's view")
            if src == "observability" and dst in service - LEAF_MAY_IMPORT:
                broken.append(f"observability (a leaf) imports {dst}")
            if src == "domain" and dst in DOMAIN_NEVER_IMPORTS:
                broken.append(f"domain imports {dst}")
            if src in STRIPE_ADAPTER and dst in {"domain", "tasks", "registry"}:
                broken.append(f"the Stripe adapter {src} imports {dst}")
    broken += [f"import loop between {sorted(group)}" for group in loops(graph)]
    return broken


def with_arrow(graph: Graph, src: str, dst: str) -> Graph:
    changed = {name: set(targets) for name, targets in graph.items()}
    changed.setdefault(src, set()).add(dst)
    return changed


@pytest.fixture(scope="module")
def graph() -> Graph:
    return package_graph(ROOT)


def test_the_import_reader_sees_top_level_and_function_level_imports_of_each_room(graph):
    # Positive controls for the reader: a module-level arrow, and one made inside a method (socket_door's limits).
    assert "doors" in graph["socket_door"] and "messaging" in graph["event_publisher"]
    assert imported_tops("def f():\n    from doors.limits import storage_uri\n") == {"doors"}
    assert {"api", "doors", "messaging", "operations", "observability", "domain", "tasks"} <= graph.keys()


def test_the_service_breaks_no_layout_rule(graph):
    assert broken_rules(graph) == []


def test_the_packages_import_each_other_without_a_loop(graph):
    assert loops(graph) == []
    assert loops(with_arrow(graph, "models", "domain")) != []  # control: the arrow the seed once drew is a loop


@pytest.mark.parametrize(
    ("src", "dst", "rule"),
    [
        ("socket_door", "api", "socket_door imports the door api"),
        ("api", "kafka_relay", "api imports the door kafka_relay"),
        ("kafka_relay", "socket_door", "kafka_relay imports the door socket_door"),
        ("tasks", "kafka_relay", "tasks imports the door kafka_relay"),
        ("doors", "api", "doors imports the door api"),
        ("messaging", "kafka_relay", "messaging imports the door kafka_relay"),
        ("event_publisher", "kafka_relay", "event_publisher imports the door kafka_relay"),
        ("observability", "tasks", "observability (a leaf) imports tasks"),
        ("observability", "registry", "observability (a leaf) imports registry"),
        ("domain", "tasks", "domain imports tasks"),
        ("domain", "celery", "domain imports celery"),
        ("domain", "doors", "domain imports doors"),
        ("stripe_client", "domain", "the Stripe adapter stripe_client imports domain"),
        ("stripe_pacing", "domain", "the Stripe adapter stripe_pacing imports domain"),
        ("tasks", "operations", "tasks imports the operator's view"),
    ],
)
def test_an_arrow_against_the_layout_is_reported(graph, src, dst, rule):
    assert rule not in broken_rules(graph)
    assert rule in broken_rules(with_arrow(graph, src, dst))


def _names(lines: Iterable[str]) -> set[str]:
    return {line.split("`")[1].rstrip("/") for line in lines if line.startswith("| `")}


def test_readme_names_every_room_of_the_house(graph):
    readme = (ROOT / "README.md").read_text()
    table = _names(readme.splitlines())
    for room in ("doors", "messaging", "operations", "observability", "api", "kafka_relay", "socket_door"):
        assert room in table, room
