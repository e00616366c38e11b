"""The pretrained encoder of a `pretrain_image` run, as the file its consumers load.

`model.image.pretrained` of a vqa or report_generation config names a medmm weights file of the
bare encoder (`medmm.models.pretrained.save_weights`: checksum + architecture, constructor
config, input spec, source, licence); VQA's `model.image.attributes` also reads the label heads
beside it (`<stem>.heads.pt`, tied to the encoder by its sha256). `export_encoder(RUN)` writes
both from a finished run (its best weights, `model.pt`), and a JSON summary (`<stem>.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medmm.errors import MedmmError

DEFAULT_NAME = "export/image_encoder.pt"  # inside the run directory
_LICENCES = {
    "medpix2": "MedPix 2.0 (licence not stated, research/teaching)",
    "covid_cxr": "ieee8023 COVID-19 images (mixed, many CC BY-NC-SA)",
}


def heads_path(weights: str | Path) -> Path:
    """Where the label heads of a pretrained encoder go: beside it, `<stem>.heads.pt` (a medmm
    weights file: one Linear per label over the encoder's pooled feature; metadata
    `label_spaces` and `encoder_sha256`)."""
    p = Path(weights)
    return p.with_name(p.stem + ".heads.pt")


def summary_path(weights: str | Path) -> Path:
    """Where the JSON summary of an exported encoder goes: beside it, same stem, `.json`."""
    return Path(weights).with_suffix(".json")


def _read_metrics(run_dir: Path, role: str) -> dict[str, Any]:
    path = run_dir / "metrics" / f"{role}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def export_encoder(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the run's encoder to `out` (default RUN/export/image_encoder.pt), its label heads to
    `heads_path(out)` and a summary to `summary_path(out)`; returns the summary.

    Raises MedmmError when the run is not a pretrain_image run, BadInputError when it has no
    trained weights (see `medmm.engine.loading.load_run`).
    """
    from medmm.engine.loading import load_run
    from medmm.models.pretrained import input_spec_metadata, save_weights

    run_dir = Path(run_dir)
    cfg, task = load_run(run_dir)
    if cfg.task != "pretrain_image":
        raise MedmmError(f"{run_dir}: a {cfg.task!r} run, not a pretrain_image run; nothing to export")
    out = Path(out) if out is not None else run_dir / DEFAULT_NAME
    if out.suffix == ".json":
        raise MedmmError(f"{out}: the weights file must not end in .json (the summary goes beside it as .json)")
    c = task.config
    sources = list(cfg.data.source_splits or [cfg.data.train_split])
    names = sorted({n for n in _LICENCES if any(s.startswith(n) for s in [cfg.data.dataset, *sources])})
    licence = ("trained on " + " and ".join(_LICENCES[n] for n in names) if names else f"trained on {cfg.data.dataset}") \
        + ": research use only"
    val = _read_metrics(run_dir, "val")
    describe = (f"medmm pretrain_image run {run_dir.resolve().name}: {cfg.data.dataset} {', '.join(sources)}"
                f"; labels {'/'.join(task.label_spaces)}"
                + (" + caption InfoNCE vs frozen " + c.caption.encoder if task.use_captions else "")
                + (f" + denoising reconstruction (weight {c.reconstruction.weight})" if c.reconstruction.weight > 0 else "")
                + ("; VQA-RAD images excluded" if c.exclude_vqa_rad is not None else ""))
    encoder = task.model.encoder
    meta = {"architecture": c.encoder.name, "config": task.encoder_kwargs(),
            "input_spec": input_spec_metadata(encoder.input_spec), "labels": None, "source": describe,
            "licence": licence, "notes": json.dumps({"label_spaces": task.label_spaces, "val": val.get("metrics", {})})}
    summary: dict[str, Any] = {
        "weights": str(out), "run_dir": str(run_dir.resolve()), "architecture": c.encoder.name,
        "encoder_config": task.encoder_kwargs(), "config": cfg.to_dict(), "label_spaces": task.label_spaces,
        # the run's validation part; its numbers are named selection_* when it chose the checkpoint
        "val": val.get("metrics", {}),
        "val_majority_baseline": ((val.get("floors") or {}).get("majority") or {}).get("metrics", {}),
    }
    summary["sha256"] = save_weights(encoder, out, meta)
    summary["heads"] = str(heads_path(out))
    summary["heads_sha256"] = save_weights(task.model.heads, heads_path(out), {
        "architecture": "linear_heads", "config": {"in_dim": encoder.out_dim, "label_spaces": task.label_spaces},
        "labels": None, "label_spaces": task.label_spaces, "encoder_sha256": summary["sha256"],
        "source": f"label heads of {out.name} ({describe})", "licence": licence})
    summary_path(out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
