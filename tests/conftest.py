"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tasks are engine plug-ins found through medmm's `medmm.tasks` entry points; in a venv whose
# editable install predates them, register the built-in tasks directly (no-op otherwise).
from medmm import plugins  # noqa: E402

plugins.load_if_stale()
SHARED_DATA = Path(os.environ.get("MEDMM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real public datasets (../shared/data), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set MEDMM_SHARED_DATA)")
    return SHARED_DATA


def shared_dataset(name: str) -> Path:
    """Path of one dataset folder under ../shared/data, or skip the test."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"dataset {name} not found at {path} (set MEDMM_SHARED_DATA)")
    return path


def load_benchmark(name: str) -> ModuleType:
    """Import the script benchmarks/NAME.py as module NAME (benchmarks/ is a folder of scripts,
    not a package); registered in sys.modules so its dataclasses resolve."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty humaneval database: a SQLite file, or a fresh database on the test PostgreSQL server
    (MEDMM_TEST_POSTGRES_URL, started by .ci/start-postgres.sh; skipped when unset)."""
    if request.param == "sqlite":
        yield str(tmp_path / "he.sqlite")
        return
    url = os.environ.get("MEDMM_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MEDMM_TEST_POSTGRES_URL is not set (run .ci/start-postgres.sh)")
    from medmm.humaneval.testing import fresh_postgres_database

    with fresh_postgres_database(url) as fresh:
        yield fresh


def merged(base: dict, **changes) -> dict:
    """A copy of config section `base` with `changes` merged in, nested mappings key by key:
    merged(SMALL, decoding={"beam_size": 3}) keeps SMALL's other decoding keys. To replace a
    mapping wholesale, put it in the base: merged({**SMALL, "fusion_kwargs": {}}, ...)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], **value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on the shared 2-core machine, two spinning OpenMP
    threads make these tiny models far slower. Use with ``pytestmark = usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def spy_sample_decode(monkeypatch):
    """spy(module) -> a list that receives the GenerationConfig of every `sample_decode` call the
    module makes (it imported the name from medmm.models.decoders, so it is patched there)."""

    def install(module: ModuleType) -> list:
        seen = []
        real = module.sample_decode

        def spy(decoder, memory, pad, cfg, *a, **kw):
            seen.append(cfg)
            return real(decoder, memory, pad, cfg, *a, **kw)

        monkeypatch.setattr(module, "sample_decode", spy)
        return seen

    return install


def shipped_tasks() -> list[str]:
    """Registered tasks of medmm and installed plug-ins, without the toy tasks that test modules
    (tests/*_toy.py and the like) register while the suite runs."""
    import sys

    from medmm import plugins
    from medmm.engine.task import get_task_class

    tests_dir = Path(__file__).resolve().parent
    out = []
    for name in plugins.load():
        module = sys.modules.get(get_task_class(name).__module__)
        path = getattr(module, "__file__", None)
        if path is None or tests_dir not in Path(path).resolve().parents:
            out.append(name)
    return out
