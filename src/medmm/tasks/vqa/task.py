"""Medical visual question answering with optional knowledge-graph augmentation.

Model: an image encoder and a question encoder from `medmm.models`, a fusion block
(cross_attention by default), and two answer heads on the fused features:

* a classifier over the answer vocabulary: every closed answer of the training split plus the
  open answers seen at least ``classifier.min_open_answer_count`` times (answers normalised with
  :func:`normalise_vqa_answer`);
* a small generative decoder (a Transformer decoder over a word vocabulary fitted on the
  training answers, cross-attending to the fused tokens, greedy decoding) for open answers
  the classifier cannot express.

Routing (documented in docs/vqa.md): a closed question (predicted closed from the question by
`medmm.tasks.vqa.routing`, trained on the training questions' answer types; ``routing:
annotation`` reads the annotation instead and is recorded as an oracle input) is answered by the classifier restricted to the answers seen on
closed training questions. An open question is answered by the classifier restricted to the
answers seen on open training questions when its top probability is >= ``open_confidence``,
else by the decoder (the classifier's answer is kept when the decoder produces nothing).

Answer memory (``memory.weight > 0``, `medmm.tasks.vqa.memory`): the answers of the training
questions asked about the same image file, weighted by question similarity, are added to the
classifier's probabilities at inference; it adds nothing for an image not seen in training.

Frozen encoders (``text.freeze`` / ``image.freeze``, the latter usually with ``image.pretrained``)
are kept in eval mode and their features cached per text / image file, so an epoch costs only the
fusion and the heads.

Knowledge (``kg.enabled: true``): the SLAKE knowledge graph (`medmm.knowledge.kg`) is matched
against the question and the top-k triplets, verbalised ("lung - function - breathe"), are
appended to the question after a [SEP] before the text encoder. The triplets are stored in the
task state, so a trained run needs no KG folder at inference.

Rationale (``rationale: true``): each record carries the facts used and attention evidence:
the image grid cells the question attended to most (cross-attention / gated spatial attention)
and the input tokens the image attended to most.

Modules: this one holds the task (model, data-dependent state, heads, losses, answers, records,
metrics); its config is `config`, its batches (a mixin) `inputs`, its encoder features and
their caches (a mixin) `features`; routing, answer memory, question types, choice options,
knowledge facts as words and rationale each have their own module.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.image_cache import PreprocessedImages
from medmm.data.schema import Sample
from medmm.engine.task import Task, register_task
from medmm.errors import MedmmError
from medmm.metrics.headline import Headline
from medmm.models.augment import random_affine_jitter
from medmm.models.frozen_features import FrozenImageFeatures
from medmm.models.fusion.base import FusionOutput
from medmm.models.fusion.simple import late_fusion_logits
from medmm.tasks.vqa import answers as vqa_answers
from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer, vqa_scores
from medmm.tasks.vqa.choices import ChoiceOptions, restrict_to_options
from medmm.tasks.vqa.config import VQAConfig
from medmm.tasks.vqa.decoder import PAD, SPECIAL, AnswerDecoder
from medmm.tasks.vqa.features import VQAFeaturesMixin
from medmm.tasks.vqa.image_words import ImageWords
from medmm.tasks.vqa.inputs import VQAInputsMixin, require_images
from medmm.tasks.vqa.memory import AnswerMemory, image_key
from medmm.tasks.vqa.question_types import QuestionTypes, mask_by_question_type
from medmm.tasks.vqa.rationale import attention_evidence
from medmm.tasks.vqa.routing import ClosedOpenRouter, annotated_closed


# ----------------------------------------------------------------------------- task
@register_task("vqa")
class VQATask(VQAInputsMixin, VQAFeaturesMixin, Task):
    """Medical VQA: classifier + generative decoder with question-type routing (module docstring).

    Library users may pass ready encoder instances (`image_encoder=`, `text_encoder=`).
    """

    headline = Headline("val/overall_accuracy", "max", vqa_answers.vqa_units)

    Config = VQAConfig

    def __init__(self, config: VQAConfig | None = None, *, image_encoder: Any = None, text_encoder: Any = None):
        super().__init__(config)
        from medmm.models import apply_lora, create_fusion, create_image_encoder, create_text_encoder, freeze

        c = self.config
        if not 0.0 <= c.open_confidence <= 1.0:
            raise MedmmError(f"model.open_confidence must be in [0, 1], got {c.open_confidence}")
        self.image_encoder = image_encoder or create_image_encoder(c.image.encoder, **c.image.encoder_kwargs)
        self.text_encoder = text_encoder or create_text_encoder(c.text.encoder, **c.text.encoder_kwargs)
        if c.text.freeze:
            freeze(self.text_encoder)
        if c.image.freeze:
            freeze(self.image_encoder)
        if c.augment.image and c.image.freeze:
            raise MedmmError("model.augment.image needs model.image.freeze: false (frozen image features are cached per image)")
        if c.text.lora:
            apply_lora(self.text_encoder, **c.text.lora)
        self.input_spec = self.image_encoder.input_spec.with_size(c.image.size)
        spec = self.input_spec
        self.image_size, self.channels, self.mean, self.std = spec.size, spec.in_channels, spec.mean, spec.std
        self.fusion = create_fusion(c.fusion, self.image_encoder.out_dim, self.text_encoder.out_dim, c.dim, **c.fusion_kwargs)
        if getattr(self.fusion, "combine", None) == "stack":  # the stacker would need its own (answers x 2) layer
            raise MedmmError("VQA late fusion supports combine 'mean' or 'weighted', not 'stack'")
        fdim = self.fusion.out_dim
        self.answers: list[str] = []
        self.closed_answers: list[str] = []
        self.open_answers: list[str] = []
        self.words: list[str] = list(SPECIAL)
        self.kg = None
        self.fdim = fdim
        self.classifier: nn.Module | None = None
        self.decoder: AnswerDecoder | None = None
        self._images = PreprocessedImages(self.input_spec)
        self._text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.frozen_image_features = FrozenImageFeatures()
        self.image_pretrained_sha256: str | None = None
        self.memory: AnswerMemory | None = None
        self._image_keys: dict[str, str] = {}
        self.image_words: ImageWords | None = None
        self.question_types: QuestionTypes | None = None
        self.type_head: nn.Module | None = None
        self._image_words_cache: dict[str, str] = {}
        self._choices: ChoiceOptions | None = None
        self.router: ClosedOpenRouter | None = None

    # -- data-dependent state ------------------------------------------------------------
    def training_samples(self, samples: list[Sample]) -> list[Sample]:
        """With `augment.framed_questions`, the training samples plus their framed wordings."""
        if not self.config.augment.framed_questions:
            return samples
        from medmm.tasks.vqa.framed import framed_question_samples

        return framed_question_samples(samples)

    def setup(self, train_samples: list[Sample]) -> None:
        """Answer vocabularies, decoder word vocabulary, KG, scratch tokenizer; builds the heads."""
        require_images(train_samples)
        c = self.config
        counts: Counter[str] = Counter()
        closed: set[str] = set()
        opened: set[str] = set()
        for s in train_samples:
            a = normalise_vqa_answer(s.text.get("answer", ""))
            if not a:
                continue
            if is_closed_question(s.text.get("question", ""), answer_type(s)):
                closed.add(a)
            else:
                opened.add(a)
                counts[a] += 1
        keep_open = {a for a in opened if counts[a] >= c.classifier.min_open_answer_count}
        self.answers = sorted(closed | keep_open)
        if not self.answers:
            raise MedmmError("no answers in the training split; cannot build the VQA answer vocabulary")
        self.closed_answers = sorted(closed)
        self.open_answers = sorted(keep_open)
        questions = [s.text.get("question", "") for s in train_samples]
        self.router = ClosedOpenRouter.fit(questions, [annotated_closed(q, answer_type(s)) for q, s in zip(questions, train_samples, strict=True)])
        if c.classifier.question_type_mask:
            self.question_types = QuestionTypes.fit(train_samples, {a: i for i, a in enumerate(self.answers)})
            if self.question_types is None:
                raise MedmmError("model.classifier.question_type_mask needs question-type annotations (VQA-RAD question_type, "
                                 "SLAKE content_type) on the training questions; fewer than two types were found")
        words = Counter(w for s in train_samples for w in normalise_vqa_answer(s.text.get("answer", "")).split())
        self.words = list(SPECIAL) + sorted(words)
        if c.kg.enabled:
            from medmm.knowledge.kg import KnowledgeGraph

            if not c.kg.root:
                raise MedmmError("model.kg.enabled is true but model.kg.root is not set (the SLAKE folder holding KG/)")
            self.kg = KnowledgeGraph.from_slake(c.kg.root, max_tail_words=c.kg.max_tail_words)
        if c.image.pretrained:
            from medmm.models.pretrained import load_into

            meta = load_into(self.image_encoder, c.image.pretrained)
            self.image_pretrained_sha256 = meta.get("sha256")
            self.reset_feature_caches()
        if c.image.attributes:
            if not (c.image.pretrained and c.image.freeze):
                raise MedmmError("model.image.attributes needs model.image.pretrained (with its label heads) and model.image.freeze: true")
            self.image_words = ImageWords.from_pretrained(c.image.pretrained, self.image_pretrained_sha256)
            self._image_words_cache.clear()
        fit = getattr(self.text_encoder, "fit_tokenizer", None)
        if fit is not None:
            fit([self.sample_text(s)[0] for s in train_samples])
        self._build_heads()
        if c.memory.weight > 0:
            self._build_memory(train_samples)

    def _build_memory(self, train_samples: list[Sample]) -> None:
        """Answer memory of the training questions (frozen question embeddings, image checksums)."""
        if not self.config.text.freeze or self.config.text.lora:
            raise MedmmError("model.memory.weight > 0 needs a frozen text encoder (model.text.freeze: true, no model.text.lora)")
        texts = [self.sample_text(s)[0] for s in train_samples]
        answers = [self.answer_index.get(normalise_vqa_answer(s.text.get("answer", "")), -1) for s in train_samples]
        keys = [self.sample_image_key(s) for s in train_samples]
        self.memory = AnswerMemory(keys, answers, [s.text.get("question", "") for s in train_samples], self.text_encoder.out_dim)
        was_training = self.text_encoder.training
        self.text_encoder.eval()
        pooled = []
        for k in range(0, len(texts), 64):
            tok = self.text_encoder.tokenize(texts[k : k + 64], max_length=self.config.text.max_length)
            pooled.append(self._frozen_text_features({**tok, "texts": texts[k : k + 64]}).pooled)
        self.text_encoder.train(was_training)
        self.memory.set_embeddings(torch.cat(pooled))

    def sample_image_key(self, sample: Sample) -> str:
        """Checksum of the sample's first image file (cached by path), the memory's image key."""
        ref = sample.images[0] if sample.images else None
        if ref is None:
            return ""
        path = str(ref.path) if ref.path is not None else None
        if path is not None and path in self._image_keys:
            return self._image_keys[path]
        key = image_key(path, ref.array)
        if path is not None:
            self._image_keys[path] = key
        return key

    def state(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "closed_answers": self.closed_answers,
            "open_answers": self.open_answers,
            "words": self.words,
            "kg_triplets": self.kg.to_list() if self.kg is not None else None,
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "image_pretrained_sha256": self.image_pretrained_sha256,
            "memory": self.memory.state() if self.memory is not None else None,
            "image_words": self.image_words.state() if self.image_words is not None else None,
            "question_types": self.question_types.state() if self.question_types is not None else None,
            "router": self.router.state() if self.router is not None else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.answers = list(state["answers"])
        self.closed_answers = list(state["closed_answers"])
        self.open_answers = list(state["open_answers"])
        self.words = list(state["words"])
        if state.get("router") is None and self.config.routing == "predicted":
            raise MedmmError("this VQA run was trained before routing was predicted from the question (no router in "
                             "task_state.json): retrain it, or pass model.routing=annotation (an oracle input)")
        self.router = ClosedOpenRouter.from_state(state["router"]) if state.get("router") is not None else None
        self.image_pretrained_sha256 = state.get("image_pretrained_sha256")
        self.reset_feature_caches()
        if state.get("kg_triplets") is not None:
            from medmm.knowledge.kg import KnowledgeGraph

            self.kg = KnowledgeGraph(state["kg_triplets"], max_tail_words=self.config.kg.max_tail_words)
        if state.get("question_types") is not None:
            self.question_types = QuestionTypes.from_state(state["question_types"])
        self._build_heads()
        if state.get("image_words") is not None:
            self.image_words = ImageWords.from_state(state["image_words"])  # weights come with the state_dict
            self._image_words_cache.clear()
        if state.get("memory") is not None:
            self.memory = AnswerMemory.from_state(state["memory"])  # embeddings come with the weights

    def _answer_head(self) -> nn.Module:
        d, h, n = self.fdim, self.config.classifier.hidden, len(self.answers)
        if h > 0:
            return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, h), nn.GELU(), nn.Dropout(0.2), nn.Linear(h, n))
        return nn.Sequential(nn.LayerNorm(d), nn.Dropout(0.1), nn.Linear(d, n))

    def _build_heads(self) -> None:
        d = self.fdim
        # Late fusion: one answer classifier per modality, logits combined by the fusion's
        # modality weights (as MultimodalClassifier does); every other fusion: one classifier.
        self.classifier = nn.ModuleDict({m: self._answer_head() for m in ("image", "text")}) if self.fusion.late else self._answer_head()
        self.answer_index = {a: i for i, a in enumerate(self.answers)}
        self._choices = ChoiceOptions(self.answers)  # options per question, cached; used when classifier.choice_options is on
        self.word_index = {w: i for i, w in enumerate(self.words)}
        closed_mask = torch.tensor([a in set(self.closed_answers) for a in self.answers])
        open_mask = torch.tensor([a in set(self.open_answers) for a in self.answers])
        # An answer set that is empty on one side would leave nothing to predict: fall back to all.
        self.register_buffer("closed_mask", closed_mask if closed_mask.any() else torch.ones_like(closed_mask), persistent=False)
        self.register_buffer("open_mask", open_mask if open_mask.any() else torch.ones_like(open_mask), persistent=False)
        if self.question_types is not None:  # predicts the question's type; its weights come with the run
            self.type_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, len(self.question_types.types)))
            self.register_buffer("type_compatibility", self.question_types.compatibility(len(self.answers)), persistent=False)
        if self.config.answer_head == "both":
            c = self.config
            self.decoder = AnswerDecoder(len(self.words), d, c.decoder.layers, c.decoder.heads, c.decoder.max_answer_length)

    def answer_logits(self, fused: FusionOutput) -> torch.Tensor:
        """Answer-classifier logits (B, answers) of fused features; per-modality heads for late fusion."""
        if not self.fusion.late:
            return self.classifier(fused.pooled)
        return late_fusion_logits(self.classifier, fused)[0]

    def _ready(self) -> None:
        if self.classifier is None:
            raise MedmmError("VQA task used before setup()/load_state(): no answer vocabulary")

    def train(self, mode: bool = True) -> VQATask:
        """Train mode, except frozen encoders stay in eval mode (no dropout, fixed batch-norm
        statistics), so their features are fixed and may be cached."""
        super().train(mode)
        if mode and self.config.text.freeze:
            self.text_encoder.eval()
        if mode and self.config.image.freeze:
            self.image_encoder.eval()
        return self

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self._ready()
        if self.config.augment.image:
            batch = {**batch, "images": random_affine_jitter(batch["images"]), "augmented": True}
        fused, memory, pad = self.forward_features(batch)
        logits = self.answer_logits(fused)
        labels = batch["labels"]
        out: dict[str, torch.Tensor] = {}
        allowed = None
        if self.config.classifier.masked_loss:
            # as at inference: a closed question's answer competes only with closed answers
            allowed = torch.where(batch["closed_annotated"].to(logits.device)[:, None], self.closed_mask[None], self.open_mask[None])
            options = batch.get("choice_options")
            if options is not None:  # a choice question whose answer is among its options competes among them
                options = options.to(logits.device)
                in_options = labels.ge(0) & options.gather(1, labels.clamp_min(0)[:, None])[:, 0]
                allowed = torch.where(in_options[:, None], options, allowed)
            labels = labels.masked_fill(labels.ge(0) & ~allowed.gather(1, labels.clamp_min(0)[:, None])[:, 0], -100)
            logits = logits.masked_fill(~allowed, -1e9)
        if bool((labels >= 0).any()):
            cls_loss = classifier_loss(logits, labels, allowed, self.config.classifier.label_smoothing)
            out["acc_in_vocab"] = (logits.argmax(-1)[labels >= 0] == labels[labels >= 0]).float().mean()
        else:
            cls_loss = logits.sum() * 0.0
        loss = cls_loss + fused.aux_loss
        out["loss_classifier"] = cls_loss.detach()
        if self.type_head is not None and bool((batch["question_type_labels"] >= 0).any()):
            type_loss = F.cross_entropy(self.type_head(fused.pooled), batch["question_type_labels"].to(logits.device), ignore_index=-100)
            loss = loss + type_loss
            out["loss_question_type"] = type_loss.detach()
        if self.decoder is not None:
            tgt = batch["answer_tokens"]
            dec_logits = self.decoder(tgt[:, :-1], memory, pad)
            dec_loss = F.cross_entropy(dec_logits.reshape(-1, dec_logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=PAD)
            loss = loss + self.config.decoder.loss_weight * dec_loss
            out["loss_decoder"] = dec_loss.detach()
        out["loss"] = loss
        return out

    def classifier_distribution(self, fused: FusionOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, list, list]:
        """The classifier's answer probabilities (B, answers) as answers are chosen: restricted to
        closed or open answers, plus the answer memory, weighted by the question-type mask; with
        each sample's memory match and predicted question type (None when off)."""
        probs = self.answer_logits(fused).float().softmax(-1)
        closed = batch["closed"].to(probs.device)
        allowed = torch.where(closed[:, None], self.closed_mask[None], self.open_mask[None])
        masked = probs.masked_fill(~allowed, 0.0)
        masked = masked / masked.sum(-1, keepdim=True).clamp_min(1e-12)
        matches: list[dict[str, Any] | None] = [None] * len(batch["ids"])
        if self.memory is not None and self.config.memory.weight > 0:
            query = self._frozen_text_features(batch).pooled
            mem, matches = self.memory.distribution(query, batch["image_keys"], len(self.answers), self.config.memory.temperature)
            masked = masked + self.config.memory.weight * mem.to(masked.device).masked_fill(~allowed, 0.0)
            masked = masked / masked.sum(-1, keepdim=True).clamp_min(1e-12)
        predicted_types: list[str | None] = [None] * len(batch["ids"])
        if self.type_head is not None:
            type_logits = self.type_head(fused.pooled)
            masked = mask_by_question_type(masked, type_logits, self.type_compatibility)
            predicted_types = [self.question_types.types[int(i)] for i in type_logits.argmax(-1)]
        options = batch.get("choice_options")
        if options is not None and bool(options.any()):
            # a choice question: the classifier's own probabilities over the options it offers
            options = options.to(probs.device)
            masked = torch.where(options.any(-1, keepdim=True), restrict_to_options(probs, options), masked)
        return masked, matches, predicted_types

    @torch.no_grad()
    def classifier_answer_indices(self, batch: dict[str, Any]) -> torch.Tensor:
        """Index (into `answers`) of each sample's classifier answer, the records' `classifier_prediction`."""
        self._ready()
        fused, _, _ = self.forward_features(batch)
        return self.classifier_distribution(fused, batch)[0].argmax(-1)

    @classmethod
    def file_scorer(cls) -> Any:
        """`medmm score --task vqa` (`medmm.tasks.vqa.file_scorer`)."""
        from medmm.tasks.vqa.file_scorer import SCORER

        return SCORER

    def instruction_records(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """Question -> reference answer (`medmm.tasks.vqa.instruct`)."""
        from medmm.tasks.vqa.instruct import vqa_instruction_records

        return vqa_instruction_records(samples)

    def explainable(self, samples: list[Sample]) -> Any:
        """The classifier head over the answer vocabulary, explained at the task's own classifier
        answer (the decoder's free-text answers are not a class score and are not explained)."""
        from medmm.interpret.explainable import Explainable, ModelOutput

        batch = self.collate(samples)

        def forward(images, ids, mask) -> ModelOutput:
            img = self.image_encoder(images)
            txt = self.text_encoder(ids, mask)
            fused = self.fusion(img, txt)
            return ModelOutput(self.answer_logits(fused), list(img.maps), list(img.attentions), fused.extras, img.tokens)

        # The explained class is the answer the records show (after the closed/open mask, the answer
        # memory and the question-type mask); the attributed score is that answer's classifier
        # logit, before those inference-time weights.
        targets = self.classifier_answer_indices(batch)
        return Explainable(forward, list(self.answers), batch["images"], batch["input_ids"], batch["attention_mask"],
                           self.text_encoder, targets, list(batch["questions"]), self.name,
                           references=[s.text.get("answer") for s in samples], text_name="question")

    @torch.no_grad()
    def answer(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Routed answers: per sample the prediction, its source, the confidence and evidence."""
        self._ready()
        fused, memory, pad = self.forward_features(batch)
        masked, matches, predicted_types = self.classifier_distribution(fused, batch)
        closed = batch["closed"].to(masked.device)
        conf, idx = masked.max(-1)
        use_decoder = (~closed) & (conf < self.config.open_confidence)
        options = batch.get("choice_options")
        if options is not None:  # an offered option is answered by the classifier, whatever its confidence
            use_decoder = use_decoder & ~options.to(use_decoder.device).any(-1)
        decoded: dict[int, str] = {}
        if self.decoder is not None and bool(use_decoder.any()):
            rows = use_decoder.nonzero().flatten()
            for r, ids in zip(rows.tolist(), self.decoder.greedy(memory[rows], pad[rows]), strict=True):
                text = " ".join(self.words[i] for i in ids if i >= len(SPECIAL))
                if text:
                    decoded[r] = text
        evidence = attention_evidence(fused.extras, batch["input_ids"], batch["attention_mask"], self.config.rationale_top_k,
                                      getattr(self.text_encoder, "tokenizer", None)) if self.config.rationale else None
        out = []
        for i in range(len(batch["ids"])):
            from_decoder = i in decoded
            out.append(
                {
                    "prediction": decoded[i] if from_decoder else self.answers[int(idx[i])],
                    "classifier_prediction": self.answers[int(idx[i])],
                    "source": "decoder" if from_decoder else "classifier",
                    "confidence": round(float(conf[i]), 4),
                    "evidence": evidence[i] if evidence is not None else None,
                    "memory_match": matches[i],
                    "question_type": predicted_types[i],
                    "options": [self.answers[j] for j in options[i].nonzero().flatten().tolist()] if options is not None else [],
                }
            )
        return out

    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per question: id, question, prediction, reference, types, image, routing."""
        answers = self.answer(batch)
        records = []
        for i, a in enumerate(answers):
            rec = {
                "id": batch["ids"][i],
                "question": batch["questions"][i],
                "prediction": a["prediction"],
                "reference": batch["references"][i],
                "answer_type": batch["answer_types"][i],
                "question_type": batch["question_types"][i],
                "image_path": batch["image_paths"][i],
                "group": batch["groups"][i],
                "source": a["source"],
                "confidence": a["confidence"],
                "classifier_prediction": a["classifier_prediction"],
                "routed_type": "CLOSED" if bool(batch["closed"][i]) else "OPEN",
            }
            if self.config.rationale:
                rec["rationale"] = {"facts": batch["facts"][i], **(a["evidence"] or {})}
                if batch["image_words"][i]:  # what the encoder's label heads read in the image
                    rec["rationale"]["image_words"] = batch["image_words"][i]
                if a["memory_match"] is not None:  # the most similar training question on this image
                    rec["rationale"]["memory_match"] = a["memory_match"]
                if a["question_type"] is not None:  # the type the answers were restricted to
                    rec["rationale"]["question_type"] = a["question_type"]
                if a["options"]:  # the alternatives the question offered, the only answers allowed
                    rec["rationale"]["options"] = a["options"]
            records.append(rec)
        return records

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """medmm.metrics.vqa scores + bootstrap CIs resampling images + routing statistics."""
        if not records:
            raise MedmmError("no evaluation records to score")
        return vqa_scores(records, n_resamples=self.config.bootstrap_resamples)

    @classmethod
    def oracle_inputs(cls, config: VQAConfig) -> list[str]:
        """Routing by the answer-type annotation (``routing: annotation``) is an oracle input."""
        from medmm.tasks.vqa.routing import ORACLE_ROUTING

        return [ORACLE_ROUTING] if config.routing == "annotation" else []

    def protocol(self) -> dict[str, Any]:
        """Metric definitions and the routing used."""
        from medmm.tasks.vqa.floors import vqa_protocol

        return vqa_protocol(self)

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Answer prior and question-only nearest neighbour (`medmm.tasks.vqa.floors`)."""
        from medmm.tasks.vqa.floors import vqa_floors

        return vqa_floors(self, train_samples, samples, records)

    @classmethod
    def report_figures(cls, records: list[dict[str, Any]], out_dir: Path, split: str) -> list[str]:
        """Report hook: example answers with the attended image cells (`medmm.tasks.vqa.figures`)."""
        from medmm.tasks.vqa.figures import save_examples

        return save_examples(records, out_dir, split)


def classifier_loss(logits: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy over labelled rows (label -100 = ignored), label smoothing spread over the
    allowed answers only (all answers when `allowed` is None)."""
    keep = labels.ge(0)
    logp = logits[keep].float().log_softmax(-1)
    nll = -logp.gather(1, labels[keep][:, None])[:, 0]
    if smoothing <= 0:
        return nll.mean()
    ok = allowed[keep].to(logp.dtype) if allowed is not None else torch.ones_like(logp)
    uniform = -(logp * ok).sum(-1) / ok.sum(-1).clamp_min(1.0)
    return ((1.0 - smoothing) * nll + smoothing * uniform).mean()
