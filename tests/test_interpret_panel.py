"""Each explained sample gets one labelled panel (input + heatmaps with readable method names,
under a title with the sample id, its text, the prediction and the reference)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import pytest
import torch

from medmm.interpret import explain, render
from test_interpret_explain import _dx_samples, _dx_task


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_panel_names_sample_text_prediction_and_reference(tmp_path: Path) -> None:
    s = explain.explain_samples(_dx_task("late"), _dx_samples()[:1], tmp_path, methods=("gradcam", "gradcam++"),
                                ig_steps=2, faithfulness_steps=2, n_random=1)
    r = s["samples"][0]
    assert r["reference"] == "effusion"  # the diagnosis target of dx0, not None
    title = explain._panel_title(r)
    assert title[0] == "sample dx0" and title[1].startswith("text: patient 0 with cough") and "[SEP]" not in title[1]
    assert title[2].startswith(f"prediction: {r['explained_class']} (p = ") and "reference: effusion" in title[2]
    panel = mpimg.imread(tmp_path / r["panel_png"])
    assert panel.shape[1] >= 3 * 200  # three tiles side by side (input, Grad-CAM, Grad-CAM++)
    page = (tmp_path / "index.html").read_text()
    assert "Grad-CAM++" in page and ">gradcam++<" not in page


def test_method_labels():
    assert render.method_label("gradcam++") == "Grad-CAM++"
    assert render.method_label("integrated_gradients") == "integrated gradients"
    assert render.method_label("some_new_method") == "some new method"
