"""Plug-in loader: fills the registries with medmm's built-in tasks and the installed plug-ins.

The engine imports no task (shared/DESIGN.md): tasks register themselves into
`medmm.engine.task`'s registry when their module is imported. This module, outside the engine,
does the importing: the built-in tasks (`medmm.tasks`, which imports each of its modules) and
every `medmm.tasks` entry point of installed packages, e.g. in a plug-in's pyproject.toml:

    [project.entry-points."medmm.tasks"]
    my_task = "my_package.my_task:MyTask"      # name = the name MyTask registers under

Library code that builds tasks by name (`medmm.engine.api.train`, `load_run`) finds the
installed entry points on its own; medmm declares its own tasks the same way. Where medmm's
entry-point metadata is stale (an editable install made before they were declared; fixed by
`pip install -e .`), `load_if_stale()` imports the built-in tasks instead: the `medmm` command
and the test suite call it, and it costs nothing (no torch import) when the metadata is current.
"""

from __future__ import annotations

from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "medmm.tasks"  # the same group medmm.engine.task reads


def load() -> list[str]:
    """Register the built-in tasks and every installed task plug-in; returns the task names.

    Idempotent (modules are imported once).
    """
    import medmm.tasks  # noqa: F401  (each module's @register_task runs)
    from medmm.engine.task import list_tasks

    return list_tasks()  # also loads the installed entry points


def builtin_entry_points_missing() -> bool:
    """True when medmm's own `medmm.tasks` entry points are not installed (stale metadata)."""
    return not any(ep.value.startswith("medmm.tasks.") for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_if_stale() -> None:
    """`load()` only where the installed metadata lacks medmm's task entry points."""
    if builtin_entry_points_missing():
        load()
