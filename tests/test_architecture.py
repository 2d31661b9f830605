"""The shape of the package, read from its source with ``ast``.

Top-level modules of ``pam_twofa`` are what a login may load; subpackages
(``mail``, ``service``, ``cli``, ...) are what a login never loads unless a
feature needs them at that moment. These tests pin the rules that keep it so:
no import cycle (module-level or lazy; ``if TYPE_CHECKING:`` imports do not
count), no use of another module's ``_private`` names, nothing outside ``cli``
imports ``cli``, and no login module imports a subpackage at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "pam_twofa"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# Subpackages a top-level (login) module may import only inside a function,
# when the feature that needs them runs.
NEVER_AT_LOGIN = ("mail", "service", "cli", "timecheck", "enroll", "hostconf", "rollout",
                  "fleet")
# Known cycles, each as the set of its modules (none left: keep it empty). A cycle
# not listed fails; a listed one that is gone fails too, so the list cannot go stale.
EXPECTED_CYCLES: set[frozenset[str]] = set()
# Login modules that still import a subpackage at module level (same branch).
EXPECTED_LOGIN_IMPORTS: set[tuple[str, str]] = set()


class Import:
    """One import statement's target inside the package."""

    def __init__(self, target: str, names: tuple[str, ...], lazy: bool, line: int) -> None:
        self.target = target
        self.names = names
        self.lazy = lazy  # inside a function: runs only when called
        self.line = line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str) -> list[Import]:
    """Every import of ``name`` that can run: module level or in a function body."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found: list[Import] = []
    package = name if is_package(name) else name.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child.test):
                for other in child.orelse:
                    visit(other, lazy)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(alias.name, (), lazy, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append(Import(target, tuple(a.name for a in child.names), lazy,
                                    child.lineno))
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found


def edges_of(name: str) -> list[tuple[str, Import]]:
    """The package modules ``name`` loads, one (module, import) per target; ``from X
    import Y`` loads ``X.Y`` when Y is a submodule (and X's ``__init__`` on the way)."""
    out: list[tuple[str, Import]] = []
    for imp in imports_of(name):
        if imp.target != PACKAGE and not imp.target.startswith(PACKAGE + "."):
            continue
        targets = [imp.target] if imp.target in MODULES else []
        for sub in imp.names:
            if f"{imp.target}.{sub}" in MODULES:
                targets.append(f"{imp.target}.{sub}")
        out += [(t, imp) for t in targets if t != name]
    return out


GRAPH: dict[str, set[str]] = {m: {t for t, _ in edges_of(m)} for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through a component, to print: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    return component


def test_the_graph_sees_every_kind_of_import() -> None:
    """Lazy, relative and submodule imports are edges (else the tests below are blind)."""
    assert "pam_twofa.mail.smtp" in GRAPH["pam_twofa.mail.mailer"]  # lazy, from X import Y
    assert "pam_twofa.service.operations" in GRAPH["pam_twofa.service.server"]
    assert {"pam_twofa.service.enroll", "pam_twofa.service.email",
            "pam_twofa.service.devices"} <= GRAPH["pam_twofa.service.operations"]
    assert "pam_twofa.cli.admin.users" in GRAPH["pam_twofa.cli.admin.main"]
    # a TYPE_CHECKING import is not an edge: smtp names mailer.Server only for mypy
    assert "pam_twofa.mail.mailer" not in GRAPH["pam_twofa.mail.smtp"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert a_cycle({"a": {"b"}, "b": {"a"}}, ["a", "b"]) == ["a", "b", "a"]


def test_no_import_cycles() -> None:
    found = {frozenset(c): c for c in cycles(GRAPH)}
    unexpected = [" -> ".join(a_cycle(GRAPH, c)) for k, c in found.items()
                  if k not in EXPECTED_CYCLES]
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)
    gone = EXPECTED_CYCLES - set(found)
    assert not gone, f"listed cycles that are gone (take them out of EXPECTED_CYCLES): {gone}"


def test_no_module_uses_another_modules_private_names() -> None:
    offences = []
    for name in MODULES:
        tree = ast.parse(MODULES[name].read_text())
        aliases: dict[str, str] = {}  # local name -> package module it names
        for target, imp in edges_of(name):
            for sub in imp.names:
                if f"{imp.target}.{sub}" == target:
                    aliases[sub] = target
                elif (target == imp.target and sub.startswith("_")
                      and not sub.startswith("__")):
                    offences.append(f"{name}:{imp.line}: from {imp.target} import {sub}")
        for imp in imports_of(name):
            if imp.target in MODULES and not imp.names:  # import pam_twofa.x as y
                aliases[imp.target.rpartition(".")[2]] = imp.target
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.asname and (node.module or "").startswith(PACKAGE):
                        aliases[alias.asname] = f"{node.module}.{alias.name}"
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_only_cli_imports_cli() -> None:
    offences = [f"{name}:{imp.line}: imports {target}"
                for name in MODULES if not name.startswith(f"{PACKAGE}.cli")
                for target, imp in edges_of(name) if target.startswith(f"{PACKAGE}.cli")]
    assert not offences, "\n".join(offences)


def test_login_modules_load_no_subpackage_at_module_level() -> None:
    """A top-level module may reach a subpackage only from inside a function."""
    top = [m for m in MODULES if m.count(".") == 1]
    offences = {(name, target) for name in top for target, imp in edges_of(name)
                if not imp.lazy and target.split(".")[1:2] in ([p] for p in NEVER_AT_LOGIN)}
    unexpected = offences - EXPECTED_LOGIN_IMPORTS
    assert not unexpected, sorted(unexpected)
    assert not EXPECTED_LOGIN_IMPORTS - offences, "listed but gone: take it out"


@pytest.mark.parametrize("package", sorted(m for m in MODULES if is_package(m)))
def test_subpackage_init_is_a_docstring_only(package: str) -> None:
    """Every login that touches a subpackage runs its ``__init__``: keep it empty."""
    tree = ast.parse(MODULES[package].read_text())
    body = [n for n in tree.body
            if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if package == PACKAGE:
        return  # the package itself: its __init__ is pinned by test_login_imports
    assert body == [], f"{package}/__init__.py does more than document"
