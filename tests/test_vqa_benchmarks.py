"""The VQA benchmark scripts' building blocks: baselines of vqa_rad_heldout.py (tiny inputs; the
real runs are in benchmarks/). Image-encoder pretraining is tested in test_pretrain_task.py."""

from __future__ import annotations

import pytest
import torch

from medmm.data import load_dataset
from medmm.data.bundled import vqa_rad_sample_root
from tests.conftest import load_benchmark as load


@pytest.fixture(scope="module")
def samples():
    return load_dataset("vqa_rad", vqa_rad_sample_root(), "train").samples


def test_majority_baseline_answers_the_most_frequent_answer_per_type(samples):
    h = load("vqa_rad_heldout")
    train, test = samples[:400], samples[400:]
    recs = h.majority_records(train, test)
    assert len(recs) == len(test) and {r["answer_type"] for r in recs} == {"CLOSED", "OPEN"}
    closed = {r["prediction"] for r in recs if r["answer_type"] == "CLOSED"}
    assert len(closed) == 1 and closed <= {"yes", "no"}
    assert all(r["group"] == s.group("image") for r, s in zip(recs, test, strict=True))


def test_nearest_neighbour_baseline_copies_a_same_image_answer(samples):
    torch.set_num_threads(1)
    h = load("vqa_rad_heldout")
    train = samples[:300]
    # a held-out question identical to a training question on the same image gets its answer
    recs = h.nearest_neighbour_records(train, train[:12])
    from medmm.tasks.vqa.answers import normalise_vqa_answer

    hits = sum(r["prediction"] == normalise_vqa_answer(s.text["answer"]) for r, s in zip(recs, train[:12], strict=True))
    assert hits >= 11  # 12 unless an identical question on the same image has another answer


def test_saved_predictions_read_back_as_a_run_folder(tmp_path):
    h, compare = load("vqa_rad_heldout"), load("vqa_resplit_compare")
    records = [{"id": "q1", "prediction": "yes", "reference": "yes", "answer_type": "CLOSED", "group": "img1"},
               {"id": "q2", "prediction": "liver", "reference": "spleen", "answer_type": "OPEN", "group": "img1"}]
    path = h.save_predictions(tmp_path / "run_memory_weight0", records)
    assert path == tmp_path / "run_memory_weight0" / "predictions" / "test.jsonl"
    back = compare.load_records(tmp_path / "run_memory_weight0")
    assert back == records
    assert compare.correct(back).tolist() == [1.0, 0.0]


@pytest.mark.slow
def test_official_test_script_trains_and_scores_exactly_the_test_questions(tmp_path):
    """benchmarks/vqa_rad_official_test.sh end to end on a root whose test questions are known:
    the bundled sample with 40 questions relabelled as official test questions."""
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path

    from medmm.models.encoders.factory import create_image_encoder
    from medmm.models.pretrained import save_weights

    sample = vqa_rad_sample_root()
    root = tmp_path / "full"
    root.mkdir()
    (root / "VQA_RAD Image Folder").symlink_to(Path(sample) / "VQA_RAD Image Folder")
    qa = json.loads((Path(sample) / "VQA_RAD Dataset Public.json").read_text(encoding="utf-8"))
    for q in qa[::15][:40]:
        q["phrase_type"] = "test_freeform"
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(qa), encoding="utf-8")
    out = tmp_path / "out"
    # a random encoder of the config's shape stands in for the pretrained one (step 1 is skipped)
    encoder = create_image_encoder("small_cnn", in_channels=1, image_size=96, widths=[32, 64, 128, 256])
    save_weights(encoder, out / "encoder" / "small_cnn96.pt")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{Path(shutil.which('medmm')).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", "benchmarks/vqa_rad_official_test.sh", str(root), str(out), str(tmp_path / "unused"),
                          "trainer.max_epochs=1"], check=False, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    scored = json.loads((out / "official_test.json").read_text())
    assert scored["metrics"]["n"] == 40 and scored["provenance"]["split"] == "test"
    assert "overall_accuracy" in scored["metrics"]["ci"]
    val_ids = {json.loads(line)["id"] for line in (out / "run" / "predictions" / "val.jsonl").open()}
    assert val_ids and val_ids <= {str(q["qid"]) for q in qa}  # record ids are the questions' qids ...
    assert not val_ids & {str(q["qid"]) for q in qa[::15][:40]}  # ... and no test question chose the checkpoint
    bad = subprocess.run(["bash", "benchmarks/vqa_rad_official_test.sh", str(tmp_path)], check=False, cwd=repo, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a VQA-RAD root" in bad.stderr
