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
