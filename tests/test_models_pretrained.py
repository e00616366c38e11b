"""Weights files: metadata round trip, checksum verification, strict loading with clear errors."""

from __future__ import annotations

import pytest
import torch

from medmm.errors import BadInputError, MedmmError
from medmm.models import create_image_encoder, create_text_encoder
from medmm.models.pretrained import load_into, load_weights, save_weights


def small():
    torch.manual_seed(1)
    return create_image_encoder("small_cnn", in_channels=1, widths=(4, 8), image_size=32)


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = small()
    meta = {"architecture": "small_cnn", "labels": ["effusion", "pneumonia"], "thresholds": [0.3, 0.6], "licence": "CC-BY-4.0"}
    digest = save_weights(model, tmp_path / "w.pt", meta)
    _state, got = load_weights(tmp_path / "w.pt", sha256=digest)
    assert got["labels"] == ["effusion", "pneumonia"] and got["thresholds"] == [0.3, 0.6] and got["sha256"] == digest
    fresh = create_image_encoder("small_cnn", in_channels=1, widths=(4, 8), image_size=32)
    load_into(fresh, tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
    assert fresh.weights_metadata["licence"] == "CC-BY-4.0"


def test_corruption_and_wrong_checksum_are_detected(tmp_path):
    path = tmp_path / "w.pt"
    save_weights(small(), path, {})
    with pytest.raises(BadInputError, match="expected sha256"):
        load_weights(path, sha256="0" * 64)
    blob = torch.load(path, weights_only=True)
    raw = bytearray(blob["state"])
    raw[len(raw) // 2] ^= 0xFF
    blob["state"] = bytes(raw)
    torch.save(blob, path)
    with pytest.raises(BadInputError, match="checksum mismatch"):
        load_weights(path)
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(BadInputError, match="junk.pt"):
        load_weights(tmp_path / "junk.pt")
    with pytest.raises(BadInputError, match="not found"):
        load_weights(tmp_path / "absent.pt")


def test_mismatched_keys_are_listed_never_dropped(tmp_path):
    save_weights(small(), tmp_path / "w.pt", {})
    bigger = create_image_encoder("small_cnn", in_channels=1, widths=(4, 8, 16), image_size=32)
    with pytest.raises(MedmmError, match=r"missing keys: stages\.2"):
        load_into(bigger, tmp_path / "w.pt")
    wider = create_image_encoder("small_cnn", in_channels=1, widths=(4, 16), image_size=32)
    with pytest.raises(MedmmError, match="shape mismatches"):
        load_into(wider, tmp_path / "w.pt")
    smaller = create_image_encoder("small_cnn", in_channels=1, widths=(4,), image_size=32)
    with pytest.raises(MedmmError, match=r"unexpected keys: stages\.1"):
        load_into(smaller, tmp_path / "w.pt")


def test_labels_and_thresholds_must_agree(tmp_path):
    with pytest.raises(MedmmError, match="2 labels but 1 thresholds"):
        save_weights(small(), tmp_path / "w.pt", {"labels": ["a", "b"], "thresholds": [0.5]})


def test_scratch_text_encoder_weights_carry_the_tokenizer(tmp_path):
    enc = create_text_encoder("scratch", dim=16, num_layers=1, num_heads=2)
    enc.fit_tokenizer(["left pleural effusion", "no pneumothorax"])
    save_weights(enc, tmp_path / "t.pt", {"architecture": "scratch"})
    other = create_text_encoder("scratch", pretrained=str(tmp_path / "t.pt"), dim=16, num_layers=1, num_heads=2)
    assert other.tokenize(["pleural effusion"])["input_ids"].tolist() == enc.tokenize(["pleural effusion"])["input_ids"].tolist()
