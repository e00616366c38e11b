"""F1-CheXbert: clinical F1 of generated vs reference reports, both labelled by CheXbert.

CheXbert (Smit et al., EMNLP 2020) is BERT-base with one linear head per CheXpert observation
on the [CLS] state: 13 heads of 4 classes (0 blank, 1 positive, 2 negative, 3 uncertain) and a
14th, "No Finding", of 2 classes (0 blank, 1 positive). Its published weights are one file,
``chexbert.pth``: ``{"model_state_dict": {"module.bert.…", "module.linear_heads.{0..13}.{weight,bias}"}, …}``
(``module.`` from DataParallel). Text is tokenised by the bert-base-uncased WordPiece tokeniser
and cut to 512 tokens, as in the published labeller.

F1-CheXbert as reported in the report-generation literature counts only "positive" as 1
(uncertain, negative and blank are 0); the counts and averages are medmm's
:func:`medmm.metrics.clinical.clinical_efficacy`, over the 14 observations and over the
5 of the CheXpert competition ("F1-CheXbert-5").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medmm.data.schema import LabelState
from medmm.metrics.model_based.weights import (
    WeightsLayoutError,
    check_pin,
    load_state_dict,
    resolve_weights,
    sha256_file,
    split_pin,
)

FILENAME = "chexbert.pth"
HUB_REPO = "StanfordAIMI/RRG_scorers"  # a public Hub copy of chexbert.pth (not verified here)
# Head order of the published model (CheXbert's CONDITIONS), in medmm's observation names.
HEADS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
         "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
         "Pleural Other", "Fracture", "Support Devices", "No Finding")
HEAD_CLASSES = (4,) * 13 + (2,)
# class index -> state; 0 (blank) -> absent key
_STATES = {1: LabelState.POSITIVE, 2: LabelState.NEGATIVE, 3: LabelState.UNCERTAIN}
MAX_TOKENS = 512
# The literature's reading: only positive counts as 1.
LABEL_HANDLING = {"uncertain": "negative", "missing": "negative"}


def _strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """The published layout: model_state_dict with 'module.' keys; also accept the bare forms."""
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise WeightsLayoutError("checkpoint holds no state dict (expected {'model_state_dict': {...}})")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def check_layout(sd: dict[str, Any], source: str) -> None:
    """Raise WeightsLayoutError unless ``sd`` has CheXbert's keys and head shapes."""
    heads = sorted(k for k in sd if k.startswith("linear_heads."))
    want = {f"linear_heads.{i}.{p}" for i in range(len(HEADS)) for p in ("weight", "bias")}
    problems = []
    if set(heads) != want:
        problems.append(f"linear_heads keys {len(heads)}, expected {len(want)} (14 heads x weight, bias)")
    if "bert.embeddings.word_embeddings.weight" not in sd:
        problems.append("no bert.embeddings.word_embeddings.weight")
    other = sorted(k for k in sd if not k.startswith(("bert.", "linear_heads.")))
    if other:
        problems.append(f"unexpected keys {other[:3]}")
    if not problems:
        for i, n in enumerate(HEAD_CLASSES):
            rows = sd[f"linear_heads.{i}.weight"].shape[0]
            if rows != n:
                problems.append(f"linear_heads.{i} has {rows} classes, expected {n}")
    if problems:
        raise WeightsLayoutError(f"{source}: not a CheXbert checkpoint: " + "; ".join(problems))


def _bert_config(sd: dict[str, Any]) -> Any:
    """A BertConfig read off the weights' shapes (bert-base for the published file)."""
    from transformers import BertConfig

    vocab, hidden = sd["bert.embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("bert.encoder.layer."))
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64),  # 12 for bert-base
                      intermediate_size=sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
                      max_position_embeddings=sd["bert.embeddings.position_embeddings.weight"].shape[0],
                      type_vocab_size=sd["bert.embeddings.token_type_embeddings.weight"].shape[0])


def classes_to_labels(rows: Sequence[Sequence[int]]) -> list[dict[str, LabelState]]:
    """CheXbert head classes (HEADS order) -> label dicts; blank (0) leaves the observation out."""
    return [{o: _STATES[c] for o, c in zip(HEADS, row, strict=True) if c in _STATES} for row in rows]


class CheXbertLabeller:
    """The CheXbert labeller loaded from its published weights, on CPU (or ``device``)."""

    def __init__(self, spec: str, *, tokenizer: str | None = None, device: str = "cpu", batch_size: int = 16):
        import torch
        from transformers import BertModel, BertTokenizer

        where, pin = split_pin(spec)  # "PATH#sha256=HEX" pins the file
        self.path: Path = resolve_weights(where, FILENAME)
        self.sha256 = sha256_file(self.path)
        check_pin(self.path, self.sha256, pin)
        sd = _strip_prefix(load_state_dict(self.path))
        check_layout(sd, str(self.path))
        self.bert = BertModel(_bert_config(sd), add_pooling_layer="bert.pooler.dense.weight" in sd)
        heads = torch.nn.ModuleList(torch.nn.Linear(self.bert.config.hidden_size, n) for n in HEAD_CLASSES)
        body = {k[5:]: v for k, v in sd.items() if k.startswith("bert.")}
        # position_ids / token_type_ids are buffers some transformers versions save and others don't
        body = {k: v for k, v in body.items() if not k.endswith(("position_ids", "token_type_ids"))}
        missing, unexpected = self.bert.load_state_dict(body, strict=False)
        missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
        if missing or unexpected:
            raise WeightsLayoutError(f"{self.path}: BERT keys missing {missing[:3]}, unexpected {unexpected[:3]}")
        heads.load_state_dict({k[len("linear_heads."):]: v for k, v in sd.items() if k.startswith("linear_heads.")})
        self.heads = heads
        # a folder with a vocab.txt beside the weights supplies the tokeniser; else bert-base-uncased
        # (from the Hugging Face cache when HF_HUB_OFFLINE is set)
        tok = tokenizer or (str(self.path.parent) if (self.path.parent / "vocab.txt").is_file() else "bert-base-uncased")
        self.tokenizer_source = tok
        self.tokenizer = BertTokenizer.from_pretrained(tok)
        self.device, self.batch_size = device, batch_size
        self.max_tokens = min(MAX_TOKENS, self.bert.config.max_position_embeddings)
        self.bert.to(device).eval()
        self.heads.to(device).eval()

    def classes(self, reports: Sequence[str]) -> list[list[int]]:
        """Per report, the argmax class of each of the 14 heads (HEADS order)."""
        import torch

        out: list[list[int]] = []
        for start in range(0, len(reports), self.batch_size):
            # the published labeller's cleaning: strip, newlines to spaces, single spaces
            texts = [" ".join(r.replace("\n", " ").split()) for r in reports[start:start + self.batch_size]]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            with torch.no_grad():
                cls = self.bert(input_ids=enc["input_ids"].to(self.device),
                                attention_mask=enc["attention_mask"].to(self.device)).last_hidden_state[:, 0]
                preds = torch.stack([h(cls).argmax(dim=-1) for h in self.heads], dim=1)
            out.extend(preds.cpu().tolist())
        return out

    def label(self, reports: Sequence[str]) -> list[dict[str, LabelState]]:
        """Label dicts as medmm's rule-based labeller gives them (blank = key absent)."""
        return classes_to_labels(self.classes(reports))

    def provenance(self) -> dict[str, Any]:
        """What identifies these labels: weights file, its sha256, tokeniser."""
        return {"weights": str(self.path), "weights_sha256": self.sha256, "tokenizer": self.tokenizer_source,
                "max_tokens": self.max_tokens}


def f1_chexbert(hyp_labels: Sequence[dict], ref_labels: Sequence[dict]) -> dict[str, Any]:
    """F1-CheXbert (14 observations) and F1-CheXbert-5 from CheXbert label dicts, micro and macro."""
    from medmm.metrics.clinical import clinical_efficacy

    out: dict[str, Any] = {}
    for name, obs in (("f1_chexbert", "14"), ("f1_chexbert_5", "5")):
        ce = clinical_efficacy(hyp_labels, ref_labels, observations=obs, with_provenance=False, **LABEL_HANDLING)
        out[name] = {"micro": ce["micro"], "macro": ce["macro"], "macro_excluded": ce["macro_excluded"]}
        if name == "f1_chexbert":
            out[name]["per_observation"] = ce["per_observation"]
    return out
