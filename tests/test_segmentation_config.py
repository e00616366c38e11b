"""Segmentation's nested `model:` section: old flat keys fail naming their new place (scalar
`loss:`/`inference:` included, which are sections now), `medmm config migrate` turns an old
segmentation config into the shipped layout, and a run directory written before the move loads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from medmm.engine.config import ConfigError, build_dataclass, load_config
from medmm.engine.config_fields import migrate
from medmm.tasks.segmentation.config import (
    SegmentationAugmentConfig,
    SegmentationConfig,
    SegmentationInferenceConfig,
    SegmentationLossConfig,
    SegmentationTextConfig,
)

REPO = Path(__file__).resolve().parents[1]

# configs/segmentation/monuseg_text.yaml's model: section as shipped before the sections were nested
OLD_MONUSEG_TEXT = {
    "classes": {"nuclei": ["nuclei"]}, "conditioning": "film+attention", "text_encoder": "minilm", "freeze_text": True,
    "attention_levels": 2, "text_template": "{sentence}", "channels": [64, 128, 256, 512, 512], "in_channels": 3,
    "mean": [0.5], "std": [0.25], "image_size": 224, "crop_size": None, "inference": "resize", "augmentation": "lvit",
    "loss": "lvit_dice_bce",
}


def test_the_old_shipped_section_migrates_to_the_shipped_one():
    shipped = yaml.safe_load((REPO / "configs/segmentation/monuseg_text.yaml").read_text())["model"]
    new, moves = migrate(SegmentationConfig, OLD_MONUSEG_TEXT, prefix="model.")
    assert new == shipped
    assert ("model.loss", "model.loss.name") in moves and ("model.inference", "model.inference.mode") in moves
    assert len(moves) == len(OLD_MONUSEG_TEXT) - 2  # all but classes and conditioning moved
    assert build_dataclass(SegmentationConfig, new) == build_dataclass(SegmentationConfig, shipped)


@pytest.mark.parametrize("old,value", [(k, v) for k, v in OLD_MONUSEG_TEXT.items() if k not in ("classes", "conditioning")]
                         + [("tversky_alpha", 0.4), ("sw_overlap", 0.5), ("threshold", 0.4), ("flip", False),
                            ("heads", 2), ("text_kw", {"dim": 16}), ("max_text_length", 16), ("tversky_beta", 0.6)])
def test_every_old_flat_key_fails_naming_its_new_key(old, value):
    new = SegmentationConfig.moved_keys[old]
    with pytest.raises(ConfigError) as info:
        build_dataclass(SegmentationConfig, {old: value}, "seg.yaml", prefix="model.")
    msg = str(info.value)
    assert msg.startswith(f"seg.yaml: model.{old}: moved to model.{new} ") and "medmm config migrate" in msg
    assert "\n" not in msg


def test_loss_and_inference_are_sections_now_and_mix_with_their_old_keys():
    cfg = build_dataclass(SegmentationConfig, {"loss": {"name": "tversky", "tversky_beta": 0.8},
                                               "inference": {"mode": "sliding_window", "overlap": 0.5},
                                               "augment": {"crop_size": 16}})
    assert cfg.loss == SegmentationLossConfig("tversky", 0.3, 0.8)
    assert cfg.inference == SegmentationInferenceConfig("sliding_window", 0.5, 0.5)
    assert cfg.augment == SegmentationAugmentConfig(crop_size=16)
    # an old scalar beside the new section's keys: migrate merges them
    new, _ = migrate(SegmentationConfig, {"tversky_alpha": 0.1, "loss": {"name": "tversky"}})
    assert new == {"loss": {"tversky_alpha": 0.1, "name": "tversky"}}
    with pytest.raises(ConfigError, match="given twice"):
        migrate(SegmentationConfig, {"loss": {"name": "focal"}, "text_encoder": "scratch", "text": {"encoder": "minilm"}})


def test_an_old_command_line_override_names_the_new_key():
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs/segmentation/monuseg_unet.yaml", ["model.loss=dice_ce"], validate_model=True)
    msg = str(info.value)
    assert "command-line override 'model.loss=dice_ce'" in msg and "moved to model.loss.name" in msg
    cfg = load_config(REPO / "configs/segmentation/monuseg_unet.yaml", ["model.loss.name=dice_ce", "model.text.max_length=8"],
                      validate_model=True)
    assert cfg.model["loss"] == {"name": "dice_ce"} and cfg.model["text"]["max_length"] == 8


def test_config_migrate_rewrites_an_old_segmentation_config(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medmm.cli import app

    monkeypatch.chdir(REPO)
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"task": "segmentation", "data": {"dataset": "monuseg_lvit", "root": "../shared/data/monuseg_lvit"},
                                   "model": OLD_MONUSEG_TEXT}))
    with pytest.raises(ConfigError, match=r"old\.yaml: model\.attention_levels: moved to model\.unet\.attention_levels"):
        load_config(old, validate_model=True)
    res = CliRunner().invoke(app, ["config", "migrate", str(old), "--in-place"])
    assert res.exit_code == 0, res.output
    cfg = load_config(old, validate_model=True)
    assert cfg.model == yaml.safe_load((REPO / "configs/segmentation/monuseg_text.yaml").read_text())["model"]


def test_a_run_directory_of_an_earlier_version_loads_with_a_warning(tmp_path, caplog):
    from medmm.engine import rundir as rd

    (tmp_path / rd.CONFIG).write_text(yaml.safe_dump({
        "task": "segmentation", "data": {"dataset": "monuseg_lvit", "root": str(tmp_path)},
        "model": {"text_encoder": "scratch", "loss": "tversky", "tversky_alpha": 0.2, "image_size": 32}}))
    with caplog.at_level(logging.WARNING):
        cfg = rd.read_yaml_config(tmp_path)
    assert cfg.model == {"text": {"encoder": "scratch"}, "loss": {"name": "tversky", "tversky_alpha": 0.2}, "image": {"size": 32}}
    assert "model.loss -> model.loss.name" in caplog.text
    built = build_dataclass(SegmentationConfig, cfg.model)
    assert built.text == SegmentationTextConfig(encoder="scratch") and built.loss.tversky_alpha == 0.2
