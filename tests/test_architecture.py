"""The layout rules of ARCHITECTURE.md ("Where the code lives"), checked on the source.

Plain AST reads of every production module, no imports: every `import` and
`from ... import` counts, including ones inside functions and `TYPE_CHECKING`
blocks, because a lazy import is still a dependency.

- no library module (`pipelines schemas quality inference trainer`) imports
  `dagster` or `assets` (`trainer` may use `dagster_pipes`, a separate package);
- imports point down the table: schemas → nothing of ours; quality and
  inference → schemas; trainer → schemas, inference; pipelines → those four,
  and `trainer` only from the training and evaluation steps;
- there is no import cycle among the project's modules;
- a module over `MAX_LINES` says at its top why it is long.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "quality", "inference", "trainer", "pipelines", "assets")
LIBRARIES = ("schemas", "quality", "inference", "trainer", "pipelines")
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "quality": {"schemas"},
    "inference": {"schemas"},
    "trainer": {"schemas", "inference"},
    "pipelines": {"schemas", "quality", "inference", "trainer"},
    "assets": {"schemas", "quality", "inference", "trainer", "pipelines"},
}
# Only these modules of `pipelines` may import the trainer: the steps that launch and
# evaluate training (ARCHITECTURE.md).
TRAINER_USERS = ("pipelines.steps.train", "pipelines.steps.evaluation")
MAX_LINES = 500
LONG_MODULE_MARK = "Why this module is long:"


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is imported."""

    importer: str
    imported: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def production_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([module] if module else [])])


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """The modules `name` imports; `from pkg import mod` counts as importing `pkg.mod`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                is_package = path.name == "__init__.py"
                target = _resolve_relative(name, is_package, node.level, node.module)
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.append(Import(name, child if child in known else target, node.lineno))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    modules = production_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_libraries_never_import_dagster_or_assets(graph: dict[str, list[Import]]) -> None:
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for name, imports in graph.items()
        if _top(name) in LIBRARIES
        for i in imports
        if _top(i.imported) in {"dagster", "assets"}
        or (i.imported.startswith("dagster_") and not i.imported.startswith("dagster_pipes"))
    ]
    assert not wrong, "library modules import Dagster or assets/:\n" + "\n".join(wrong)


def test_imports_point_down_the_table(graph: dict[str, list[Import]]) -> None:
    wrong = []
    for name, imports in graph.items():
        package = _top(name)
        for i in imports:
            target = _top(i.imported)
            if target not in PACKAGES or target == package:
                continue
            if target not in ALLOWED[package]:
                wrong.append(f"{i.importer}:{i.line} imports {i.imported} ({package} → {target})")
            elif package == "pipelines" and target == "trainer" and name not in TRAINER_USERS:
                wrong.append(f"{i.importer}:{i.line} imports {i.imported} (only {TRAINER_USERS})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles(graph: dict[str, list[Import]]) -> None:
    edges = {
        name: {i.imported for i in imports if i.imported in graph and i.imported != name}
        for name, imports in graph.items()
    }
    assert not _cycles(edges), f"import cycles: {_cycles(edges)}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import dagster\n"
        "def f():\n    from assets.runner import x\n"
    )
    found = {i.imported for i in imports_of("pipelines.mod", module, set())}
    assert {"dagster", "assets.runner"} <= found


def test_long_modules_say_why(graph: dict[str, list[Import]]) -> None:
    modules = production_modules()
    unexplained = []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        n_lines = len(text.splitlines())
        if n_lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if LONG_MODULE_MARK not in docstring:
            unexplained.append(f"{name} ({n_lines} lines)")
    assert not unexplained, (
        f"modules over {MAX_LINES} lines without '{LONG_MODULE_MARK}' in their docstring: "
        + ", ".join(unexplained)
    )
