"""Framed questions: VQA-RAD's templated wordings added to TRAINING samples only."""

from __future__ import annotations

import json
from pathlib import Path

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.schema import ImageRef, Sample
from medmm.tasks.vqa.framed import framed_question_samples


def _s(i, question, frame, image="a.jpg", group=None):
    return Sample(id=str(i), dataset="vqa_rad", split="train", images=[ImageRef(path=Path(image), image_id=image)],
                  text={"question": question, "answer": "yes"}, image_id=image, question_id=group or str(i),
                  meta={"question_frame": frame, "answer_type": "CLOSED"})


def test_each_new_wording_is_added_once_per_image_with_its_source_answer_and_group():
    samples = [
        _s(1, "Is the spleen normal size?", "Is/Are the spleen normal size?", group="g1"),
        _s(2, "Is the size of the spleen normal?", "Is/Are the spleen normal size?", group="g1"),  # paraphrase, same frame
        _s(3, "Is/Are the mass near the midbrain?", "Is/are the mass near the midbrain", group="g3"),  # frame = question
        _s(4, "Is the liver normal?", None),
        _s(5, "Is the spleen enlarged?", "Is/Are the spleen normal size?", image="b.jpg"),  # other image: kept
    ]
    out = framed_question_samples(samples)
    assert out[:5] == samples
    added = out[5:]
    assert [(s.id, s.image_id, s.question_id) for s in added] == [("1#frame", "a.jpg", "g1"), ("5#frame", "b.jpg", "5")]
    assert added[0].text == {"question": "Is/Are the spleen normal size?", "answer": "yes"}
    assert added[0].meta["framed_from"] == "1" and samples[0].text["question"] == "Is the spleen normal size?"


def test_loader_keeps_the_framed_wording_and_null_is_none(tmp_path):
    samples = load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples
    frames = [s.meta["question_frame"] for s in samples]
    assert any(frames) and all(f is None or (f.strip() and f.upper() != "NULL") for f in frames)


def test_engine_adds_frames_to_training_only(tmp_path):
    from medmm.engine import load_config, train

    cfg = load_config(
        "configs/vqa/vqa_rad_sample.yaml",
        [f"data.root={vqa_rad_sample_root()}", "trainer.max_epochs=1", "trainer.batch_size=32",
         "model.image.encoder_kwargs={in_channels: 1, image_size: 32, widths: [8, 16]}",
         "model.text.encoder_kwargs={vocab_size: 600, dim: 32, num_layers: 1, num_heads: 2, max_length: 48}",
         "model.dim=32", "model.bootstrap_resamples=0", "model.augment.framed_questions=true"],
    )
    from medmm.engine.data import load_splits

    parts = load_splits(cfg.data, cfg.seed)
    base_train, val = parts["train"].samples, parts["val"].samples
    expected = framed_question_samples(base_train)
    assert len(expected) > len(base_train)
    run = tmp_path / "run"
    train(cfg, run)
    trained_on = json.loads((run / "metrics" / "train.json").read_text())["provenance"]["n_samples"]
    assert trained_on == len(expected)  # the framed wordings of the training part were trained on
    val_ids = [json.loads(line)["id"] for line in (run / "predictions" / "val.jsonl").open()]
    assert sorted(val_ids) == sorted(s.id for s in val)  # validation unchanged: no frame is ever scored
