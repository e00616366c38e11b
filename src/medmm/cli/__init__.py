"""`medmm` command line: thin wrappers over library functions.

Each module of this package adds its commands to `medmm.cli.app.app`; `main` imports them all.
Nothing imports the CLI.
"""

import importlib
import pkgutil
import sys

from medmm import plugins
from medmm.cli.app import app
from medmm.errors import MedmmError


def _load_commands() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "app":
            importlib.import_module(f"{__name__}.{mod.name}")


def main() -> None:
    """Entry point of the `medmm` command."""
    _load_commands()
    try:
        plugins.load_if_stale()  # the built-in tasks where their entry points are not installed
        app()
    except MedmmError as exc:  # a user error: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


_load_commands()
