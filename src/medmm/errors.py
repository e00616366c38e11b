"""Errors that name the file and the problem, so a user can fix their data."""

from __future__ import annotations

from pathlib import Path


class MedmmError(Exception):
    """Base class of every error medmm raises on purpose."""


class BadInputError(MedmmError):
    """An input file (image, report, annotation) is unreadable or invalid.

    The message always starts with the path, then says what is wrong with it.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class MissingDependencyError(MedmmError, ImportError):
    """An optional dependency is not installed; says which extra brings it."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is needed{what} but not installed. "
            f"Install it with: pip install 'medmm[{extra}]' (install torch==2.13.0 first for CPU)."
        )


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional module or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
