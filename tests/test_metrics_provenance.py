import json

import numpy as np
import pytest

import medmm
from medmm.metrics.provenance import provenance, write_metrics


def test_provenance_fields_and_json_writing(tmp_path):
    p = provenance("x", implementation="impl", n_samples=3, seed=7, ci_method="none",
                   label_handling={"uncertain": "ignore"})
    assert p["medmm_version"] == medmm.__version__ and p["n_samples"] == 3 and p["seed"] == 7
    out = write_metrics(tmp_path / "m.json", {"a": np.float32(0.5), "b": float("nan"),
                                             "c": np.arange(2), "provenance": p})
    data = json.loads(out.read_text())
    assert data["a"] == 0.5 and data["b"] is None and data["c"] == [0, 1]
    assert data["provenance"]["label_handling"] == {"uncertain": "ignore"}


def test_write_metrics_requires_provenance(tmp_path):
    with pytest.raises(ValueError):
        write_metrics(tmp_path / "m.json", {"a": 1})
