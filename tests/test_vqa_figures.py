"""The VQA report figure: which examples are drawn, and that cells land where the model saw them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medmm.tasks.vqa.figures import is_correct, pick_examples, save_examples


def _rec(i, pred, ref, image="a.png", **kw):
    return {"id": str(i), "question": f"q{i}?", "prediction": pred, "reference": ref, "image_path": image, **kw}


def test_pick_examples_balances_right_and_wrong_and_prefers_new_images():
    recs = [_rec(0, "yes", "Yes", "a"), _rec(1, "no", "no", "a"), _rec(2, "left", "right", "b"),
            _rec(3, "x", "y", "b"), _rec(4, "ct", "CT.", "c"), _rec(5, "z", "w", "c"), _rec(6, "u", None, "d")]
    assert is_correct(recs[4]) and not is_correct(recs[2])  # the metrics' normalisation
    got = [r["id"] for r in pick_examples(recs, 4)]
    assert got == ["0", "4", "2", "5"]  # 2 right (images a, c before a again), 2 wrong (b, c)
    # not enough wrong answers: the rest are right ones; unscored records are never drawn
    only_right = [_rec(i, "yes", "yes", str(i)) for i in range(5)] + [_rec(9, "a", "b")]
    assert [r["id"] for r in pick_examples(only_right, 4)] == ["0", "1", "2", "9"]
    assert pick_examples([_rec(0, "a", None)], 4) == []


def test_save_examples_outlines_the_attended_cell_on_the_original_image(tmp_path):
    img = np.zeros((60, 120), np.uint8)  # not square: cells scale with height and width
    Image.fromarray(img).save(tmp_path / "img.png")
    cell = {"row": 1, "col": 2, "grid": [3, 3], "weight": 0.5}
    recs = [_rec(0, "yes", "yes", str(tmp_path / "img.png"), rationale={"image_regions": [cell]}, question_type="PRES"),
            _rec(1, "no", "yes", str(tmp_path / "missing.png"), rationale={"image_regions": [{"token": 3}]}),
            # odd shapes (hand-made files) are skipped, never an error
            _rec(2, "no", "yes", str(tmp_path / "img.png"), rationale={"image_regions": [
                {"row": 0, "col": 0, "grid": [0, 0]}, {"row": 0, "col": 0, "grid": [2, 2], "weight": "high"}, "x"]})]
    names = save_examples(recs, tmp_path / "plots", "test")
    assert names == ["vqa_examples_test.png"]
    png = np.asarray(Image.open(tmp_path / "plots" / names[0]).convert("RGB")).astype(int)
    orange = (png[..., 0] > 200) & (png[..., 1] > 100) & (png[..., 1] < 200) & (png[..., 2] < 80)
    assert orange.sum() > 50  # the outline was drawn
    assert save_examples([_rec(0, "a", None)], tmp_path / "plots", "val") == []


def test_outline_position_matches_the_grid_cell(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    monkeypatch.setattr(matplotlib.axes.Axes, "add_patch", lambda self, p: drawn.append(p) or p)
    Image.fromarray(np.zeros((60, 120), np.uint8)).save(tmp_path / "img.png")
    rec = _rec(0, "yes", "yes", str(tmp_path / "img.png"), rationale={"image_regions": [{"row": 1, "col": 2, "grid": [3, 3], "weight": 1.0}]})
    save_examples([rec], tmp_path, "test")
    (patch,) = drawn
    assert patch.get_xy() == (80.0, 20.0) and patch.get_width() == 40.0 and patch.get_height() == 20.0
