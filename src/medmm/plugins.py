"""Plug-in loader: fills the registries with medmm's built-in tasks and the installed plug-ins.

The engine imports no task (shared/DESIGN.md): tasks register themselves into
`medmm.engine.task`'s registry when their module is imported, and their torch-free file scorers
into `medmm.metrics.score`'s. This module, outside both, does the importing: the built-in task
packages (`medmm.tasks.<package>.task` and `.file_scorer`) and the entry points of installed
packages, e.g. in a plug-in's pyproject.toml:

    [project.entry-points."medmm.tasks"]
    my_task = "my_package.my_task:MyTask"                  # name = the name MyTask registers under
    [project.entry-points."medmm.scorers"]
    my_task = "my_package.my_task_scoring:SCORER"          # optional: `medmm score --task my_task`

Library code that builds tasks or scorers by name (`medmm.engine.api.train`, `load_run`,
`medmm.metrics.score.score_files`) finds the installed entry points on its own; medmm declares its
own tasks the same way. Where medmm's entry-point metadata is stale (an editable install made
before they were declared; fixed by `pip install -e .`), `load_if_stale()` imports the built-in
modules instead: the `medmm` command and the test suite call it, and it costs nothing (no torch
import) when the metadata is current.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "medmm.tasks"  # the same group medmm.engine.task reads
SCORER_ENTRY_POINT_GROUP = "medmm.scorers"  # the same group medmm.metrics.score reads


def _import_builtin(module: str) -> None:
    """Import `medmm.tasks.<package>.<module>` of every built-in task package that has one."""
    import medmm.tasks

    for pkg in pkgutil.iter_modules(medmm.tasks.__path__):
        name = f"medmm.tasks.{pkg.name}.{module}"
        if pkg.ispkg and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def load() -> list[str]:
    """Register the built-in tasks and scorers and every installed plug-in; returns the task names.

    Idempotent (modules are imported once).
    """
    _import_builtin("task")  # each module's @register_task runs
    load_scorers()
    from medmm.engine.task import list_tasks

    return list_tasks()  # also loads the installed entry points


def load_scorers() -> list[str]:
    """Register the built-in file scorers and the installed `medmm.scorers` plug-ins, without
    importing torch; returns the names of the tasks with a file scorer."""
    _import_builtin("file_scorer")
    from medmm.metrics.score import known_scorers

    return known_scorers()


def _builtin_modules(module: str) -> set[str]:
    """`medmm.tasks.<package>.<module>` of every built-in task package holding that file (no import)."""
    from pathlib import Path

    import medmm.tasks

    return {f"medmm.tasks.{pkg.name}.{module}" for pkg in pkgutil.iter_modules(medmm.tasks.__path__)
            if pkg.ispkg and any((Path(p) / pkg.name / f"{module}.py").is_file() for p in medmm.tasks.__path__)}


def builtin_entry_points_missing(group: str = ENTRY_POINT_GROUP) -> bool:
    """True when an entry point of `group` for one of medmm's own task modules is not installed
    (stale metadata, e.g. a task package added since the last `pip install -e .`)."""
    installed = {ep.value.split(":")[0] for ep in entry_points(group=group)}
    return bool(_builtin_modules("task" if group == ENTRY_POINT_GROUP else "file_scorer") - installed)


def load_if_stale() -> None:
    """`load()` only where the installed metadata lacks medmm's task entry points; the
    torch-free `load_scorers()` where it lacks only the scorer entry points."""
    if builtin_entry_points_missing():
        load()
    elif builtin_entry_points_missing(SCORER_ENTRY_POINT_GROUP):
        load_scorers()
