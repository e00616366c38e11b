"""Tasks: one package per task (model + loss + batching + predictions + metrics + hooks).

Each package's `task.py` is imported here so its @register_task runs. The engine never imports
this package: `medmm.plugins.load()` does, and installed copies of medmm find the same tasks
through the `medmm.tasks` entry points of pyproject.toml.
"""

import importlib
import importlib.util
import pkgutil

for _pkg in pkgutil.iter_modules(__path__):
    if _pkg.ispkg and importlib.util.find_spec(f"{__name__}.{_pkg.name}.task") is not None:
        importlib.import_module(f"{__name__}.{_pkg.name}.task")
