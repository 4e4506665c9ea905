"""The layout's rules, read from the source: apps import one way, no module cycle, no import hidden
inside a function, no reaching into another module's private names, no development tool in
production code. A failure names the module and the line."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("config", "core", "contacts", "messaging", "campaigns", "archival", "dashboard")
PROJECT = (*PRODUCTION, "devstack", "tests", "bench")
# What each production app may import besides itself: the base, then the domains above it.
ALLOWED = {
    "core": set(),
    "config": {"core"},  # settings, Celery, URLs and the platform's commands
    "contacts": {"core"},
    "messaging": {"core", "contacts"},
    "campaigns": {"core", "contacts", "messaging"},
    "archival": {"core", "contacts", "messaging"},
    # Figures across the domains, read only: the top of the stack, imported by config alone.
    "dashboard": {"core", "contacts", "messaging", "campaigns", "archival"},
}
# config wires the apps together (URLs, Celery's beat, health): it may import any of them.
ALLOWED["config"] |= {"contacts", "messaging", "campaigns", "archival", "dashboard"}
DEVELOPMENT_ONLY = {"devstack", "tests", "bench", "moto", "flask", "flask_cors", "pgserver", "playwright"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in PROJECT:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module a dotted name lives in (a module, or a name inside one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


class Import:
    def __init__(self, module: str, target: str, names: list[str], line: int, nested: bool):
        self.module, self.target, self.names, self.line, self.nested = module, target, names, line, nested

    def __repr__(self) -> str:
        return f"{MODULES[self.module].relative_to(ROOT)}:{self.line} imports {self.target}"


def _imports(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, [], child.lineno, inside))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in MODULES else base
                    names = [] if submodule in MODULES else [alias.name]
                    found.append(Import(module, target, names, child.lineno, inside))
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


IMPORTS = {module: _imports(module) for module in MODULES}


def _app(module: str) -> str:
    return module.split(".")[0]


def test_production_apps_import_one_way():
    wrong = [
        found
        for module, imports in IMPORTS.items()
        if _app(module) in ALLOWED
        for found in imports
        if _app(found.target) in PROJECT
        and _app(found.target) != _app(module)
        and _app(found.target) not in ALLOWED[_app(module)]
    ]
    assert not wrong, (
        f"imports against the layers (core, contacts, messaging, then campaigns or archival): {wrong}"
    )


def test_no_module_imports_a_development_tool_in_production():
    wrong = [
        found
        for module, imports in IMPORTS.items()
        if _app(module) in PRODUCTION
        for found in imports
        if found.target.split(".")[0] in DEVELOPMENT_ONLY
    ]
    assert not wrong


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in IMPORTS.items():
        for found in imports:
            target = _resolve(found.target)
            if target and target != module:
                graph[module].add(target)
    cycles = _strongly_connected(graph)
    assert not cycles, f"modules that import each other: {cycles}"


def test_no_import_inside_a_function_in_production_code():
    nested = [
        found
        for module, imports in IMPORTS.items()
        if _app(module) in PRODUCTION
        for found in imports
        if found.nested and _app(found.target) in PROJECT
    ]
    assert not nested, f"imports of project modules inside functions: {nested}"


@pytest.mark.parametrize("apps", [PRODUCTION, ("tests",)], ids=["production", "tests"])
def test_no_module_imports_another_modules_private_name(apps):
    private = [
        (found, name)
        for module, imports in IMPORTS.items()
        if _app(module) in apps
        for found in imports
        if _app(found.target) in PROJECT
        for name in found.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, f"private names imported from other modules: {private}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of two or more modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_only_core_aws_makes_aws_clients():
    """S3 goes through django-storages (core/storage.py); what it cannot do, and every other AWS
    client, goes through core/aws.py's one client cache."""
    clients = [
        found
        for module, imports in IMPORTS.items()
        if _app(module) in PRODUCTION and module != "core.aws"
        for found in imports
        if found.target.split(".")[0] == "boto3"
    ]
    assert not clients, f"boto3 used outside core/aws.py: {clients}"
