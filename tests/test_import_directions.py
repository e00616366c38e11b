"""shared/DESIGN.md's dependency directions, enforced by reading every module's imports (AST).

Imports inside functions count as much as top-level ones: a lazy import is still a dependency.
A known violation that cannot be fixed yet sits in ALLOWED below with the reason; the list only
shrinks: a new violation fails, and so does an allowed one that no longer occurs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "medmm"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. medmm.engine.task
    target: str  # the imported module, e.g. medmm.tasks.vqa
    line: int
    top_level: bool  # executed when the module is imported (not inside a function or TYPE_CHECKING)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # `from medmm import tasks` imports the module medmm.tasks: keep the names too
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names if a.name != "*"]


def _imports_of(path: Path) -> list[Import]:
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            type_checking = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            child_top = top and not (in_function or type_checking)
            if isinstance(child, ast.Import):
                out.extend(Import(module, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                out.extend(Import(module, t, child.lineno, top) for t in _resolve(child, module, path.name == "__init__.py"))
            visit(child, child_top)

    visit(tree, True)
    return out


ALL_IMPORTS = [imp for p in sorted(PKG.rglob("*.py")) for imp in _imports_of(p)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (importing package, forbidden packages, why): shared/DESIGN.md "Dependency directions".
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("medmm.data", ("medmm.models", "medmm.tasks", "medmm.engine", "medmm.interpret"), "data imports no model, task or engine code"),
    ("medmm.metrics", ("medmm.models", "medmm.engine", "medmm.tasks", "medmm.interpret"),
     "metrics import no model or engine code (`medmm score` works on any model's output)"),
    ("medmm.models", ("medmm.tasks", "medmm.engine"), "models know no task and no training loop"),
    ("medmm.engine", ("medmm.tasks",), "the engine imports no task (tasks plug into it)"),
    ("medmm.interpret", ("medmm.engine", "medmm.tasks"), "interpret reaches tasks through their hooks, never the engine"),
    ("medmm.humaneval", ("medmm.models", "medmm.engine", "medmm.tasks"), "the web app imports neither models nor the engine"),
    ("medmm", ("medmm.cli",), "nothing imports the CLI"),
]

# Known violations, (importing module, imported module): each with why it is still here and
# what removes it. Keep this list shrinking. Empty since issue 27's first part moved
# `explain_run` out of interpret (to medmm.explain_run) and made tasks engine plug-ins.
ALLOWED: dict[tuple[str, str], str] = {}


def violations(imports: list[Import]) -> set[tuple[str, str]]:
    """(importing module, imported module) pairs that break a rule."""
    found = set()
    for imp in imports:
        for owner, forbidden, _ in RULES:
            if not _within(imp.module, owner) or (owner == "medmm" and _within(imp.module, "medmm.cli")):
                continue
            if any(_within(imp.target, f) for f in forbidden):
                found.add((imp.module, imp.target))
    return found


def test_the_reader_sees_imports_inside_functions_and_relative_ones(tmp_path) -> None:
    pkg = tmp_path / "medmm" / "engine"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    f = pkg / "x.py"
    f.write_text("import torch\nfrom . import api\ndef f():\n    from medmm.tasks import vqa\n"
                 "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy\n")
    global SRC
    old, SRC = SRC, tmp_path
    try:
        got = {(i.target, i.top_level) for i in _imports_of(f)}
    finally:
        SRC = old
    assert {("torch", True), ("medmm.engine", True), ("medmm.engine.api", True), ("medmm.tasks", False),
            ("medmm.tasks.vqa", False), ("numpy", False)} <= got
    fake = [Import("medmm.engine.x", "medmm.tasks.vqa", 4, False), Import("medmm.interpret.y", "medmm.engine", 1, True),
            Import("medmm.demo", "medmm.cli.app", 1, True), Import("medmm.cli.train", "medmm.cli.app", 1, True),
            Import("medmm.tasks.vqa", "medmm.engine.task", 1, True)]
    assert violations(fake) == {("medmm.engine.x", "medmm.tasks.vqa"), ("medmm.interpret.y", "medmm.engine"),
                                ("medmm.demo", "medmm.cli.app")}


@pytest.mark.parametrize("owner,forbidden,why", RULES, ids=[r[0] for r in RULES])
def test_dependency_direction(owner: str, forbidden: tuple[str, ...], why: str) -> None:
    bad = sorted(
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in ALL_IMPORTS
        if _within(imp.module, owner) and not (owner == "medmm" and _within(imp.module, "medmm.cli"))
        and any(_within(imp.target, f) for f in forbidden) and (imp.module, imp.target) not in ALLOWED
    )
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_allowed_violations_still_exist() -> None:
    gone = sorted(set(ALLOWED) - violations(ALL_IMPORTS))
    assert not gone, f"fixed: remove from ALLOWED {gone}"


def test_metrics_import_no_torch_at_module_level() -> None:
    bad = [f"{i.module}:{i.line}" for i in ALL_IMPORTS
           if _within(i.module, "medmm.metrics") and i.top_level and _within(i.target, "torch")]
    assert not bad, "metrics must import without torch; import it inside the function that needs it: " + ", ".join(bad)


# ----------------------------------------------------------------------------- task plug-ins
# The built-in tasks' registered names and packages, from pyproject.toml's entry points (the
# same declaration the registry loads), so this file stays an AST reader that imports nothing.
_EPS = __import__("tomllib").loads((SRC.parent / "pyproject.toml").read_text())["project"]["entry-points"]
TASK_PACKAGES = {name: value.split(":")[0].rsplit(".", 1)[0] for name, value in _EPS["medmm.tasks"].items()}
SCORER_MODULES = sorted(value.split(":")[0] for value in _EPS.get("medmm.scorers", {}).values())


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def task_name_literals(path: Path) -> list[tuple[int, str]]:
    """(line, name) of each string literal equal to a built-in task's name, docstrings and the
    metric label of a `provenance(...)` call (it names a metric family, e.g. medmm.metrics.vqa) aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _docstrings(tree) | {id(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call) and node.args
                                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "provenance"}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in TASK_PACKAGES and id(node) not in skip]


def test_no_task_name_is_written_outside_its_own_package() -> None:
    """interpret, metrics, the engine, the CLI and the other tasks reach a task through the
    registry and its hooks, never by its name (the demo may name the configs it runs)."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        if _within(module, "medmm.demo"):
            continue
        bad += [f"{module}:{line} names task {name!r}" for line, name in task_name_literals(path)
                if not _within(module, TASK_PACKAGES[name])]
    assert not bad, "dispatch through the task registry / Task hooks instead:\n" + "\n".join(bad)


def test_the_name_reader_finds_a_comparison(tmp_path) -> None:
    f = tmp_path / "x.py"
    f.write_text('"""vqa in a docstring is prose."""\nif task == "vqa":\n    provenance("vqa")\n')
    assert task_name_literals(f) == [(2, "vqa")]


@pytest.mark.parametrize("module", SCORER_MODULES)
def test_file_scorers_are_torch_free(module: str) -> None:
    """`medmm score` loads every task's file scorer: none may import torch, models, the engine,
    interpret or another task module (which would bring torch with it)."""
    assert (SRC / (module.replace(".", "/") + ".py")).is_file(), f"pyproject.toml names a missing module {module}"
    forbidden = ("torch", "medmm.models", "medmm.engine", "medmm.interpret", "medmm.tasks")
    bad = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in ALL_IMPORTS if imp.module == module
           and any(_within(imp.target, f) for f in forbidden) and not _within(imp.target, module)]
    assert not bad, "\n".join(bad)
