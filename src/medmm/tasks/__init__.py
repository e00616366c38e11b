"""Tasks: model + loss + batching + predictions + metrics, one module each.

Every module in this package is imported here so its @register_task runs. The engine never
imports this package: `medmm.plugins.load()` does, and installed copies of medmm find the same
tasks through the `medmm.tasks` entry points of pyproject.toml.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
