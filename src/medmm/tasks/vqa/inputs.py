"""What a VQA batch is made of: `VQAInputsMixin`, the input methods of `VQATask`.

A question becomes the text-encoder input (the question, then ``[SEP]`` and the knowledge-graph
facts, then ``[SEP]`` and the image read as words when ``image.attributes`` is on); its first
image is preprocessed for the encoder (cached by path); `collate` adds the answer targets, the
closed/open routing and the metadata the records need. `require_images` stops a split whose
images are all missing with a clear message. The methods live in a mixin, as the report task's
decoding does, so `task.py` keeps the model, its state and its losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medmm.data.schema import Sample
from medmm.errors import BadInputError
from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer, question_type
from medmm.tasks.vqa.decoder import answer_token_ids

if TYPE_CHECKING:
    from torch import nn

    from medmm.data.image_cache import PreprocessedImages
    from medmm.knowledge.kg import KnowledgeGraph
    from medmm.tasks.vqa.choices import ChoiceOptions
    from medmm.tasks.vqa.config import VQAConfig
    from medmm.tasks.vqa.image_words import ImageWords
    from medmm.tasks.vqa.memory import AnswerMemory
    from medmm.tasks.vqa.question_types import QuestionTypes
    from medmm.tasks.vqa.routing import ClosedOpenRouter


class VQAInputsMixin:
    """Input methods of `VQATask` (see the module docstring).

    They use the task's attributes annotated below: its config, encoders, knowledge graph,
    image-words reader, preprocessed-image cache, vocabularies, router and the optional answer
    memory and question types; `_ready()` and `sample_image_key()` come from the task.
    """

    config: VQAConfig
    image_encoder: nn.Module
    text_encoder: nn.Module
    kg: KnowledgeGraph | None
    image_words: ImageWords | None
    memory: AnswerMemory | None
    question_types: QuestionTypes | None
    router: ClosedOpenRouter | None
    answer_index: dict[str, int]
    word_index: dict[str, int]
    _images: PreprocessedImages
    _image_words_cache: dict[str, str]
    _choices: ChoiceOptions | None

    def text_input(self, question: str, image_words: str = "") -> tuple[str, list[str]]:
        """Text-encoder input for a question (+ [SEP] + verbalised facts, + [SEP] + the image
        read as words when given) and the facts used."""
        facts = [self.kg.verbalise(t) for t in self.kg.retrieve(question, self.config.kg.top_k)] if self.kg is not None else []
        text = f"{question} [SEP] {'; '.join(facts)}" if facts else question
        return (f"{text} [SEP] image: {image_words}" if image_words else text), facts

    def sample_text(self, sample: Sample) -> tuple[str, list[str]]:
        """`text_input` of a sample: its question, facts and (image.attributes) its image as words."""
        return self.text_input(sample.text.get("question", ""), self.image_description(sample))

    def image_description(self, sample: Sample) -> str:
        """The sample's first image read as words by the pretrained label heads ("" when off);
        cached by path (the encoder is frozen, so the words never change)."""
        if self.image_words is None or not sample.images:
            return ""
        key = str(sample.images[0].path) if sample.images[0].path is not None else None
        if key is not None and key in self._image_words_cache:
            return self._image_words_cache[key]
        was_training = self.image_encoder.training
        self.image_encoder.eval()
        with torch.no_grad():
            pooled = self.image_encoder(torch.from_numpy(self.image_array(sample))[None]).pooled
        self.image_encoder.train(was_training)
        words = self.image_words.describe(pooled)[0]
        if key is not None:
            self._image_words_cache[key] = words
        return words

    def image_array(self, sample: Sample) -> np.ndarray:
        """First image of the sample, preprocessed for the encoder (cached by path)."""
        if not sample.images:
            raise BadInputError(sample.meta.get("img_name") or sample.id, "sample has no image (image file missing)")
        return self._images.get(sample.images[0])

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Images, question(+knowledge) tokens, answer targets and the metadata records need."""
        self._ready()
        words = [self.image_description(s) for s in samples]
        texts, facts = zip(*(self.text_input(s.text.get("question", ""), w) for s, w in zip(samples, words, strict=True)), strict=True)
        for s in samples:
            if not s.text.get("question", "").strip():
                raise BadInputError(s.id, "sample has no question")
        images = torch.from_numpy(np.stack([self.image_array(s) for s in samples]))
        tok = self.text_encoder.tokenize(list(texts), max_length=self.config.text.max_length)
        answers = [normalise_vqa_answer(s.text.get("answer", "")) for s in samples]
        atypes = [answer_type(s) for s in samples]
        closed = [is_closed_question(s.text["question"], a) for s, a in zip(samples, atypes, strict=True)]
        routed = closed if self.config.routing == "annotation" else self.router.predict([s.text["question"] for s in samples])
        labels = torch.tensor([self.answer_index.get(a, -100) for a in answers], dtype=torch.long)
        return {
            "images": images,
            "input_ids": tok["input_ids"],
            "attention_mask": tok["attention_mask"],
            "labels": labels,
            "answer_tokens": answer_token_ids(answers, self.word_index, self.config.decoder.max_answer_length),
            "closed": torch.tensor(routed, dtype=torch.bool),  # the routing at inference
            "closed_annotated": torch.tensor(closed, dtype=torch.bool),  # training supervision only
            "ids": [s.id for s in samples],
            "questions": [s.text["question"] for s in samples],
            "texts": list(texts),
            "references": [s.text.get("answer", "") for s in samples],
            "answer_types": [a or ("CLOSED" if c else "OPEN") for a, c in zip(atypes, closed, strict=True)],
            "question_types": [question_type(s) for s in samples],
            "image_paths": [s.images[0].path for s in samples],
            "groups": [s.group("image") for s in samples],
            "facts": list(facts),
            "image_words": words,
            "image_keys": [self.sample_image_key(s) for s in samples] if self.memory is not None else None,
            "question_type_labels": self.question_types.labels(samples) if self.question_types is not None else None,
            "choice_options": self.choice_mask([s.text["question"] for s in samples]),
        }

    def choice_mask(self, questions: list[str]) -> torch.Tensor | None:
        """(B, answers) options each question offers (`medmm.tasks.vqa.choices`); None when
        `classifier.choice_options` is off. Read at call time, so it can be switched on for a trained run."""
        if not self.config.classifier.choice_options or self._choices is None:
            return None
        return self._choices.mask(questions)


def require_images(samples: list[Sample]) -> None:
    """VQA needs the images: a split without any (SLAKE's shared copy) is a clear error."""
    missing = [s for s in samples if not s.images]
    if samples and len(missing) == len(samples):
        s = missing[0]
        where = s.meta.get("img_name") or s.image_id or s.id
        raise BadInputError(
            f"Slake1.0/imgs/{where}" if s.dataset.startswith("slake") else where,
            f"images are missing: none of the {len(samples)} training questions of {s.dataset!r} has its image file "
            "(the shared SLAKE copy ships QA json + KG only; put the official Slake1.0/imgs/ folder under the data root)",
        )
