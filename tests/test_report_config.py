"""The report_generation `model:` section: its keys and defaults (old run directories keep only
the keys their config set, so a changed default changes them), their nested places, documentation
and type checks."""

from __future__ import annotations

import pytest

from medmm.engine.config import ConfigError, build_dataclass
from medmm.engine.config_fields import field_help, section_help
from medmm.tasks.report.config import ReportGenerationConfig

# The defaults as released (flat keys, before the nested sections); a change here changes every run
# whose config does not set the key.
DEFAULTS = {
    "image_encoder": "small_cnn", "image_encoder_kwargs": {}, "image_pretrained": None, "freeze_image": False,
    "image_size": None, "text_field": "report", "group_by": "study", "max_images": 4, "min_word_freq": 2,
    "max_vocab": 8000, "max_report_length": 64, "dim": 256, "decoder_layers": 3, "decoder_heads": 4, "dropout": 0.1,
    "label_smoothing": 0.0, "rag_k": 0, "rag_max_tokens": 40, "use_findings": False, "findings_min_positive": 5,
    "findings_loss_weight": 0.5, "attribute_targets": [], "attribute_min_count": 5, "attribute_loss_weight": 0.5,
    "retrieval_run": None, "beam_size": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 3, "max_length": 60,
    "min_length": 1, "repetition_penalty": 1.0, "no_immediate_repeat": False, "mbr_references": 0,
    "mbr_candidates": 8, "mbr_retrieved": 0, "mbr_typical": 0, "mbr_samples": 0, "mbr_attribute_weight": 0.0,
    "mbr_reference_power": 0.0, "typical_baseline": 32, "scst_samples": 0, "scst_xe_weight": 0.0,
    "scst_attribute_weight": 0.0, "init_run": None, "provenance_k": 3, "bootstrap_resamples": 1000,
}

# Keys added since, in their nested places, with defaults that keep every earlier run as it was.
ADDED = {"decoder.pretrained": None, "decoder.lora": None}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_released_keys_keep_their_defaults_in_their_new_places():
    cfg = ReportGenerationConfig()
    moved = ReportGenerationConfig.moved_keys
    for old, default in DEFAULTS.items():
        assert _get(cfg, moved.get(old, old)) == default, old
    for key, default in ADDED.items():
        assert _get(cfg, key) == default, key
    # every key of the nested layout is a released key in its new place or a listed addition: nothing lost
    assert sorted(f.key for f in field_help(ReportGenerationConfig)) == sorted([moved.get(k, k) for k in DEFAULTS] + list(ADDED))
    a, b = ReportGenerationConfig(), ReportGenerationConfig()
    a.attributes.targets.append("plane")
    assert b.attributes.targets == []  # mutable defaults are not shared between configs


def test_every_key_is_documented():
    missing = [f.key for f in field_help(ReportGenerationConfig) if not f.help]
    assert not missing, f"undocumented model keys: {missing}"
    assert set(section_help(ReportGenerationConfig)) == {"image", "decoder", "retrieval", "findings", "attributes",
                                                         "decoding", "mbr", "scst"}


def test_is_the_task_config_and_checks_types():
    pytest.importorskip("torch")
    from medmm.tasks.report.task import ReportGenerationTask

    assert ReportGenerationTask.Config is ReportGenerationConfig
    cfg = build_dataclass(ReportGenerationConfig, {"group_by": "case", "attributes": {"targets": ["plane"]},
                                                   "decoding": {"beam_size": 3}})
    assert (cfg.group_by, cfg.attributes.targets, cfg.decoding.beam_size) == ("case", ["plane"], 3)
    assert cfg.decoding.no_repeat_ngram_size == 3  # a section given in part keeps the defaults of the rest
    with pytest.raises(ConfigError, match="group_by"):
        build_dataclass(ReportGenerationConfig, {"group_by": "hospital"}, prefix="model.")
    with pytest.raises(ConfigError, match=r"model\.decoding\.beam_size: expected an integer"):
        build_dataclass(ReportGenerationConfig, {"decoding": {"beam_size": "wide"}}, prefix="model.")
    with pytest.raises(ConfigError, match="unknown key"):
        build_dataclass(ReportGenerationConfig, {"temperature": 1.0}, prefix="model.")
    with pytest.raises(ConfigError, match=r"model\.decoding\.temperature: unknown key .*known keys: beam_size"):
        build_dataclass(ReportGenerationConfig, {"decoding": {"temperature": 1.0}}, prefix="model.")


def test_old_flat_keys_name_their_new_place():
    for old, new in ReportGenerationConfig.moved_keys.items():
        with pytest.raises(ConfigError) as info:
            build_dataclass(ReportGenerationConfig, {old: DEFAULTS[old]}, prefix="model.")
        assert str(info.value).startswith(f"model.{old}: moved to model.{new} ") and "\n" not in str(info.value)
