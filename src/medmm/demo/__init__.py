"""`medmm demo`: the whole pipeline on the bundled CC0 VQA-RAD sample, on a CPU, in minutes.

Steps (each writes into its own folder of ``out_dir``; the HTML report reads numbers back from
those files, so what the page shows is what the runs measured):

1. data check: counts, label balance, text lengths, the official split's image overlap and the
   leakage check of the image-grouped split used for training;
2. training through the one engine: a VQA model, an image-text retrieval model, and an
   image+question organ classifier with its image-only and text-only baselines (the ablation
   runner, so the comparison has bootstrap CIs and paired tests);
3. explanations of a few predictions (heatmaps, token attributions, modality contributions);
4. a blinded human-evaluation study of the VQA predictions in a local SQLite file;
5. one HTML report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # quiet HF tokenizers in loader workers
CONFIG_DIR = Path(__file__).parent / "configs"
# The fused variants the demo compares with the registry's unimodal baselines (image_only,
# text_only); the first is also the classifier whose predictions are explained.
FUSED = ("early", "gated")
QUICK_FUSED = ("early",)


@dataclass
class DemoResult:
    """Where everything went, and how long each step took (seconds)."""

    out_dir: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)


def demo_fusions(quick: bool) -> list[str]:
    """The organ ablation's variants: every registered unimodal fusion, then the fused ones
    (checked against the fusion registry, so a renamed fusion fails here, not mid-demo)."""
    from medmm.ablation import unimodal_fusions
    from medmm.models.fusion import fusion_info

    fused = list(QUICK_FUSED if quick else FUSED)
    for name in fused:
        fusion_info(name, spatial=False)  # unknown name -> the error listing the known ones
    return unimodal_fusions() + fused


def _overrides(root: Path, quick: bool, epochs_quick: int = 1) -> list[str]:
    over = [f"data.root={root}", "trainer.progress_bar=true"]
    if quick:
        over += [f"trainer.max_epochs={epochs_quick}", "trainer.limit_train_batches=4"]
    return over


def _train(config: str, run_dir: Path, overrides: list[str], keep_checkpoints: bool) -> dict[str, Any]:
    from medmm.engine import load_config, train

    cfg = load_config(CONFIG_DIR / config, overrides)
    metrics = train(cfg, run_dir)
    if not keep_checkpoints:
        drop_checkpoints(run_dir)
    return metrics


def drop_checkpoints(run_dir: Path) -> int:
    """Delete run_dir/checkpoints (best.ckpt and last.ckpt: model.pt already holds the best
    weights; they only serve resuming, which the demo never does). Returns the bytes freed."""
    ckpts = run_dir / "checkpoints"
    freed = sum(f.stat().st_size for f in ckpts.rglob("*") if f.is_file()) if ckpts.is_dir() else 0
    shutil.rmtree(ckpts, ignore_errors=True)
    return freed


def run_demo(
    out_dir: str | Path = "medmm_demo",
    *,
    quick: bool = False,
    keep_checkpoints: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo pipeline into `out_dir` and return where its report is.

    quick=True trains for a few batches only (for tests); the structure of the output is the same.
    keep_checkpoints=False deletes each run's checkpoints/ after training (model.pt stays): with
    them the retrieval run alone holds three copies of its MiniLM text tower (about 300 MB).
    An existing `out_dir` is replaced, so every number in the report comes from this run.
    """
    from medmm.data.bundled import vqa_rad_sample_root

    _quiet_training_logs()

    out = Path(out_dir).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    root = vqa_rad_sample_root()
    result = DemoResult(out_dir=out, report=out / "index.html")
    t_all = time.perf_counter()

    def step(name: str, title: str, fn: Callable[[], Any]) -> Any:
        log(f"[medmm demo] {title} ...")
        t0 = time.perf_counter()
        value = fn()
        result.timings[name] = round(time.perf_counter() - t0, 1)
        result.parts[name] = value
        log(f"[medmm demo] {title}: done in {result.timings[name]:.0f} s")
        return value

    # 1. data
    def check() -> dict[str, Any]:
        from medmm.data.check import check_dataset

        official = check_dataset("vqa_rad", root)
        grouped = check_dataset("vqa_rad", root, group_by="image", splits={"train": 0.8, "val": 0.2}, seed=0, stratify="organ")
        (out / "data").mkdir()
        (out / "data" / "check_official.json").write_text(json.dumps(official, indent=2, default=str))
        (out / "data" / "check_grouped_by_image.json").write_text(json.dumps(grouped, indent=2, default=str))
        return {"official": official, "grouped": grouped}

    step("data", "checking the bundled VQA-RAD sample", check)

    # 2. training, each task through the same engine
    runs = out / "runs"
    step("vqa", "training the VQA model", lambda: _train("vqa.yaml", runs / "vqa", _overrides(root, quick, 2), keep_checkpoints))
    step(
        "retrieval",
        "training the image-text retrieval model",
        lambda: _train("retrieval.yaml", runs / "retrieval", _overrides(root, quick), keep_checkpoints),
    )

    def ablate() -> dict[str, Any]:
        from medmm.ablation import run_ablation

        table = run_ablation(
            CONFIG_DIR / "organ.yaml",
            demo_fusions(quick),
            seeds=1,
            out_dir=out / "ablation",
            overrides=_overrides(root, quick, 2),
            n_resamples=200 if quick else 1000,
        )
        if not keep_checkpoints:
            for run_dir in sorted((out / "ablation" / "runs").iterdir()):
                drop_checkpoints(run_dir)
        return {"baseline": table.baseline, "primary": table.primary, "files": table.files}

    step("ablation", "training the organ classifier: fusions vs image-only and text-only", ablate)

    # 3. explanations of a few predictions of the fused classifier and of the VQA model
    def explain() -> dict[str, Any]:
        from medmm.explain_run import explain_run

        done = {}
        fused = out / "ablation" / "runs" / f"{(QUICK_FUSED if quick else FUSED)[0]}_s0"  # the first fused variant
        for name, run_dir in (("organ_classifier", fused), ("vqa", runs / "vqa")):
            ids = _first_ids(run_dir, n=2 if quick else 3)
            done[name] = explain_run(run_dir, root, ids=ids, out_dir=out / "explanations" / name)
        return done

    step("explain", "explaining a few predictions", explain)

    # 4. human evaluation study of the VQA predictions (blinded, local SQLite)
    def study() -> dict[str, Any]:
        from medmm.humaneval import create_study_from_predictions

        hdir = out / "humaneval"
        hdir.mkdir()
        # the run's own records (image_path, rationale) are a humaneval predictions file as they are
        preds = runs / "vqa" / "predictions" / "val.jsonl"
        if not preds.exists():
            raise MedmmError(f"{preds}: the VQA run wrote no validation predictions")
        db = hdir / "study.sqlite"
        study_id = create_study_from_predictions(
            f"sqlite:///{db}",
            "VQA-RAD sample: demo VQA model",
            [f"demo_vqa={preds}"],
            "single",
            ["rater1"],
            create_missing_raters={"rater1": "rater1-demo-password", "admin": "admin-demo-password"},
            show_explanations=True,  # one system only, so the evidence cannot unblind anything
            images_root=root / "VQA_RAD Image Folder",  # images are served only from a named folder
        )
        serve = (f"medmm humaneval serve --db sqlite:///{db} --host 127.0.0.1 --port 8000 "
                 f"--images-root '{root / 'VQA_RAD Image Folder'}'")
        (hdir / "SERVE.txt").write_text(serve + "\nlog in as rater1 / rater1-demo-password\n")
        return {"study_id": study_id, "db": str(db), "serve": serve, "n_items": sum(1 for _ in preds.open())}

    step("humaneval", "creating a blinded human-evaluation study", study)

    result.timings["total"] = round(time.perf_counter() - t_all, 1)
    from medmm.demo.report import write_report

    write_report(result)
    log(f"[medmm demo] finished in {result.timings['total']:.0f} s; report: {result.report}")
    log(f"[medmm demo] serve the rating app: {result.parts['humaneval']['serve']}")
    return result


def _quiet_training_logs() -> None:
    """Keep the demo's console to progress bars and results: Lightning's advice about data-loader
    workers and the logging interval does not apply to a 600-question sample. (The litlogger tip
    and the LeafSpec FutureWarning are dropped by the engine itself, medmm.engine.quiet.)"""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, message=r".*(num_workers|logging interval).*")


def _first_ids(run_dir: Path, n: int, split: str = "val") -> list[str]:
    path = run_dir / "predictions" / f"{split}.jsonl"
    ids = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            ids.append(json.loads(line)["id"])
            if len(ids) == n:
                break
    if not ids:
        raise MedmmError(f"{path}: no predictions to explain")
    return ids


__all__ = ["DemoResult", "run_demo"]
