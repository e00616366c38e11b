"""`medmm index build/search` on a tiny retrieval run trained on the bundled VQA-RAD sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("faiss")
pytest.importorskip("lightning")

from typer.testing import CliRunner

import medmm
from medmm.cli import app

BUNDLED = Path(medmm.__file__).parent / "data" / "bundled" / "vqa_rad_sample"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from medmm.engine.api import train
    from medmm.engine.config import config_from_dict

    out = tmp_path_factory.mktemp("retrieval_run")
    cfg = config_from_dict(
        {
            "task": "retrieval",
            "seed": 0,
            "data": {"dataset": "vqa_rad", "root": str(BUNDLED), "split": "grouped", "group_by": "image",
                     "source_splits": ["train"], "fractions": {"train": 0.8, "val": 0.2}, "test_split": None, "max_samples": 48},
            "model": {
                "image_encoder": "small_cnn",
                "image_encoder_kwargs": {"widths": [8, 16, 32], "image_size": 32},
                "text_encoder": "scratch",
                "text_encoder_kwargs": {"vocab_size": 300, "dim": 32, "num_layers": 1, "num_heads": 2, "max_length": 32},
                "embed_dim": 16,
                "text_field": ["question", "answer"],
                "max_text_length": 32,
                "bootstrap_resamples": 20,
            },
            "trainer": {"max_epochs": 1, "batch_size": 16, "lr": 1e-3, "progress_bar": False, "deterministic": False},
        }
    )
    train(cfg, out)
    return out


@pytest.fixture(scope="module")
def index(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    res = CliRunner().invoke(app, ["index", "build", str(run_dir), "--data", str(BUNDLED), "--dataset", "vqa_rad", "--split", "train", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "indexed 102 images" in res.output
    assert "embedding samples" in res.output and "602/602" in res.output  # the progress bar's last state
    return out


def test_build_and_search(index):
    runner = CliRunner()
    desc = json.loads((index / "index.json").read_text())
    # the bundled sample: 602 training QA pairs about 102 images
    assert desc["n_samples"] == 602 and desc["n_images"] == 102

    res = runner.invoke(app, ["index", "search", str(index), "--text", "is there a fracture", "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(Path(h["image_path"]).is_file() and h["sample_ids"] for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]

    # an indexed image searched against all images scores itself 1.0, the top score (the tiny
    # 1-epoch model may map other images to the same direction, so ties may rank before it)
    image = hits[0]["image_path"]
    res = runner.invoke(app, ["index", "search", str(index), "--image", image, "--target", "image", "-k", "102", "--json"])
    assert res.exit_code == 0, res.output
    all_hits = [json.loads(line) for line in res.output.strip().splitlines()]
    self_hit = next(h for h in all_hits if h["image_path"] == image)
    assert self_hit["score"] == pytest.approx(1.0, abs=1e-4) == all_hits[0]["score"]

    # cross-modal image -> texts, as a rich table
    res = runner.invoke(app, ["index", "search", str(index), "--image", image, "-k", "3"])
    assert res.exit_code == 0, res.output
    assert "rank" in res.output and "score" in res.output


def test_search_errors(index, tmp_path):
    from medmm.errors import BadInputError, MedmmError
    from medmm.tasks.retrieval.index import RetrievalSearcher

    with pytest.raises(BadInputError, match="index.json missing"):
        RetrievalSearcher(tmp_path)
    s = RetrievalSearcher(index)
    with pytest.raises(MedmmError, match="exactly one query"):
        s.search(text="a", image="b")
    with pytest.raises(BadInputError, match="not found"):
        s.search(image=tmp_path / "missing.png")


def test_queries_from_a_file_in_one_call(index, tmp_path):
    from medmm.tasks.retrieval.index import RetrievalSearcher

    hits = [json.loads(x) for x in CliRunner().invoke(
        app, ["index", "search", str(index), "--text", "is there a fracture", "-k", "3", "--json"]).output.splitlines()]
    image = hits[0]["image_path"]
    qfile = tmp_path / "queries.txt"
    qfile.write_text(f"# two texts and an image\nis there a fracture\n\nwhat organ is this\nimage:{image}\n")
    res = CliRunner().invoke(app, ["index", "search", str(index), "--queries", str(qfile), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.splitlines()]
    assert [r["query"] for r in rows[::3]] == [{"text": "is there a fracture"}, {"text": "what organ is this"}, {"image": image}]
    assert [r["id"] for r in rows[:3]] == [h["id"] for h in hits]  # batched = one at a time
    # a searcher object is reusable: one load, many searches, same answers as the batch
    s = RetrievalSearcher(index)
    assert [h.id for h in s.search(text="what organ is this", k=3)] == [r["id"] for r in rows[3:6]]
    assert [h.id for h in s.search_many([{"image": image}], k=3)[0]] == [r["id"] for r in rows[6:9]]
    bad = tmp_path / "empty.txt"
    bad.write_text("# nothing\n")
    assert CliRunner().invoke(app, ["index", "search", str(index), "--queries", str(bad)]).exit_code != 0


def test_case_column_is_filled(index):
    res = CliRunner().invoke(app, ["index", "search", str(index), "--text", "is there a fracture", "-k", "3"])
    assert res.exit_code == 0, res.output
    # VQA-RAD has no case or patient ids: the case column names the image instead of staying empty
    assert res.output.count("image synpic") >= 3
