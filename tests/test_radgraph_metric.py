"""`medmm score --model-metrics radgraph=ARCHIVE`: archive lookup, checksum, unpacking and scoring, with a
rule-based stand-in for the published DyGIE++ model (the one part replaced: the radgraph package's RadGraph)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from medmm.metrics.clinical.labeller import find_mentions
from medmm.metrics.model_based import radgraph_extract
from medmm.metrics.model_based.radgraph_extract import ExtractorMissingError, RadGraphExtractor
from medmm.metrics.model_based.weights import WeightsChecksumError, WeightsLayoutError, WeightsNotFoundError

ANATOMY = ("left", "right", "lung", "heart")
STATE_LABEL = {1: "OBS-DP", -1: "OBS-U", 0: "OBS-DA"}


class RuleGraphs:
    """Stand-in with the package's call and output format: observations are medmm's labeller mentions
    (label from their state), anatomy a word list, and each observation ``located_at`` every anatomy
    word of its sentence."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, reports: list[str]) -> dict:
        self.calls.append(list(reports))
        out = {}
        for k, text in enumerate(reports):
            spans = []  # (start, tokens, label)
            for m in find_mentions(text):
                spans.append((m["start"], text[m["start"]:m["end"]], STATE_LABEL[int(m["state"])]))
            for m in re.finditer(r"\b(" + "|".join(ANATOMY) + r")\b", text, flags=re.IGNORECASE):
                spans.append((m.start(), m.group(0), "ANAT-DP"))
            spans.sort()
            sentence = [text[:s].count(".") for s, _, _ in spans]
            ents = {}
            for i, (_, tokens, label) in enumerate(spans):
                rel = [["located_at", str(j + 1)] for j, (_, _, lab) in enumerate(spans)
                       if label != "ANAT-DP" and lab == "ANAT-DP" and sentence[j] == sentence[i]]
                ents[str(i + 1)] = {"tokens": tokens, "label": label, "start_ix": i, "end_ix": i, "relations": rel}
            out[str(k)] = {"text": text, "entities": ents, "data_source": None, "data_split": "inference"}
        return out


HYPS = ["Small left pleural effusion.", "No pneumothorax.", "", "Possible pneumonia in the right lung."]
REFS = ["left pleural effusion.", "No pneumothorax or effusion.", "Normal heart.", "Pneumonia in the left lung."]
# by hand, per report (simple, partial, complete):
#  1 {left, effusion-located_at-left} both sides                                 -> 1, 1, 1
#  2 H {pneumothorax/DA} R {pneumothorax/DA, effusion/DA}: P 1, R 1/2             -> 2/3 each
#  3 empty generated report                                                      -> 0 (not extracted)
#  4 H {pneumonia/U, right, lung} R {Pneumonia/DP, left, lung}: 1 of 3            -> 1/3, 1/3;
#    complete H {pneumonia/U-located_at-right, pneumonia/U-located_at-lung, right, lung} vs R's 4: only lung -> 1/4
EXPECTED = {"simple": (1 + 2 / 3 + 0 + 1 / 3) / 4, "partial": (1 + 2 / 3 + 0 + 1 / 3) / 4,
            "complete": (1 + 2 / 3 + 0 + 1 / 4) / 4}


def _archive(folder: Path, *, with_config: bool = True, evil: bool = False) -> Path:
    """radgraph.tar.gz with the published top-level layout (config.json, vocabulary/, weights.th)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "radgraph.tar.gz"
    files = {"vocabulary/ner_labels.txt": b"ANAT-DP\nOBS-DP\nOBS-U\nOBS-DA\n", "weights.th": b"stand-in"}
    if with_config:
        files["config.json"] = json.dumps({"model": {"embedder": {"token_embedders": {"bert": {
            "model_name": "tiny/stand-in-encoder"}}}}}).encode()
    if evil:
        files["../escaped.txt"] = b"x"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """The published model replaced by RuleGraphs; archives are unpacked under tmp_path/cache/radgraph."""
    model = RuleGraphs()
    made = []

    def package_model(model_type, model_cache_dir):
        made.append((model_type, Path(model_cache_dir)))
        assert (Path(model_cache_dir) / model_type / "config.json").is_file()  # what the package reads
        return model

    monkeypatch.setattr(radgraph_extract, "require_package", lambda: None)
    monkeypatch.setattr(radgraph_extract, "package_model", package_model)
    # only the unpacked archives go to a temporary folder (MEDMM_CACHE also holds the NLG kernels and METEOR index)
    monkeypatch.setattr(radgraph_extract, "cache_root", lambda: tmp_path / "cache" / "radgraph")
    return model, made


def _files(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred.jsonl", tmp_path / "ref.jsonl"
    pred.write_text("".join(json.dumps({"id": str(i), "prediction": h}) + "\n" for i, h in enumerate(HYPS)))
    ref.write_text("".join(json.dumps({"id": str(i), "reference": r}) + "\n" for i, r in enumerate(REFS)))
    return pred, ref


def test_extractor_finds_checks_and_unpacks_the_archive(stand_in, tmp_path):
    model, made = stand_in
    path = _archive(tmp_path / "w")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    ex = RadGraphExtractor("radgraph", f"{tmp_path / 'w'}#sha256={sha}")  # a folder holding radgraph.tar.gz, pinned
    assert made == [("radgraph", tmp_path / "cache" / "radgraph" / sha[:16])]
    assert ex.provenance()["weights_sha256"] == sha and ex.provenance()["encoder"] == "tiny/stand-in-encoder"
    graphs = ex.graphs(HYPS)
    assert graphs[2] is None and model.calls == [[h for h in HYPS if h]]  # the empty report is not extracted
    assert graphs[0].entities == (("left", "ANAT-DP"), ("effusion", "OBS-DP")) and graphs[0].relations == ((1, 0, "located_at"),)
    RadGraphExtractor("radgraph", str(path))  # the cached folder is reused, not unpacked again
    assert len(list((tmp_path / "cache" / "radgraph").iterdir())) == 1
    with pytest.raises(WeightsChecksumError, match="differs from the pinned"):
        RadGraphExtractor("radgraph", f"{path}#sha256={'0' * 64}")
    with pytest.raises(ValueError, match="a pin must read"):
        RadGraphExtractor("radgraph", f"{path}#md5=abc")
    with pytest.raises(WeightsNotFoundError, match="no radgraph-xl.tar.gz in folder"):
        RadGraphExtractor("radgraph-xl", str(tmp_path / "w"))
    with pytest.raises(WeightsLayoutError, match="no config.json"):
        RadGraphExtractor("radgraph", str(_archive(tmp_path / "bad", with_config=False)))
    with pytest.raises(WeightsLayoutError, match="cannot be unpacked"):
        RadGraphExtractor("radgraph", str(_archive(tmp_path / "evil", evil=True)))
    assert not (tmp_path / "cache" / "radgraph" / "escaped.txt").exists()


def test_missing_package_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "radgraph", None)  # as if not installed, wherever this runs
    with pytest.raises(ExtractorMissingError, match="needs the 'radgraph' package.*pip install radgraph"):
        RadGraphExtractor("radgraph", str(_archive(tmp_path / "w")))
    pred, ref = _files(tmp_path)
    code = ("import sys; sys.modules['radgraph'] = None; from medmm.cli import main; "
            f"sys.argv = ['medmm', 'score', '--task', 'report_generation', '--pred', {str(pred)!r}, '--ref', {str(ref)!r}, "
            f"'--out', {str(tmp_path / 'o.json')!r}, '--model-metrics', 'radgraph={tmp_path / 'w'}']; main()")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: RadGraph-F1 needs the 'radgraph' package")


def test_transformers_5_is_refused_with_the_fix(monkeypatch, tmp_path):
    import importlib.metadata
    import importlib.util

    real_find, real_version = importlib.util.find_spec, importlib.metadata.version
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "radgraph" else real_find(n, *a))
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "5.25.0" if n == "transformers" else real_version(n))
    with pytest.raises(ExtractorMissingError, match=r"transformers 4.x only \(found 5.25.0\).*transformers>=4.39,<5"):
        RadGraphExtractor("radgraph", str(_archive(tmp_path / "w")))


def test_score_cli_with_stand_in_extractor(stand_in, tmp_path):
    from typer.testing import CliRunner

    from medmm.cli import app

    path = _archive(tmp_path / "w")
    pred, ref = _files(tmp_path)
    out = tmp_path / "m.json"
    args = ["score", "--task", "report_generation", "--pred", str(pred), "--ref", str(ref), "--out", str(out),
            "--bootstrap", "200", "--model-metrics", f"radgraph={path}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["model_metrics"]["f1_radgraph"] == pytest.approx(EXPECTED)
    prov = m["model_metrics"]["provenance"]["radgraph"]
    assert prov["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["casing"] == "radgraph-0.1.18" and prov["n_empty_graphs"] == 1
    for level, value in EXPECTED.items():
        ci = m["ci"][f"model_metrics.f1_radgraph.{level}"]
        assert ci["estimate"] == pytest.approx(value) and ci["low"] <= value <= ci["high"] and ci["low"] < ci["high"]


def test_paired_comparison_covers_radgraph(stand_in, tmp_path):
    from medmm.metrics.score import compare_files

    path = _archive(tmp_path / "w")
    pred, ref = _files(tmp_path)
    copy = tmp_path / "copy.jsonl"  # system B: the references themselves
    copy.write_text("".join(json.dumps({"id": str(i), "prediction": r}) + "\n" for i, r in enumerate(REFS)))
    res = compare_files("report_generation", pred, copy, ref, n_resamples=50, model_metrics={"radgraph": str(path)})
    t = res["tests"]["model_metrics.f1_radgraph.partial"]
    assert t["a"] == pytest.approx(EXPECTED["partial"]) and t["b"] == pytest.approx(1.0)  # references against themselves
