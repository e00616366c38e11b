"""MedPix 2.0 images and COVID-19 chest X-rays pooled, with the labels image pretraining learns.

Root is a folder holding both datasets in their original layouts, under their dataset names
(the layout of ``../shared/data``)::

    <root>/medpix2/       MedPix 2.0 (the ``MedPix-2-0`` folder or a folder holding it)
    <root>/covid_cxr/     ieee8023 covid-chestxray-dataset (metadata.csv + images/)

One Sample per image, with the targets `modality` (CT, MR, XR), `plane` (MedPix only) and
`location` (MedPix's location category; "Thorax" for the chest X-rays), the MedPix caption as
text `caption`, and `case_id` = "medpix2:<case>" or "covid_cxr:<patient>", so a grouped split by
"case" keeps every case/patient of either source on one side. Ids are "<source>/<id>".

Splits name a source and its split, so a run config pools exactly what it names
(``data.source_splits: [medpix2_all, covid_cxr_all]`` with ``data.split: grouped``):

* ``medpix2_train``, ``medpix2_dev``, ``medpix2_test``, ``medpix2_all``: MedPix's case-level splits;
* ``covid_cxr_all``, or ``covid_cxr_train`` / ``_val`` / ``_test``: the patient-grouped split of
  ``configs/diagnosis/covid_cxr.yaml`` (`COVID_SPLIT`), so an encoder pretrained on covid train
  never saw a diagnosis test patient. Metadata rows without an image file are left out.

The splits overlap (``medpix2_all`` holds the others): list ones that do not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from medmm.data.registry import ErrorPolicy, load_dataset, register_dataset
from medmm.data.schema import Sample
from medmm.errors import BadInputError

NAME = "medpix2_covid_cxr"
SOURCE_SPLITS = {"medpix2": ("train", "dev", "test", "all"), "covid_cxr": ("all", "train", "val", "test")}
# The patient-grouped covid_cxr split of configs/diagnosis/covid_cxr.yaml (its seed is that run's
# seed, 0); a test checks the two agree.
COVID_SPLIT = {"group_by": "patient", "fractions": {"train": 0.6, "val": 0.15, "test": 0.25}, "seed": 0,
               "stratify": "finding_group"}
SPLITS = tuple(f"{src}_{split}" for src, splits in SOURCE_SPLITS.items() for split in splits)


def _medpix2(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    ss = load_dataset("medpix2", root, split, skip_bad=errors.skip_bad)
    for exc in ss.skipped:
        errors.handle(exc)
    out = []
    for s in ss.samples:
        t = s.targets
        targets = {k: v for k, v in (("modality", t.get("modality")), ("plane", t.get("plane")),
                                     ("location", t.get("location_category"))) if v}
        text = {"caption": s.text["caption"]} if s.text.get("caption") else {}
        out.append(dataclasses.replace(s, id=f"medpix2/{s.id}", dataset=NAME, split=f"medpix2_{split}",
                                       targets=targets, text=text, case_id=f"medpix2:{s.group('case')}"))
    return out


def _covid_cxr(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    from medmm.data.splits import grouped_split

    ss = load_dataset("covid_cxr", root, "all", skip_bad=errors.skip_bad)
    for exc in ss.skipped:
        errors.handle(exc)
    samples = ss.samples
    if split != "all":
        c = COVID_SPLIT
        samples = grouped_split(samples, c["group_by"], c["fractions"], c["seed"], stratify=c["stratify"])[split]
    out = []
    for s in samples:
        if not s.images or s.images[0].path is None or not Path(s.images[0].path).is_file():
            continue  # metadata rows without an image file (text-only rows of the collection)
        targets = {"location": "Thorax", **({"modality": s.images[0].modality} if s.images[0].modality else {})}
        out.append(dataclasses.replace(s, id=f"covid_cxr/{s.id}", dataset=NAME, split=f"covid_cxr_{split}",
                                       targets=targets, text={}, case_id=f"covid_cxr:{s.group('patient')}"))
    return out


@register_dataset(NAME, splits=SPLITS, group_by="case",
                  description="MedPix 2.0 + COVID-19 chest X-rays pooled: modality/plane/location and captions (image pretraining)")
def load(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """The images of one source split (`split` = "<source>_<source split>") under root/<source>."""
    source, _, part = split.rpartition("_")
    folder = Path(root) / source
    if not folder.is_dir():
        raise BadInputError(folder, f"{source} dataset folder not found (root must hold medpix2/ and covid_cxr/)")
    return (_medpix2 if source == "medpix2" else _covid_cxr)(folder, part, errors)
