"""benchmarks/vlm_overhead.py runs end to end on the tiny Gemma 3 (2 new tokens, one repetition):
both paths generate the same text with eos off, train one LoRA step each, and the JSON is written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(tmp_path, *extra: str) -> dict:
    bench = load_benchmark("vlm_overhead")
    out = tmp_path / "res.json"
    res = bench.main(["--size", "tiny", "--new-tokens", "2", "--gen-reps", "1", "--train-reps", "1",
                      "--out", str(out), *extra])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    return res


def test_tiny_run_measures_both_paths(tmp_path):
    res = _run(tmp_path, "--no-rss")
    gen, step = res["generation"], res["train_step"]
    assert gen["new_tokens"] == 2 and gen["text_equal"]
    assert set(gen["median_s"]) == set(step["median_s"]) == {"medmm", "plain"}
    assert all(v > 0 for v in [*gen["median_s"].values(), *step["median_s"].values()])
    assert all(len(v) == 1 for v in step["losses"].values())
    assert 0 < res["model"]["lora_trainable_parameters"] < res["model"]["parameters"]
    assert res["peak_rss_mib"] is None


@pytest.mark.slow
def test_tiny_run_with_peak_rss_children(tmp_path):
    res = _run(tmp_path)
    assert all(v > 100 for v in res["peak_rss_mib"].values())  # torch + transformers alone take more
