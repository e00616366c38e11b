"""RaTEScore's two models: the medical NER tagger and the entity encoder (torch + transformers, optional).

Published models: the NER tagger ``Angelakeke/RaTE-NER-Deberta`` (DeBERTa-v2 token classification,
BIO tags over ABNORMALITY, NON-ABNORMALITY, DISEASE, NON-DISEASE, ANATOMY; MIT) and the encoder
``FremyCompany/BioLORD-2023-C`` (an MPNet sentence encoder). Each is a Hugging Face model folder
(``config.json``, tokeniser files, ``model.safetensors`` or ``pytorch_model.bin``) named by a local
path or a Hub repo id (read through ``huggingface_hub``, which honours ``HF_HUB_OFFLINE=1``); the
weights file is checksummed and may be pinned, ``WHERE#sha256=HEX``. As in the reference code,
each sentence is tagged with up to 512 tokens, and an entity is embedded as the encoder's last
hidden state of its first ([CLS]) token, the entity cut to 30 tokens.

The spec of ``--model-metrics ratescore=SPEC``: ``NER,ENCODER`` or ``NER,ENCODER,AFFINITY``
(AFFINITY: ``long`` (default), ``short`` or a JSON file), or one folder holding ``ner/`` and
``encoder/`` (and optionally ``affinity.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medmm.metrics.model_based.ratescore import TYPES, Affinity, load_affinity, report_score
from medmm.metrics.model_based.ratescore_text import decode_bio, split_sentences
from medmm.metrics.model_based.weights import (
    WeightsLayoutError,
    WeightsNotFoundError,
    check_pin,
    sha256_file,
    split_pin,
)

NER_HUB, ENCODER_HUB = "Angelakeke/RaTE-NER-Deberta", "FremyCompany/BioLORD-2023-C"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
NER_MAX_TOKENS, ENTITY_MAX_TOKENS = 512, 30


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``(ner, encoder, affinity)`` of a ``ratescore=`` spec (see the module docstring)."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 1:
        folder = Path(split_pin(parts[0])[0]).expanduser()
        if (folder / "ner").is_dir() and (folder / "encoder").is_dir():
            affinity = folder / "affinity.json"
            return str(folder / "ner"), str(folder / "encoder"), str(affinity) if affinity.is_file() else "long"
        raise ValueError(f"ratescore={spec!r}: expected NER,ENCODER[,AFFINITY] (e.g. {NER_HUB},{ENCODER_HUB}) "
                         f"or a folder holding ner/ and encoder/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"ratescore={spec!r}: expected NER,ENCODER[,AFFINITY], e.g. {NER_HUB},{ENCODER_HUB},long")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "long"


def resolve_model_dir(spec: str) -> tuple[Path, Path, str]:
    """``(folder, weights file, its sha256)`` of a Hugging Face model named by a folder or a Hub repo id,
    the checksum checked against a ``#sha256=`` pin. One-line WeightsNotFoundError when it is not there."""
    where, pin = split_pin(spec)
    path = Path(where).expanduser()
    if not path.is_dir():
        parts = where.split("/")
        if not (len(parts) == 2 and all(parts) and not where.startswith((".", "~"))):
            raise WeightsNotFoundError(f"{where!r} is not a model folder or a Hub repo id 'owner/name' "
                                       f"(looked for {path.resolve()})")
        path = _hub_snapshot(where)
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"no config.json in model folder {path.resolve()}")
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise WeightsNotFoundError(f"no {' or '.join(WEIGHT_FILES)} in model folder {path.resolve()}")
    digest = sha256_file(weights)
    check_pin(weights, digest, pin)
    return path, weights, digest


def _hub_snapshot(repo: str) -> Path:
    """The repo's config, tokeniser and one weights file (safetensors first), from the Hub or its cache."""
    import os

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    light = ["*.json", "*.txt", "*.model"]
    try:
        folder = Path(snapshot_download(repo_id=repo, allow_patterns=[*light, WEIGHT_FILES[0]]))
        if not (folder / WEIGHT_FILES[0]).is_file():
            folder = Path(snapshot_download(repo_id=repo, allow_patterns=[*light, WEIGHT_FILES[1]]))
    except (LocalEntryNotFoundError, OSError) as exc:  # offline + not cached, or no network
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face Hub and its cache"
        raise WeightsNotFoundError(f"model {repo!r} not found: looked in {where}; {type(exc).__name__}") from exc
    return folder


def _load(auto_cls: Any, folder: Path) -> Any:
    """``auto_cls.from_pretrained`` in eval mode; any missing or unexpected weight is an error, not a warning."""
    model, info = auto_cls.from_pretrained(str(folder), output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    # a pooler head the encoder's checkpoint does not carry is unused here ([CLS] hidden state)
    if all("pooler" in k for k in info.get("missing_keys", ())):
        bad.pop("missing_keys", None)
    if bad:
        raise WeightsLayoutError(f"{folder}: weights do not fit {model.__class__.__name__}: "
                                 + "; ".join(f"{k} {list(v)[:3]}" for k, v in bad.items()))
    return model.eval()


class RaTEScorer:
    """RaTEScore of generated vs reference reports with the models a ``ratescore=`` spec names."""

    def __init__(self, spec: str, *, device: str = "cpu", batch_size: int = 32):
        from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer

        ner, encoder, affinity = parse_spec(spec)
        self.affinity: Affinity = load_affinity(affinity)
        self.ner_dir, self.ner_weights, self.ner_sha256 = resolve_model_dir(ner)
        self.enc_dir, self.enc_weights, self.enc_sha256 = resolve_model_dir(encoder)
        self.ner = _load(AutoModelForTokenClassification, self.ner_dir).to(device)
        self.labels = {int(i): str(lab) for i, lab in self.ner.config.id2label.items()}
        types = {lab[2:] for lab in self.labels.values() if lab[:2] in ("B-", "I-")}
        if not types or not types <= set(TYPES) or any(lab != "O" and lab[:2] not in ("B-", "I-")
                                                       for lab in self.labels.values()):
            raise WeightsLayoutError(f"{self.ner_dir}: labels {sorted(self.labels.values())} are not BIO tags "
                                     f"over RaTEScore's entity types {list(TYPES)}")
        self.ner_tok = AutoTokenizer.from_pretrained(str(self.ner_dir))
        self.encoder = _load(AutoModel, self.enc_dir).to(device)
        self.enc_tok = AutoTokenizer.from_pretrained(str(self.enc_dir))
        self.device, self.batch_size = device, batch_size

    def entities(self, reports: Sequence[str]) -> list[list[tuple[str, str]]]:
        """Per report, its ``(entity text, type)`` pairs in reading order, sentence by sentence."""
        import torch

        owner, sentences = [], []
        for k, report in enumerate(reports):
            for s in split_sentences(report):
                owner.append(k)
                sentences.append(s)
        out: list[list[tuple[str, str]]] = [[] for _ in reports]
        tok = self.ner_tok
        skip = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id} - {None}
        for start in range(0, len(sentences), self.batch_size):
            enc = tok(sentences[start:start + self.batch_size], max_length=NER_MAX_TOKENS, padding=True,
                      truncation=True, return_tensors="pt")
            with torch.no_grad():
                tags = self.ner(**{k: v.to(self.device) for k, v in enc.items()}).logits.argmax(-1).cpu().tolist()
            for row, (ids, mask, pred) in enumerate(zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), tags,
                                                        strict=True)):
                keep = [i for i, (t, m) in enumerate(zip(ids, mask, strict=True)) if m and t not in skip]
                tokens = tok.convert_ids_to_tokens([ids[i] for i in keep])
                for s, e, kind in decode_bio([self.labels[pred[i]] for i in keep]):
                    out[owner[start + row]].append((tok.convert_tokens_to_string(tokens[s:e + 1]).strip(), kind))
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The encoder's [CLS] last hidden state of each entity text (cut to 30 tokens), float64."""
        import torch

        rows = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.enc_tok(list(texts[start:start + self.batch_size]), max_length=ENTITY_MAX_TOKENS,
                               padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                h = self.encoder(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state[:, 0]
            rows.append(h.double().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, self.encoder.config.hidden_size))

    def scores(self, hyps: Sequence[str], refs: Sequence[str]) -> tuple[list[float], list[tuple[int, int]]]:
        """Per report pair, RaTEScore, and the number of (generated, reference) entities."""
        if len(hyps) != len(refs):
            raise ValueError(f"RaTEScore: {len(hyps)} generated reports vs {len(refs)} references")
        hyp_ents, ref_ents = self.entities(hyps), self.entities(refs)
        groups = [*hyp_ents, *ref_ents]
        vectors = self.embed([t for ents in groups for t, _ in ents])
        cuts = np.cumsum([0] + [len(g) for g in groups])  # one batch for all entities, cut back per report
        per = [vectors[cuts[i]:cuts[i + 1]] for i in range(len(groups))]
        n = len(hyps)
        out = [report_score(per[k], [t for _, t in hyp_ents[k]], per[n + k], [t for _, t in ref_ents[k]],
                            self.affinity) for k in range(n)]
        return out, [(len(h), len(r)) for h, r in zip(hyp_ents, ref_ents, strict=True)]

    def provenance(self) -> dict[str, Any]:
        """What identifies these scores: both models' weights and checksums, the affinity matrix, the splitter."""
        return {"ner_weights": str(self.ner_weights), "ner_weights_sha256": self.ner_sha256,
                "ner_labels": [self.labels[i] for i in sorted(self.labels)],
                "encoder_weights": str(self.enc_weights), "encoder_weights_sha256": self.enc_sha256,
                "encoder_pooling": "[CLS] last hidden state", "affinity": self.affinity.name,
                "neg_weight": self.affinity.neg_weight,
                "sentence_splitter": "medmm regex (reference code: medspaCy PyRuSH)",
                "max_tokens": {"ner_sentence": NER_MAX_TOKENS, "entity": ENTITY_MAX_TOKENS}}
