"""Config dataclasses document themselves: every key of every task's `model:` section (and of
data:/trainer:) has help, `medmm config show` prints it, old flat keys fail naming their new
place, and `medmm config migrate` rewrites an old config to the nested layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from medmm.engine.config import ConfigError, DataConfig, TrainerConfig, build_dataclass, load_config
from medmm.engine.config_fields import attribute_docs, field_help, migrate, moved_keys, section_types

REPO = Path(__file__).resolve().parents[1]


def _shipped_tasks() -> list[str]:
    """Every shipped task (a new task's keys are checked for free); none without torch."""
    try:
        from conftest import shipped_tasks

        return shipped_tasks()
    except ImportError:
        return []


TASKS = _shipped_tasks()


def _config(task: str) -> type:
    pytest.importorskip("torch")
    from medmm.engine.config_fields import task_config

    return task_config(task)


@pytest.mark.parametrize("task", TASKS)
def test_every_model_key_is_documented(task):
    cls = _config(task)
    missing = [f.key for f in field_help(cls) if not f.help]
    assert not missing, f"{task}: undocumented model keys {missing} (add them to the Attributes: of the docstring)"


@pytest.mark.parametrize("cls", [DataConfig, TrainerConfig])
def test_data_and_trainer_keys_are_documented(cls):
    assert [f.key for f in field_help(cls) if not f.help] == []


@pytest.mark.parametrize("task", ["report_generation", "vqa", "diagnosis", "segmentation"])
def test_moved_keys_point_at_existing_keys_and_keep_their_defaults_apart(task):
    cls = _config(task)
    table = moved_keys(cls)
    current = {f.key for f in field_help(cls)}
    top = {f.key.split(".")[0] for f in field_help(cls)}
    sections = set(section_types(cls))
    assert table, f"{task}: its flat keys of earlier versions must be listed"
    for old, new in table.items():
        assert new in current, f"{task}: {old} -> {new}, which is not a key"
        # an old scalar key may name a section now (`loss: NAME` -> `loss.name`): only a mapping is the section
        assert old not in top or (old in sections and new.startswith(f"{old}.")), \
            f"{task}: old key {old} is also a current key (the table would shadow it)"
    assert len(set(table.values())) == len(table)  # no two old keys land on one new key
    # the flat sections grew no more than 16 top-level keys
    assert len(top) <= 16, f"{task}: {len(top)} top-level keys"


def test_attribute_docs_parse_groups_and_continuations():
    @dataclass
    class Doc:
        """Example.

        Attributes:
            a, b: shared text
                continued here.
            c: own text.

        Not an attribute: the section ended.
        """

        a: int = 0
        b: int = 0
        c: list[int] = field(default_factory=list)

    assert attribute_docs(Doc) == {"a": "shared text continued here.", "b": "shared text continued here.", "c": "own text."}


@dataclass
class Inner:
    """Inner section.

    Attributes:
        size: a size.
    """

    size: int = 3


@dataclass
class Outer:
    """Outer section.

    Attributes:
        name: a name.
        inner: the inner section.
    """

    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    moved_keys: ClassVar[dict[str, str]] = {"inner_size": "inner.size"}  # a class attribute, not a field


def test_nested_sections_moved_keys_and_migrate():
    assert set(section_types(Outer)) == {"inner"}
    assert [(f.key, f.default, f.help) for f in field_help(Outer, "model.")] == [
        ("model.name", "x", "a name."), ("model.inner.size", 3, "a size.")]
    with pytest.raises(ConfigError) as info:
        build_dataclass(Outer, {"inner_size": 5}, "run.yaml", prefix="model.")
    assert str(info.value) == ("run.yaml: model.inner_size: moved to model.inner.size (config sections are nested now; "
                               "`medmm config migrate FILE` rewrites an old config)")
    with pytest.raises(ConfigError, match=r"model\.inner\.sise: unknown key \(did you mean 'size'\?\) \(known keys: size\)"):
        build_dataclass(Outer, {"inner": {"sise": 5}}, prefix="model.")
    new, moves = migrate(Outer, {"name": "y", "inner_size": 5})
    assert new == {"name": "y", "inner": {"size": 5}} and moves == [("inner_size", "inner.size")]
    assert build_dataclass(Outer, new) == Outer("y", Inner(5))
    assert migrate(Outer, {"inner": {"size": 4}, "name": "z"})[0] == {"inner": {"size": 4}, "name": "z"}  # already new
    with pytest.raises(ConfigError, match="given twice"):
        migrate(Outer, {"inner": {"size": 4}, "inner_size": 5})


def test_old_flat_override_fails_in_one_line_naming_the_new_key():
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs/report/iu_xray.yaml", ["model.beam_size=3"], validate_model=True)
    msg = str(info.value)
    assert "\n" not in msg and "command-line override 'model.beam_size=3'" in msg and "model.decoding.beam_size" in msg


def test_old_flat_config_file_fails_and_migrate_rewrites_it(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from medmm.cli import app

    monkeypatch.chdir(REPO)
    old = tmp_path / "old.yaml"
    old.write_text("task: vqa\ndata: {dataset: vqa_rad, root: ../shared/data/vqa_rad}\n"
                   "model: {freeze_image: true, memory_weight: 1.0, text: {freeze: true}, fusion: gated}\n")
    with pytest.raises(ConfigError, match=r"old\.yaml: model\.freeze_image: moved to model\.image\.freeze"):
        load_config(old, validate_model=True)
    res = CliRunner().invoke(app, ["config", "migrate", str(old)])
    assert res.exit_code == 0, res.output
    text = res.stdout if hasattr(res, "stdout") else res.output
    new = yaml.safe_load(text[text.index("task:"):])
    assert new["model"] == {"image": {"freeze": True}, "memory": {"weight": 1.0}, "text": {"freeze": True}, "fusion": "gated"}
    res = CliRunner().invoke(app, ["config", "migrate", str(old), "--in-place"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "old.yaml.bak").read_text().startswith("task: vqa")
    cfg = load_config(old, validate_model=True)
    assert cfg.model["image"] == {"freeze": True}


def test_config_show_prints_every_key_with_its_help():
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from medmm.cli import app

    res = CliRunner().invoke(app, ["config", "show", "report_generation", "--all"])
    assert res.exit_code == 0, res.output
    out = res.output
    cls = _config("report_generation")
    for f in field_help(cls, prefix="model.") + field_help(TrainerConfig, prefix="trainer."):
        assert f"\n{f.key}: " in out, f.key
    assert "model.decoding.beam_size: int = 1\n    beam width (1 = greedy)." in out
    assert "(undocumented)" not in out
    table = CliRunner().invoke(app, ["config", "show", "report_generation", "--moved"]).output.splitlines()
    assert "model.beam_size -> model.decoding.beam_size" in table and len(table) == len(cls.moved_keys)
    bad = CliRunner().invoke(app, ["config", "show", "no_such_task"])
    assert bad.exit_code != 0


def test_run_directories_of_an_earlier_version_are_read_in_the_new_layout(tmp_path, caplog):
    """A config.yaml medmm wrote before the move (flat keys) still loads, with a warning: trained
    runs keep evaluating, serving and resuming; only configs users write get the error."""
    pytest.importorskip("torch")
    import logging

    from medmm.engine import rundir as rd

    (tmp_path / rd.CONFIG).write_text(yaml.safe_dump({
        "task": "report_generation", "data": {"dataset": "iu_xray", "root": str(tmp_path)},
        "model": {"beam_size": 3, "rag_k": 2, "dim": 32}}))
    with caplog.at_level(logging.WARNING):
        cfg = rd.read_yaml_config(tmp_path)
    assert cfg.model == {"decoding": {"beam_size": 3}, "retrieval": {"rag_k": 2}, "dim": 32}
    assert "model.beam_size -> model.decoding.beam_size" in caplog.text and "medmm config migrate" in caplog.text
    with pytest.raises(ConfigError, match=r"model\.beam_size: moved to model\.decoding\.beam_size"):
        load_config(tmp_path / rd.CONFIG, validate_model=True)  # the same file given to `medmm train`


def test_a_checkpoint_of_an_earlier_version_resumes_under_the_migrated_config(tmp_path):
    torch = pytest.importorskip("torch")
    from medmm.engine import rundir as rd
    from medmm.engine.config import config_from_dict
    from medmm.engine.resume import prepare_run_dir

    data = {"dataset": "vqa_rad", "root": str(tmp_path)}
    new = config_from_dict({"task": "vqa", "data": data, "model": {"memory": {"weight": 1.0}, "fusion": "gated"}})
    old = {**new.to_dict(), "model": {"memory_weight": 1.0, "fusion": "gated"}}  # what an earlier medmm saved
    (tmp_path / rd.CHECKPOINTS).mkdir()
    torch.save({"state_dict": {}, "loops": {}, "global_step": 4, "medmm_config": old}, tmp_path / rd.CHECKPOINTS / rd.LAST_CKPT)
    assert prepare_run_dir(new, tmp_path, rank0=True).step == 4  # same config once the keys are moved
    other = config_from_dict({"task": "vqa", "data": data, "model": {"memory": {"weight": 2.0}, "fusion": "gated"}})
    with pytest.raises(Exception, match=r"different config \(model\.memory\.weight\)"):
        prepare_run_dir(other, tmp_path, rank0=True)
