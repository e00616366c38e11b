"""Framed questions for VQA training (``model.augment.framed_questions``): the VQA-RAD paper's templated
wording of a training question added as one more training example.

Why: VQA-RAD's clinicians wrote each question free-form, as a paraphrase, and in a template
("Is/Are there patency in the patient's common iliac arteries and veins?"). The public JSON keeps
the template in ``question_frame``, beside the free-form and paraphrase records. MEVF+BAN, the
issue's target, was trained on a repackaging with 3,064 training questions against the 1,797
records here; the framed wordings are the difference in kind. They are added for TRAINING
samples only (the engine's `Task.training_samples` hook runs after the split), never scored.

A framed wording is added once per (image, wording): a free-form question and its paraphrase
often share it. Wordings equal to a question already asked about the same image (after answer
normalisation) are not added again.
"""

from __future__ import annotations

from dataclasses import replace

from medmm.data.schema import Sample
from medmm.metrics.vqa import normalise_answer


def framed_question_samples(samples: list[Sample]) -> list[Sample]:
    """`samples` plus one sample per new (image, framed wording) of theirs; the added ones share
    image, answer, targets and paraphrase group with their source and have id ``<id>#frame``."""
    asked = {(s.image_id, normalise_answer(s.text.get("question", ""))) for s in samples}
    extra: list[Sample] = []
    for s in samples:
        frame = s.meta.get("question_frame")
        if not frame:
            continue
        key = (s.image_id, normalise_answer(frame))
        if key in asked:
            continue
        asked.add(key)
        extra.append(replace(s, id=f"{s.id}#frame", text={**s.text, "question": frame},
                             meta={**s.meta, "framed_from": s.id}))
    return samples + extra
