"""Run configs: YAML + dotted overrides -> typed dataclasses, clear errors naming key and file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from medmm.engine.config import (
    ConfigError,
    RunConfig,
    TrainerConfig,
    build_dataclass,
    dump_config,
    load_config,
    parse_override,
)

BASE = """\
# medmm train THIS --out runs/x   (seconds; toy)
task: toy
seed: 3
data:
  dataset: vqa_rad
  root: some/relative/root
trainer:
  max_epochs: 2
  lr: 1e-3
  precision: 32
model:
  hidden: 8
"""


def write(tmp_path: Path, text: str = BASE) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_load_types_defaults_and_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path))
    assert isinstance(cfg, RunConfig)
    assert cfg.task == "toy" and cfg.seed == 3
    assert cfg.trainer.max_epochs == 2
    assert cfg.trainer.lr == pytest.approx(1e-3) and isinstance(cfg.trainer.lr, float)  # "1e-3" is a str in YAML 1.1
    assert cfg.trainer.precision == "32"
    assert cfg.trainer.batch_size == TrainerConfig().batch_size
    assert cfg.data.skip_bad is True and cfg.data.split == "official"
    assert Path(cfg.data.root) == (tmp_path / "some/relative/root").resolve()
    assert cfg.model == {"hidden": 8}


def test_overrides_are_yaml_scalars(tmp_path):
    cfg = load_config(
        write(tmp_path),
        ["trainer.max_epochs=5", f"data.root={tmp_path}", "model.fusion=gated", "trainer.num_threads=null", "seed=7"],
    )
    assert cfg.trainer.max_epochs == 5
    assert cfg.data.root == str(tmp_path.resolve())
    assert cfg.model == {"hidden": 8, "fusion": "gated"}
    assert cfg.trainer.num_threads is None
    assert cfg.seed == 7
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.max_epoch=3", "trainer.max_epoch"),
        ("data.nonsense=1", "data.nonsense"),
        ("bogus=1", "bogus"),
        ("trainer.max_epochs=three", "trainer.max_epochs"),
        ("trainer.precision=16", "trainer.precision"),
        ("data.skip_bad=maybe", "data.skip_bad"),
    ],
)
def test_bad_keys_and_values_name_key_and_the_override(tmp_path, override, key):
    path = write(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert info.value.key == key
    # The mistake is on the command line: blamed on the override, not on the config file.
    assert str(info.value).startswith(f"command-line override {override!r}: {key}: ")
    assert str(path) not in str(info.value)


def test_misspelled_key_suggests_the_close_name(tmp_path):
    with pytest.raises(ConfigError, match=r"^command-line override 'trainer.max_epoch=2': trainer.max_epoch: "
                       r"unknown key \(did you mean 'max_epochs'\?\)"):
        load_config(write(tmp_path), ["trainer.max_epoch=2"])
    with pytest.raises(ConfigError, match=r"run\.yaml: trainer\.epoch: unknown key \(did you mean 'max_epochs'\?\)"):
        load_config(write(tmp_path, BASE.replace("  max_epochs: 2", "  epoch: 2")))


@pytest.mark.parametrize(
    "override, problem",
    [
        ("trainer.batch_size=0", "must be at least 1, got 0"),
        ("trainer.lr=-0.001", "must be at least 0, got -0.001"),
        ("trainer.lr=.nan", "must be at least 0, got nan"),
        ("trainer.gradient_clip_val=0", "must be a positive number"),
        ("data.max_samples=-1", "must be at least 1, got -1"),
        ("data.max_samples=0", "must be at least 1, got 0"),
        ("trainer.max_epochs=0", "must be at least 1"),
        ("trainer.max_steps=0", "must be -1 (no limit) or at least 1"),
        ("trainer.accumulate_grad_batches=0", "must be at least 1"),
        ("trainer.lr_multipliers={image_encoder: -1}", "must be >= 0"),
    ],
)
def test_impossible_values_are_one_line_errors(tmp_path, override, problem):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path), [override])
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_unknown_constructor_arguments_in_model_kwargs_are_config_errors():
    pytest.importorskip("torch")
    from medmm.data.bundled import vqa_rad_sample_root
    from medmm.engine.api import build_task

    root = Path(__file__).resolve().parents[1] / "configs/vqa/vqa_rad_sample.yaml"
    for override, key, target in [
        ("model.fusion_kwargs.headz=2", "model.fusion_kwargs.headz", "CrossAttentionFusion"),
        ("model.image.encoder_kwargs.widthz=[8]", "model.image.encoder_kwargs.widthz", "SmallCNN"),
    ]:
        cfg = load_config(root, [override, f"data.root={vqa_rad_sample_root()}"])
        with pytest.raises(ConfigError) as info:
            build_task(cfg)
        assert info.value.key == key and target in str(info.value)


def test_unknown_key_in_file_names_file(tmp_path):
    path = write(tmp_path, BASE.replace("  max_epochs: 2", "  max_epochs: 2\n  epochs: 4"))
    with pytest.raises(ConfigError, match=r"run\.yaml: trainer\.epochs: unknown key"):
        load_config(path)


def test_missing_required_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset: required"):
        load_config(write(tmp_path, "task: toy\ndata:\n  root: x\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(write(tmp_path), ["trainer.max_epochs"])


def test_grouped_split_names_checked(tmp_path):
    text = BASE.replace(
        "  root: some/relative/root", "  root: r\n  split: grouped\n  fractions: {train: 0.8, dev: 0.2}\n  val_split: dev"
    )
    with pytest.raises(ConfigError, match="test_split"):
        load_config(write(tmp_path, text))
    cfg = load_config(write(tmp_path, text), ["data.test_split=null"])
    assert cfg.data.fractions == {"train": 0.8, "dev": 0.2}


def test_dump_roundtrip(tmp_path):
    cfg = load_config(write(tmp_path), ["model.fusion=gated"])
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg


def test_task_config_section_validated():
    from medmm.engine.task import Task

    class Toy(Task):
        @dataclass
        class Config:
            hidden: int = 4
            fusion: str = "late"

    task = Toy.from_config({"hidden": 16})
    assert task.config.hidden == 16 and task.config.fusion == "late"
    with pytest.raises(ConfigError, match="model.hiden"):
        Toy.from_config({"hiden": 16})
    assert build_dataclass(Toy.Config, {}).hidden == 4


@dataclass
class Lora:
    r: int = 8
    targets: tuple[str, ...] = ("q",)


@dataclass
class Conf:
    size: tuple[int, int] = (224, 224)
    lora: Lora | None = None  # nested config types must be module-level (annotations resolve there)
    mean: list[float] | None = None


def test_nested_types_in_task_config():
    c = build_dataclass(Conf, {"size": [32, 48], "lora": {"r": 4, "targets": ["q", "v"]}, "mean": [0, 0.5]})
    assert c.size == (32, 48) and c.lora == Lora(4, ("q", "v")) and c.mean == [0.0, 0.5]
    with pytest.raises(ConfigError, match="size: expected 2 items"):
        build_dataclass(Conf, {"size": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"lora\.rank: unknown key"):
        build_dataclass(Conf, {"lora": {"rank": 4}})


def test_engine_config_import_is_light():
    import subprocess
    import sys

    code = "import sys, medmm.engine; from medmm.engine import load_config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_engine_all_lists_the_lazy_exports():
    import medmm.engine as engine

    # __all__ is written out (for static tools); it must keep naming every lazily imported export
    assert set(engine._LAZY) <= set(engine.__all__)
