"""Human evaluation web app: storage, accounts, blinded study design, agreement statistics.

Imports neither torch, ``medmm.models`` nor ``medmm.engine``, so the server starts fast.
Heavy submodules (SQLAlchemy, FastAPI) load on first use of the names below.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_study_from_predictions", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_study_from_predictions":
        from medmm.humaneval.studies import create_study_from_predictions

        return create_study_from_predictions
    if name == "create_app":
        from medmm.humaneval.app import create_app

        return create_app
    raise AttributeError(name)
