"""The report_generation `model:` section: its keys and defaults (old run directories keep only
the keys their config set, so a changed default changes them), documentation and type checks."""

from __future__ import annotations

import dataclasses
import re

import pytest

from medmm.engine.config import ConfigError, build_dataclass
from medmm.tasks.report.config import ReportGenerationConfig

# The defaults as released; a change here changes every run whose config does not set the key.
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


def test_keys_and_defaults_are_the_released_ones():
    got = dataclasses.asdict(ReportGenerationConfig())
    assert list(got) == list(DEFAULTS)  # same keys, in the documented order
    assert got == DEFAULTS
    a, b = ReportGenerationConfig(), ReportGenerationConfig()
    a.attribute_targets.append("plane")
    assert b.attribute_targets == []  # mutable defaults are not shared between configs


def test_every_key_is_documented():
    doc = ReportGenerationConfig.__doc__ or ""
    entries = doc.split("Attributes:", 1)[1]
    missing = [f.name for f in dataclasses.fields(ReportGenerationConfig) if not re.search(rf"\b{f.name}[,:]", entries)]
    assert not missing, f"undocumented model keys: {missing}"


def test_is_the_task_config_and_checks_types():
    pytest.importorskip("torch")
    from medmm.tasks.report.task import ReportGenerationTask

    assert ReportGenerationTask.Config is ReportGenerationConfig
    cfg = build_dataclass(ReportGenerationConfig, {"group_by": "case", "attribute_targets": ["plane"], "beam_size": 3})
    assert (cfg.group_by, cfg.attribute_targets, cfg.beam_size) == ("case", ["plane"], 3)
    with pytest.raises(ConfigError, match="group_by"):
        build_dataclass(ReportGenerationConfig, {"group_by": "hospital"}, prefix="model.")
    with pytest.raises(ConfigError, match="beam_size"):
        build_dataclass(ReportGenerationConfig, {"beam_size": "wide"}, prefix="model.")
    with pytest.raises(ConfigError, match="unknown key"):
        build_dataclass(ReportGenerationConfig, {"temperature": 1.0}, prefix="model.")
