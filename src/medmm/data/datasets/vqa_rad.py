"""VQA-RAD (Lau et al. 2018, CC0 1.0) in its original OSF layout.

Root holds ``VQA_RAD Dataset Public.json`` and ``VQA_RAD Image Folder/synpicNNNNN.jpg``.
One Sample per question-answer pair. Official split by ``phrase_type``: train = freeform + para,
test = test_freeform + test_para. The split is by question and shares images between train and
test, so group by "image" for an image-disjoint split. No patient ids exist.

Each record may also carry the VQA-RAD paper's templated wording of its question
(``question_frame``, e.g. "Is/Are there patency in the patient's common iliac arteries and
veins?"); it is kept in ``meta["question_frame"]`` (None when "NULL" or absent), for VQA's
``model.augment.framed_questions``.
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.fields import UniqueIds, label_value, text_value
from medmm.data.io import read_json
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
PHRASE_TYPES = {"train": ("freeform", "para"), "test": ("test_freeform", "test_para")}
ANSWER_TYPES = ("CLOSED", "OPEN")
_REQUIRED = ("qid", "phrase_type", "image_name", "image_organ", "question", "answer", "answer_type")


@register_dataset(
    "vqa_rad",
    splits=("train", "test"),
    description="VQA-RAD radiology VQA (CT/MR/X-ray; head, chest, abdomen), official question-level split",
    group_by="image",
)
def load_vqa_rad(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """QA pairs of `split`; [] when the json holds no record of that split."""
    path = root / JSON_NAME
    if not path.is_file():
        raise BadInputError(
            path, f"VQA-RAD annotation file not found (root must hold {JSON_NAME!r} and {IMAGE_DIR!r}/)"
        )
    records = read_json(path)
    if not isinstance(records, list):
        raise BadInputError(path, "expected a JSON list of QA records")
    wanted = PHRASE_TYPES[split]
    image_dir = root / IMAGE_DIR
    out: list[Sample] = []
    qids = UniqueIds(path, "qid")
    for i, rec in enumerate(records):
        try:
            if not isinstance(rec, dict):
                raise BadInputError(path, f"record {i} is not an object")
            in_split = rec.get("phrase_type") in wanted
            if rec.get("qid") is not None:  # ids are unique over the whole file, not per split
                qids.add(str(rec["qid"]), f"record {i}", check=in_split)
            if not in_split:
                continue
            missing = [k for k in _REQUIRED if rec.get(k) is None]
            if missing:
                raise BadInputError(path, f"record {i} (qid {rec.get('qid')}) lacks {', '.join(missing)}")
            where = f"record {i} (qid {rec['qid']})"
            if not str(rec["question"]).strip() or not str(rec["answer"]).strip():
                raise BadInputError(path, f"{where}: empty question or answer")
            question = text_value(rec["question"], path, f"{where} question")
            answer = text_value(rec["answer"], path, f"{where} answer", integers_ok=True)
            label_value(rec["image_organ"], path, f"{where} image_organ")
            # The release has "CLOSED " with a trailing space twice.
            answer_type = str(rec["answer_type"]).strip().upper()
            if answer_type not in ANSWER_TYPES:
                raise BadInputError(
                    path, f"record {i} (qid {rec['qid']}): answer_type {rec['answer_type']!r} is not CLOSED/OPEN"
                )
            image_name = text_value(rec["image_name"], path, f"{where} image_name")
            image_path = image_dir / image_name
            if not image_path.is_file():
                raise BadInputError(image_path, f"image referenced by qid {rec['qid']} not found")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        organ = str(label_value(rec["image_organ"], path, "image_organ")).upper()
        out.append(
            Sample(
                id=str(rec["qid"]),
                dataset="vqa_rad",
                split=split,
                images=[ImageRef(path=image_path, image_id=image_name)],
                text={"question": question, "answer": answer},
                targets={"organ": organ, "answer_type": answer_type},
                image_id=image_name,
                # paraphrases share qid_linked_id with their free-form question (group_by: question)
                question_id=str(rec.get("qid_linked_id") or rec["qid"]),
                meta={
                    "qid": rec["qid"],
                    "question_type": str(rec.get("question_type", "")).strip(),
                    "phrase_type": rec["phrase_type"],
                    "answer_type": answer_type,
                    "image_case_url": rec.get("image_case_url"),
                    "question_frame": _text_or_none(rec.get("question_frame")),
                },
            )
        )
    return out


def _text_or_none(value: object) -> str | None:
    """A free-text field of the release: None for absent, empty or the string "NULL"."""
    text = str(value).strip() if value is not None else ""
    return None if not text or text.upper() == "NULL" else text
