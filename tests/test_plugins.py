"""Tasks as engine plug-ins: medmm's own entry points, and a third-party task found through one."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from medmm import plugins
from medmm.engine import task as engine_task
from medmm.errors import MedmmError

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_declares_every_builtin_task_under_its_registered_name() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][plugins.ENTRY_POINT_GROUP]
    names = plugins.load()
    builtin = {n for n in names if engine_task.get_task_class(n).__module__.startswith("medmm.tasks.")}
    assert set(declared) == builtin
    for name, value in declared.items():
        module, cls = value.split(":")
        assert getattr(sys.modules[module], cls) is engine_task.get_task_class(name)


def _fake_distribution(root: Path, entry: str, module_body: str) -> None:
    """An installed package, as importlib.metadata sees one: a module and a dist-info folder."""
    (root / "toy_plugin_mod.py").write_text(module_body)
    info = root / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[medmm.tasks]\n{entry}\n")


_MODULE = '''
from medmm.engine.task import Task, register_task

@register_task("toy_plugin_task")
class ToyPluginTask(Task):
    pass
'''


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(engine_task, "_TASKS", engine_task._TASKS.copy())
    yield
    sys.modules.pop("toy_plugin_mod", None)


def test_a_third_party_task_is_found_through_its_entry_point(tmp_path, monkeypatch, clean_registry) -> None:
    _fake_distribution(tmp_path, "toy_plugin_task = toy_plugin_mod:ToyPluginTask", _MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_plugin_mod" not in sys.modules
    cls = engine_task.get_task_class("toy_plugin_task")
    assert cls.__name__ == "ToyPluginTask" and "toy_plugin_task" in engine_task.list_tasks()


def test_an_entry_point_named_unlike_its_task_is_an_error(tmp_path, monkeypatch, clean_registry) -> None:
    _fake_distribution(tmp_path, "toy_plugin = toy_plugin_mod:ToyPluginTask", _MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MedmmError, match="registers as 'toy_plugin_task', not 'toy_plugin'"):
        engine_task.get_task_class("toy_plugin")


def test_unknown_task_names_the_known_ones_and_the_plugin_mechanism() -> None:
    plugins.load()
    with pytest.raises(MedmmError, match=r"unknown task 'no_such_task'; known: diagnosis.*entry points"):
        engine_task.get_task_class("no_such_task")
