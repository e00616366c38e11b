"""Tasks: model + loss + batching + predictions + metrics, one module each.

Every module in this package is imported here so its @register_task runs.
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
