"""Any medmm dataset's records as instruction data: images + the user turn + the target answer.

VQA records (VQA-RAD, SLAKE) become "question -> short answer" turns, a closed question carrying
its options; report records (IU X-ray, MIMIC-CXR, MedPix captions, ROCO) become "describe the
image -> report text" turns. Images are read with `medmm.data.io` (PNG, JPEG, TIFF, DICOM) and
handed to the model's processor as 8-bit RGB, its own preprocessing doing the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError
from medmm.tasks.vlm.prompts import PromptSpec
from medmm.tasks.vlm.scoring import answer_type, choice_options, is_closed_question, normalise_vqa_answer, question_type

YES_NO = ["yes", "no"]


@dataclass
class Instruction:
    """One sample as the VLM sees it. `target` is what it is trained to answer (None: no reference);
    `options` the answers a closed question is answered among (empty: free generation);
    `meta` what the prediction record carries besides the answer."""

    id: str
    images: list[Any]  # PIL images
    text: str
    target: str | None
    options: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def to_pil(ref: ImageRef):
    """An image file or array as an 8-bit RGB PIL image: 8-bit data as is, wider integers and floats
    (16-bit PNG, DICOM in Hounsfield units) scaled from their own minimum and maximum."""
    from PIL import Image

    from medmm.data.io.image import read_image

    arr = np.asarray(read_image(ref.path) if ref.path is not None else ref.array)
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 and arr.dtype.kind == "f" else (a.min(), a.max())
        arr = np.round(255 * (a - lo) / max(hi - lo, 1e-12)).clip(0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] != 3:
        raise BadInputError(ref.path or "array", f"expected a grayscale or RGB image, got shape {arr.shape}")
    return Image.fromarray(arr).convert("RGB")


def read_images(sample: Sample, max_images: int) -> list[Any]:
    """The sample's first `max_images` images as RGB PIL images (a sample without one is bad)."""
    if not sample.images:
        raise BadInputError(sample.meta.get("img_name") or sample.id, "sample has no image (image file missing)")
    return [to_pil(ref) for ref in sample.images[:max_images]]


def vqa_options(question: str, answers: list[str]) -> list[str]:
    """yes/no for a yes/no question (question-only rule); for an "A or B" question the training
    answers it names (at least two); else none."""
    if is_closed_question(question, None):
        return list(YES_NO)
    named = [answers[i] for i in choice_options(question, answers)]
    return named if len(named) >= 2 else []


def vqa_instruction(sample: Sample, prompts: PromptSpec, answers: list[str], max_images: int,
                    use_options: bool) -> Instruction:
    """A VQA sample: its question, the options it offers and its normalised answer as target."""
    question = sample.text.get("question", "").strip()
    if not question:
        raise BadInputError(sample.id, "sample has no question")
    options = vqa_options(question, answers) if use_options else []
    reference = sample.text.get("answer", "").strip()
    # the annotation where the dataset has one (scoring only, never a model input), else a yes/no reference
    atype = answer_type(sample) or ("CLOSED" if normalise_vqa_answer(reference) in YES_NO else "OPEN")
    return Instruction(
        id=sample.id,
        images=read_images(sample, max_images),
        text=prompts.render(sample.dataset, question=question, options=options),
        target=normalise_vqa_answer(reference) if reference else None,
        options=options,
        meta={"question": question, "reference": reference,
              "answer_type": atype,
              "question_type": question_type(sample), "image_path": sample.images[0].path if sample.images else None,
              "group": sample.group("image"), "routed_type": "CLOSED" if options else "OPEN"},
    )


def report_instruction(sample: Sample, prompts: PromptSpec, text_field: str, max_images: int) -> Instruction:
    """A report sample: "describe the image" and its report text (field `text_field`) as target."""
    reference = (sample.text.get(text_field) or "").strip()
    return Instruction(
        id=sample.id,
        images=read_images(sample, max_images),
        text=prompts.render(sample.dataset),
        target=reference or None,
        meta={"reference": reference, "image_path": sample.images[0].path if sample.images else None,
              "group": sample.group("study")},
    )
