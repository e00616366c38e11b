"""The one generic registry (medmm.registry) and every registry of medmm built on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medmm.errors import MedmmError
from medmm.registry import Registry, UnknownNameError


def test_register_look_up_and_filter_by_metadata() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b", colour="red")
    def b() -> None: ...

    assert reg.register("a", 1, colour="blue") == 1  # direct form returns the object
    assert reg["b"] is b and reg.entry("a").meta == {"colour": "blue"}
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert reg.names(colour="red") == ["b"] and reg.names(colour="green") == [] and reg.names(size=1) == []
    assert "a" in reg and "z" not in reg and reg.get("z") is None and 3 not in reg
    with pytest.raises(MedmmError, match="widget 'a' registered twice"):
        reg.register("a", 2)
    with pytest.raises(TypeError):
        reg.entry("a").meta["colour"] = "x"  # read-only metadata


def test_unknown_name_lists_the_known_ones_and_is_a_key_error() -> None:
    reg: Registry[int] = Registry("widget", hint=" (or w:<anything>)")
    reg.register("b", 2)
    reg.register("a", 1)
    with pytest.raises(UnknownNameError) as err:
        reg["zz"]
    assert str(err.value) == "unknown widget 'zz'; known: a, b (or w:<anything>)"
    assert isinstance(err.value, KeyError) and isinstance(err.value, MedmmError)
    with pytest.raises(UnknownNameError) as err:
        Registry("gadget").entry("x")
    assert str(err.value) == "unknown gadget 'x'; known: none"


def test_registration_order_when_not_sorted_and_independent_copies() -> None:
    reg: Registry[int] = Registry("widget", sort=False)
    for name in ("c", "a", "b"):
        reg.register(name, ord(name), even=ord(name) % 2 == 0)
    assert reg.names() == ["c", "a", "b"] and reg.names(even=False) == ["c", "a"]
    assert list(reg.values()) == [99, 97, 98]
    copy = reg.copy()
    copy.register("d", 100)
    assert "d" in copy and "d" not in reg


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """tmp_path on sys.path; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("toyreg"):
            del sys.modules[name]


def test_discovery_imports_every_module_of_a_package_before_the_first_lookup(sandbox) -> None:
    _write(sandbox, {
        "toyreg_home.py": "from medmm.registry import Registry\nR = Registry('part', discover=('toyreg_parts.*',))\n",
        "toyreg_parts/__init__.py": "",
        "toyreg_parts/one.py": "from toyreg_home import R\nR.register('one', 1, size=1)\n",
        "toyreg_parts/two.py": "from toyreg_home import R\nR.register('two', 2, size=2)\n",
    })
    from toyreg_home import R

    assert "toyreg_parts.one" not in sys.modules  # nothing imported before a lookup
    assert R["two"] == 2 and R.names(size=1) == ["one"]


def _distribution(root: Path, group: str, entry: str, module: str, body: str) -> None:
    """An installed package as importlib.metadata sees one: a module and a dist-info folder."""
    _write(root, {
        f"{module}.py": body,
        "toyreg_dist-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: toyreg-dist\nVersion: 0.1\n",
        "toyreg_dist-0.1.dist-info/entry_points.txt": f"[{group}]\n{entry}\n",
    })


def _plugin_registry(root: Path) -> None:
    _write(root, {"toyreg_host.py": "from medmm.registry import Registry\n"
                                    "R = Registry('gizmo', entry_points='toyreg.gizmos')\nR.register('builtin', 0)\n"})


def test_entry_points_are_loaded_on_a_miss_and_before_listing(sandbox) -> None:
    _plugin_registry(sandbox)
    _distribution(sandbox, "toyreg.gizmos", "spinner = toyreg_plugin:Spinner", "toyreg_plugin",
                  "from toyreg_host import R\n@R.register('spinner', speed=3)\nclass Spinner: ...\n")
    from toyreg_host import R

    assert R["builtin"] == 0 and "toyreg_plugin" not in sys.modules  # a hit loads nothing
    assert R["spinner"].__name__ == "Spinner" and R.meta("spinner") == {"speed": 3}
    assert R.names() == ["builtin", "spinner"] and R.load_entry_points() == []  # loaded once


def test_an_entry_point_must_register_under_its_own_name(sandbox) -> None:
    _plugin_registry(sandbox)
    _distribution(sandbox, "toyreg.gizmos", "spin = toyreg_plugin:Spinner", "toyreg_plugin",
                  "from toyreg_host import R\n@R.register('spinner')\nclass Spinner: ...\n")
    from toyreg_host import R

    with pytest.raises(MedmmError, match=r"gizmo plug-in 'spin' \(toyreg_plugin:Spinner\) registers as 'spinner', not 'spin'"):
        R["spin"]


def test_an_entry_point_object_nothing_registered_is_handed_to_register_entry_point(sandbox) -> None:
    """A registry with `register_entry_point` (the file scorers') registers plug-in objects that
    their modules left unregistered, through the caller's checking function."""
    _write(sandbox, {"toyreg_host.py": "from medmm.registry import Registry\n"
                                       "def adopt(name, obj):\n"
                                       "    if not isinstance(obj, int):\n"
                                       "        raise TypeError(f'is a {type(obj).__name__}, not an int')\n"
                                       "    R.register(name, obj, adopted=True)\n"
                                       "R = Registry('gizmo', entry_points='toyreg.gizmos', register_entry_point=adopt)\n"})
    _distribution(sandbox, "toyreg.gizmos", "seven = toyreg_plugin:SEVEN\nword = toyreg_plugin:WORD", "toyreg_plugin",
                  "SEVEN = 7\nWORD = 'seven'\n")
    from toyreg_host import R

    assert R.registered("seven") is False  # asking loads nothing
    with pytest.raises(MedmmError, match=r"gizmo plug-in 'word' \(toyreg_plugin:WORD\): is a str, not an int"):
        R["seven"]  # a miss loads every plug-in: the bad one is named
    assert R.registered("seven") and R["seven"] == 7 and R.meta("seven") == {"adopted": True}
    assert R.copy().register_entry_point is R.register_entry_point


def test_a_broken_plugin_is_named(sandbox) -> None:
    _plugin_registry(sandbox)
    _distribution(sandbox, "toyreg.gizmos", "bad = toyreg_plugin:Bad", "toyreg_plugin", "raise RuntimeError('boom')\n")
    from toyreg_host import R

    with pytest.raises(MedmmError, match=r"gizmo plug-in 'bad' \(toyreg_plugin:Bad\) failed to load: boom"):
        R.names()


def _medmm_lookups():
    from medmm.data.label_maps import get_label_map
    from medmm.data.registry import dataset_info
    from medmm.engine.task import get_task_class
    from medmm.models.encoders import create_image_encoder, create_text_encoder
    from medmm.models.families import get_family
    from medmm.models.fusion import create_fusion, fusion_info
    from medmm.models.registry import create_model

    return [
        ("dataset", dataset_info), ("label map", get_label_map), ("task", get_task_class),
        ("image encoder", create_image_encoder), ("text encoder", create_text_encoder), ("model family", get_family),
        ("fusion", fusion_info), ("fusion", lambda n: create_fusion(n, 4, 4, 4)), ("model", create_model),
    ]


@pytest.mark.parametrize("kind,lookup", _medmm_lookups(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_medmm_registry_names_the_known_entries(kind: str, lookup) -> None:
    from medmm import plugins

    plugins.load()
    with pytest.raises(UnknownNameError, match=rf"^unknown {kind} 'no_such_thing'; known: [a-z_0-9]+, "):
        lookup("no_such_thing")
