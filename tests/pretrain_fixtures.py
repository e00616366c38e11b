"""Tiny synthetic MedPix-2.0-like, covid_cxr-like and VQA-RAD-like folders (40 px PNGs) for the
image-pretraining tests, and a run config of the pretrain_image task over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _png(path: Path, seed: int, bright: bool) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(120 if bright else 0, 256 if bright else 136, (40, 40), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_medpix(root: Path, corrupt_dev: bool = False) -> tuple[Path, dict[str, list[str]]]:
    """MedPix-2-0 layout: 8 train cases + 3 dev cases, 2 images each (CT bright, MR dark).
    With corrupt_dev the dev image files are not images, so reading one fails loudly."""
    base = root / "medpix2" / "MedPix-2-0"
    (base / "splitted_dataset").mkdir(parents=True)
    ids: dict[str, list[str]] = {"train": [], "dev": []}
    desc_all, case_all = [], []
    for split, cases in (("train", range(8)), ("dev", range(8, 11))):
        desc, data = [], []
        for c in cases:
            names = [f"MPX{c}_synpic{1000 + 10 * c + j}" for j in range(2)]
            for j, name in enumerate(names):
                ct = (c + j) % 2 == 0
                path = base / "images" / f"{name}.png"
                if split == "dev" and corrupt_dev:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"not a png")
                else:
                    _png(path, 10 * c + j, bright=ct)
                desc.append({"Type": "CT" if ct else "MR", "U_id": f"MPX{c}", "image": name,
                             "Description": {"Caption": f"{'CT' if ct else 'MR'} image number {c} {j} of the head",
                                             "Plane": "Axial" if j == 0 else "Coronal"},
                             "Location Category": "Head" if c % 3 else "Thorax"})
                ids[split].append(name)
            data.append({"U_id": f"MPX{c}", "TAC": names[:1], "MRI": names[1:], "Case": {"History": "pain"},
                         "Topic": {"Category": "Trauma"}})
        (base / "splitted_dataset" / f"descriptions_{split}.jsonl").write_text("\n".join(json.dumps(d) for d in desc))
        (base / "splitted_dataset" / f"data_{split}.jsonl").write_text("\n".join(json.dumps(d) for d in data))
        desc_all += desc
        case_all += data
    (base / "Descriptions.json").write_text(json.dumps(desc_all))
    (base / "Case_topic.json").write_text(json.dumps(case_all))
    return base, ids


def make_covid(root: Path) -> Path:
    """covid_cxr layout under root/covid_cxr: 10 patients, 1-2 X-rays each, plus one metadata row without an image file."""
    root = root / "covid_cxr"
    rows = ["patientid,offset,sex,age,finding,view,modality,folder,filename,license,clinical_notes"]
    for p in range(10):
        for j in range(1 + p % 2):
            name = f"p{p}_{j}.png"
            _png(root / "images" / name, 500 + 10 * p + j, bright=True)
            rows.append(f"{p},0,M,50,{'COVID-19' if p % 2 else 'Pneumonia'},PA,X-ray,images,{name},CC BY 4.0,cough")
    rows.append("99,0,F,40,COVID-19,PA,X-ray,images,missing.png,,")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def make_vqa_rad(root: Path, synpics: list[str]) -> Path:
    folder = root / "VQA_RAD Image Folder"
    folder.mkdir(parents=True)
    for s in synpics:
        (folder / f"{s}.jpg").write_bytes(b"x")  # only the names matter for the exclusion
    return root


def make_root(root: Path, corrupt_dev: bool = False) -> tuple[Path, dict[str, list[str]]]:
    """A data root holding medpix2/ and covid_cxr/ (the layout of ../shared/data); the MedPix ids by split."""
    _, ids = make_medpix(root, corrupt_dev)
    make_covid(root)
    return root, ids


CONFIG = """\
task: pretrain_image
seed: 0
data:
  dataset: medpix2_covid_cxr
  root: {root}
  split: grouped
  source_splits: [medpix2_train, covid_cxr_all]
  group_by: case
  fractions: {{train: 0.75, val: 0.25}}
  test_split: null
model:
  encoder: {{size: 32, widths: [8, 16]}}
  labels: {{min_count: 1}}
  caption: {{weight: 0.0}}
  bootstrap_resamples: 0
trainer:
  max_epochs: 2
  batch_size: 8
  lr: 2.0e-3
  weight_decay: 0.05
  scheduler: onecycle
  onecycle_pct_start: 0.1
  num_threads: 1
  progress_bar: false
  log_every_n_steps: 1
"""


def write_config(root: Path, path: Path) -> Path:
    """The run config above for data `root`, written to `path`."""
    path.write_text(CONFIG.format(root=root))
    return path
