"""The fusion forest plot's p-values sit under the variant names, never inside the axes where
they could cover the baseline line or a CI."""

from pathlib import Path

import matplotlib.pyplot as plt

from medmm.ablation import AblationTable, plot_ablation


def test_p_values_are_tick_labels_not_text_on_the_plot(tmp_path, monkeypatch):
    rows = [{"fusion": f, "auroc_macro": a, "auroc_macro_low": a - 0.05, "auroc_macro_high": a + 0.03, "f1_macro": a - 0.2,
             "f1_macro_low": a - 0.3, "f1_macro_high": a - 0.1, "p_bootstrap": p, "n_test": 150, "n_seeds": 1}
            for f, a, p in [("image_only", 0.947, None), ("text_only", 0.573, 0.001), ("early", 0.918, 0.21)]]
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    plot_ablation(AblationTable(rows, "image_only", "auroc_macro", Path(tmp_path)), tmp_path / "a.png")
    (fig,) = figs
    left, right = fig.axes
    assert not left.texts and not right.texts
    labels = [t.get_text() for t in left.get_yticklabels()]
    assert labels == ["image_only\n(baseline)", "text_only\np = 0.001", "early\np = 0.210"]
