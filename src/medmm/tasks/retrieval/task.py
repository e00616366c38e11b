"""Image <-> text retrieval with a dual encoder (CLIP / ConVIRT), optional GLoRIA local alignment.

Model: an image encoder and a text encoder from `medmm.models` (or one pretrained CLIP-family
Hugging Face model, ``clip_model: hf:<hub name or dir>``), each followed by a projection head into
a shared embedding space. Loss: symmetric InfoNCE over the batch with a learnable temperature,
plus (``local_loss_weight > 0``) GLoRIA's word-region loss: every word attends over the image's
region tokens, word/context cosines are pooled per (text, image) pair, and the pooled scores go
through the same symmetric InfoNCE.

Positives: a text and an image are a positive pair when they came from the same sample, or more
generally when they share an image key (VQA-RAD has many questions per image) or identical text.
Evaluation embeds every sample, de-duplicates images and texts into two galleries, and ranks the
gallery for each query in both directions (metrics in `retrieval_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmm.data.image_cache import PreprocessedImages
from medmm.data.schema import Sample
from medmm.engine.task import Task, register_task
from medmm.errors import BadInputError, MedmmError
from medmm.metrics.headline import Headline, Units
from medmm.models.encoders.base import ImageEncoder, TextEncoder
from medmm.models.encoders.hf_dual import HFClipDualEncoder
from medmm.models.encoders.open_clip_dual import OpenClipDualEncoder

KS = (1, 5, 10)

_PRETRAINED_DUAL = (HFClipDualEncoder, OpenClipDualEncoder)  # checkpoints with their own towers, tokenizer, scale


# ----------------------------------------------------------------------------- losses
def info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) of L2-normalised (B, E) embeddings.

    positives: (B, B) bool, True where image i and text j are a positive pair (default: the
    diagonal). With several positives per row the target is spread evenly over them, so two
    questions about one image are not pushed apart as negatives.
    """
    logits = logit_scale * image_emb @ text_emb.t()
    return _symmetric_ce(logits, positives)


def _symmetric_ce(logits: torch.Tensor, positives: torch.Tensor | None) -> torch.Tensor:
    if positives is None:
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    pos = positives.float()
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(pos.t() / pos.t().sum(1, keepdim=True) * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return 0.5 * (i2t + t2i)


def local_similarity(
    words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor, attn_temperature: float = 4.0, word_gamma: float = 5.0
) -> torch.Tensor:
    """GLoRIA word-region similarity of every (text i, image j) pair -> (B_text, B_image).

    words (Bt, L, E), word_mask (Bt, L) bool, regions (Bi, N, E); all projected to one space.
    Each word attends over image j's regions (softmax of cosine * attn_temperature); the cosine
    of the word with its attended context is pooled over the words by a smooth maximum
    (log-sum-exp with word_gamma), as in Huang et al., ICCV 2021.
    """
    w = F.normalize(words, dim=-1)
    r = F.normalize(regions, dim=-1)
    attn = torch.einsum("ild,jnd->ijln", w, r).mul(attn_temperature).softmax(dim=-1)
    context = F.normalize(torch.einsum("ijln,jnd->ijld", attn, r), dim=-1)
    cos = torch.einsum("ild,ijld->ijl", w, context)
    cos = cos.masked_fill(~word_mask[:, None, :].bool(), float("-inf"))
    return torch.logsumexp(word_gamma * cos, dim=-1) / word_gamma


# ----------------------------------------------------------------------------- ranking metrics
def _galleries(records: list[dict[str, Any]]):
    """De-duplicated image and text galleries and their (image, text) positive matrix."""
    img_keys: dict[str, int] = {}
    txt_keys: dict[str, int] = {}
    img_vecs, txt_vecs, img_groups, txt_groups, pairs = [], [], [], [], []
    for rec in records:
        ref = rec["reference"]
        ik, tk = ref["image_key"], ref["text_key"]
        if ik not in img_keys:
            img_keys[ik] = len(img_keys)
            img_vecs.append(rec["prediction"]["image_embedding"])
            img_groups.append(rec.get("group", ik))
        if tk not in txt_keys:
            txt_keys[tk] = len(txt_keys)
            txt_vecs.append(rec["prediction"]["text_embedding"])
            txt_groups.append(rec.get("group", tk))
        pairs.append((img_keys[ik], txt_keys[tk]))
    pos = np.zeros((len(img_keys), len(txt_keys)), dtype=bool)
    for i, t in pairs:
        pos[i, t] = True
    return np.asarray(img_vecs, np.float32), np.asarray(txt_vecs, np.float32), pos, img_groups, txt_groups


def retrieval_metrics(records: list[dict[str, Any]], *, n_resamples: int = 1000, seed: int = 0, ks: Sequence[int] = KS) -> dict[str, Any]:
    """R@1/5/10 (%), MRR, median and mean rank, image->text and text->image, with bootstrap CIs.

    Ranks and metrics come from `medmm.metrics.retrieval` (pessimistic ties, best positive
    counts); see `similarity_metrics` for the CIs and the random baseline.
    """
    img, txt, pos, img_groups, txt_groups = _galleries(records)
    sim = img.astype(np.float64) @ txt.T.astype(np.float64)
    return similarity_metrics(sim, pos, img_groups, txt_groups, n_resamples=n_resamples, seed=seed, ks=ks)


def similarity_metrics(
    sim: np.ndarray,
    positives: np.ndarray,
    image_groups: Sequence[str],
    text_groups: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    ks: Sequence[int] = KS,
) -> dict[str, Any]:
    """Metrics of an (images x texts) similarity matrix, both directions, with bootstrap CIs
    (none when `n_resamples` is 0).

    Queries are resampled by group (the case/patient id of each image or text) so the several
    images of one case do not narrow the interval falsely. `<direction>_random` is the expected
    R@K of a model that ranks the gallery uniformly at random (exact, not simulated).
    """
    from medmm.metrics.retrieval import rank_metrics, ranks
    from medmm.metrics.stats import bootstrap_ci

    out: dict[str, Any] = {"n_images": int(sim.shape[0]), "n_texts": int(sim.shape[1])}
    for direction, s, pos, groups in (
        ("image_to_text", sim, positives, image_groups),
        ("text_to_image", sim.T, positives.T, text_groups),
    ):
        r = ranks(s, pos)
        out[direction] = rank_metrics(r, ks)
        if n_resamples > 0:  # bootstrap_resamples: 0 switches the intervals off, as in every task
            ci = bootstrap_ci(lambda x: rank_metrics(x, ks), r, n_resamples=n_resamples, seed=seed, groups=list(groups))
            out[f"{direction}_ci"] = {k: [ci["low"][k], ci["high"][k]] for k in ci["estimate"]}
        out[f"{direction}_random"] = _random_expectation(pos, ks)
    out["ci_method"] = ci["method"] if n_resamples > 0 else "no resamples (bootstrap_resamples: 0): no interval"
    return out


def retrieval_units(records: list[dict[str, Any]], key: str = "image_to_text/mrr") -> Units:
    """The queries of `key`'s direction as headline units (`medmm.metrics.headline`): each query's
    rank of its best positive in its own system's gallery (so two systems' ranks can be swapped),
    grouped like the CIs of `similarity_metrics`; fn gives R@K, MRR and median/mean rank."""
    from medmm.metrics.retrieval import rank_metrics, ranks

    direction = key.split("/")[0]
    if direction not in ("image_to_text", "text_to_image"):
        raise MedmmError(f"retrieval headline {key!r}: use image_to_text/<metric> or text_to_image/<metric>")
    img, txt, pos, img_groups, txt_groups = _galleries(records)
    sim = img.astype(np.float64) @ txt.T.astype(np.float64)
    side = "image_key" if direction == "image_to_text" else "text_key"
    ids = list(dict.fromkeys(str(r["reference"][side]) for r in records))  # _galleries' order
    r = ranks(sim, pos) if direction == "image_to_text" else ranks(sim.T, pos.T)
    groups = img_groups if direction == "image_to_text" else txt_groups
    return Units(ids, [str(g) for g in groups], (np.asarray(r, dtype=float),), (),
                 lambda rk: {f"{direction}/{k}": v for k, v in rank_metrics(rk, KS).items()})


def _random_expectation(pos: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Expected R@K (%) under a uniformly random ranking, averaged over queries.

    With g gallery items of which p are positive, P(some positive in the top k) =
    1 - C(g-p, k) / C(g, k).
    """
    g = pos.shape[1]
    p = pos.sum(axis=1)
    out = {}
    for k in ks:
        miss = np.array([math.comb(g - pi, k) / math.comb(g, k) if k <= g else 0.0 for pi in p])
        out[f"R@{k}"] = float(100.0 * np.mean(1.0 - miss))
    return out


# ----------------------------------------------------------------------------- model
def _projection(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":  # ConVIRT's two-layer head
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise MedmmError(f"unknown projection {kind!r}; use linear or mlp")


def _apply_lora(module: nn.Module, lora: dict[str, Any]) -> None:
    """Inject LoRA adapters (peft) into `module` and freeze everything but the adapters."""
    from medmm.errors import require

    peft = require("peft", "train", "LoRA adapters")
    from medmm.models.peft_utils import default_lora_targets

    targets = lora.get("target_modules") or default_lora_targets(module)  # e.g. query/value (BERT), q_proj/v_proj (ViT)
    cfg = peft.LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)), lora_dropout=float(lora.get("dropout", 0.0)), target_modules=list(targets))
    for p in module.parameters():
        p.requires_grad_(False)
    peft.inject_adapter_in_model(cfg, module)
    n_lora = 0
    for name, p in module.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
            n_lora += p.numel()
    if n_lora == 0:
        raise MedmmError(f"LoRA target_modules {targets} matched no layer of {type(module).__name__}")


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class DualEncoder(nn.Module):
    """Image and text towers with projection heads into one space, plus the learnable temperature.

    `encode_image` / `encode_text` return (global (B, E) L2-normalised, tokens (B, N|L, E)).
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        embed_dim: int = 256,
        projection: str = "mlp",
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        local: bool = False,
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_proj = _projection(image_encoder.out_dim, embed_dim, projection)
        self.text_proj = _projection(text_encoder.out_dim, embed_dim, projection)
        # stored as log(1/T) as in CLIP, so the optimiser works on an unconstrained scale
        scale = torch.tensor(math.log(1.0 / init_temperature))
        self.logit_scale = nn.Parameter(scale, requires_grad=learn_temperature)
        self.image_local = nn.Linear(image_encoder.out_dim, embed_dim) if local else None
        self.text_local = nn.Linear(text_encoder.out_dim, embed_dim) if local else None
        self.embed_dim = embed_dim
        # text -> pooled feature of a FROZEN text tower (set by the task): a frozen tower in eval
        # mode gives the same feature for the same text every epoch, so it is computed once.
        self.frozen_text_cache: dict[str, torch.Tensor] | None = None

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100 like CLIP so the logits cannot blow up."""
        return self.logit_scale.exp().clamp(max=100.0)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self.image_encoder(images)
        g = F.normalize(self.image_proj(feats.pooled), dim=-1)
        tokens = self.image_local(feats.tokens) if self.image_local is not None else None
        return g, tokens

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, texts: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        cache = self.frozen_text_cache
        if cache is not None and texts is not None and self.text_local is None:
            missing = [i for i, t in enumerate(texts) if t not in cache]
            if missing:
                with torch.no_grad():
                    pooled = self.text_encoder(input_ids[missing], attention_mask[missing]).pooled
                if len(cache) < 1_000_000:  # bound memory on huge corpora; beyond it, recompute
                    for j, i in enumerate(missing):
                        cache[texts[i]] = pooled[j].detach().cpu()
                fresh = dict(zip((texts[i] for i in missing), pooled, strict=True))
            else:
                fresh = {}
            pooled = torch.stack([fresh[t] if t in fresh else cache[t].to(input_ids.device) for t in texts])
            return F.normalize(self.text_proj(pooled), dim=-1), None, attention_mask.bool()
        feats = self.text_encoder(input_ids, attention_mask)
        g = F.normalize(self.text_proj(feats.pooled), dim=-1)
        tokens = self.text_local(feats.tokens) if self.text_local is not None else None
        return g, tokens, feats.mask


# ----------------------------------------------------------------------------- task
@register_task("retrieval")
class RetrievalTask(Task):
    """Dual-encoder image-text retrieval (see the module docstring); configured by `Config`.

    Tests and library users may pass ready encoder instances (`image_encoder=`, `text_encoder=`),
    which replace the names in the config.
    """

    headline = Headline("val/image_to_text/mrr", "max", retrieval_units)
    zero_shot_dataset = "medpix2"  # `medmm evaluate --model CLIP --task retrieval` without --dataset

    @dataclass
    class Config:
        """The retrieval `model:` section.

        Attributes:
            image_encoder, text_encoder: names for `medmm.models` (small_cnn, resnet18, vit_small,
                minilm, scratch, hf:<hub name or dir>).
            image_encoder_kwargs, text_encoder_kwargs: extra arguments of those constructors.
            clip_model: hf:<hub name or dir> of a pretrained CLIP-family model (transformers
                CLIPModel or SiglipModel); replaces both towers and their projections, and its
                preprocessor_config.json sets image size, mean and std. An open_clip checkpoint
                (BiomedCLIP: timm ViT + Hugging Face text tower) is named `hf-hub:<org/name>` or
                `open_clip:<dir or hub name>` and read without open_clip (docs/models.md).
            image_pretrained, text_pretrained: passed to the encoder factories.
            embed_dim: size of the shared embedding space.
            projection: "linear" or "mlp" (ConVIRT's two-layer head).
            image_size: input side in pixels (null: the encoder's input_spec size).
            text_field: a Sample.text key, or a list of keys joined with a space.
            max_text_length: tokens kept per text.
            init_temperature, learn_temperature: InfoNCE temperature (CLIP: 0.07, learnable).
            local_loss_weight: weight of the GLoRIA word-region loss (0: off).
            freeze_image, freeze_text: keep a backbone fixed (the projection heads still train).
            text_lora, image_lora: LoRA {r, alpha, dropout, target_modules} via peft; the
                backbone is frozen except the adapters.
            bootstrap_resamples: resamples for the confidence intervals of compute_metrics.
        """

        image_encoder: str = "small_cnn"
        text_encoder: str = "minilm"
        image_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
        text_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
        clip_model: str | None = None
        image_pretrained: bool | str = False
        text_pretrained: bool | str = False
        embed_dim: int = 256
        projection: Literal["linear", "mlp"] = "mlp"
        image_size: int | None = None
        text_field: str | list[str] = "caption"
        max_text_length: int = 64
        init_temperature: float = 0.07
        learn_temperature: bool = True
        local_loss_weight: float = 0.0
        freeze_image: bool = False
        freeze_text: bool = False
        text_lora: dict[str, Any] | None = None
        image_lora: dict[str, Any] | None = None
        bootstrap_resamples: int = 1000

    def __init__(self, config: Config | None = None, *, image_encoder: ImageEncoder | None = None, text_encoder: TextEncoder | None = None):
        super().__init__(config)
        c = self.config
        self.text_fields = [c.text_field] if isinstance(c.text_field, str) else list(c.text_field)
        self.max_text_length = c.max_text_length
        self.local_loss_weight = float(c.local_loss_weight)
        self.bootstrap_resamples = c.bootstrap_resamples
        if c.clip_model is not None:
            if c.local_loss_weight:
                raise MedmmError("local_loss_weight needs medmm encoders (token features); not available with clip_model")
            if c.clip_model.startswith(("open_clip:", "hf-hub:")):  # open_clip's format (BiomedCLIP)
                self.model = OpenClipDualEncoder(c.clip_model.removeprefix("open_clip:"), c.learn_temperature)
            else:
                self.model = HFClipDualEncoder(c.clip_model.removeprefix("hf:"), c.learn_temperature)
            declared = self.model.input_spec
            img, txt = self.model.model.vision_model, self.model.model.text_model
        else:
            from medmm.models.encoders import create_image_encoder, create_text_encoder

            img = image_encoder or create_image_encoder(c.image_encoder, pretrained=c.image_pretrained, **c.image_encoder_kwargs)
            txt = text_encoder or create_text_encoder(c.text_encoder, pretrained=c.text_pretrained, **c.text_encoder_kwargs)
            declared = img.input_spec
        self.input_spec = spec = declared.with_size(c.image_size)
        self.image_size, self.channels, self.mean, self.std = spec.size, spec.in_channels, spec.mean, spec.std
        self._images = PreprocessedImages(spec)
        if c.freeze_image:
            _freeze(img)
        if c.freeze_text:
            _freeze(txt)
        if c.text_lora:
            _apply_lora(txt, c.text_lora)
        if c.image_lora:
            _apply_lora(img, c.image_lora)
        if c.clip_model is None:
            self.model = DualEncoder(img, txt, c.embed_dim, c.projection, c.init_temperature, c.learn_temperature, local=self.local_loss_weight > 0)
            if c.freeze_text and not c.text_lora:
                self.model.frozen_text_cache = {}

    # -- data ---------------------------------------------------------------------------
    def text_of(self, sample: Sample) -> str:
        """The text side of a sample: the configured field(s), joined with a space."""
        parts = [sample.text.get(f, "").strip() for f in self.text_fields]
        text = " ".join(p for p in parts if p)
        if not text:
            raise BadInputError(sample.id, f"sample has no text in field(s) {', '.join(self.text_fields)}")
        return text

    def setup(self, train_samples: list[Sample]) -> None:
        """Fit a data-dependent tokenizer (scratch text encoders) on the training texts."""
        enc = getattr(self.model, "text_encoder", None)
        fit = getattr(enc, "fit_tokenizer", None)
        if fit is not None:
            fit([self.text_of(s) for s in train_samples])

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask for `texts`."""
        if isinstance(self.model, _PRETRAINED_DUAL):
            tok = self.model.tokenizer(texts, padding=True, truncation=True, max_length=min(self.max_text_length, self.model.max_length), return_tensors="pt")
            return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}
        tok = self.model.text_encoder.tokenize(texts, max_length=self.max_text_length)
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def image_tensor(self, sample: Sample) -> torch.Tensor:
        """One sample's first image, preprocessed for this model (`build_transform(input_spec)`; cached by path)."""
        if not sample.images:
            raise BadInputError(sample.id, "sample has no image")
        return torch.from_numpy(self._images.get(sample.images[0]))

    def collate(self, samples: list[Sample]) -> dict[str, Any]:
        """Images (B, C, S, S), tokens, and the keys that define positive pairs."""
        texts = [self.text_of(s) for s in samples]
        images = torch.stack([self.image_tensor(s) for s in samples])
        image_keys = [s.image_id or (s.images[0].image_id or s.images[0].path or s.id) for s in samples]
        return {
            "images": images,
            **self.tokenize(texts),
            "ids": [s.id for s in samples],
            "texts": texts,
            "image_keys": [str(k) for k in image_keys],
            "text_keys": [" ".join(t.lower().split()) for t in texts],
            "groups": [s.group("case") if s.case_id else s.group("patient") for s in samples],
            "image_paths": [s.images[0].path for s in samples],
        }

    # -- training -----------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (B, E) for inference (no gradients)."""
        return self.model.encode_image(images)[0]

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalised text embeddings (N, E) of raw strings, for inference (no gradients)."""
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenize(texts[i : i + batch_size])
            dev = next(self.parameters()).device
            out.append(self.model.encode_text(tok["input_ids"].to(dev), tok["attention_mask"].to(dev), texts[i : i + batch_size])[0])
        return torch.cat(out) if out else torch.zeros(0, self.model.embed_dim)

    def _positives(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        ik, tk = batch["image_keys"], batch["text_keys"]
        same = [[ik[i] == ik[j] or tk[i] == tk[j] for j in range(len(ik))] for i in range(len(ik))]
        return torch.tensor(same, dtype=torch.bool, device=device)

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Global InfoNCE, optional local loss, their weighted sum ("loss") and the temperature."""
        img_g, img_tok = self.model.encode_image(batch["images"])
        txt_g, txt_tok, txt_mask = self.model.encode_text(batch["input_ids"], batch["attention_mask"], batch["texts"])
        scale = self.model.temperature_scale()
        pos = self._positives(batch, img_g.device)
        glob = info_nce(img_g, txt_g, scale, pos)
        out = {"loss_global": glob, "temperature": 1.0 / scale.detach()}
        loss = glob
        if self.local_loss_weight > 0:
            # GLoRIA: (text, image) scores scaled by a fixed 10 (its gamma_3), symmetric CE
            local = local_similarity(txt_tok, txt_mask, img_tok)
            loc = _symmetric_ce(10.0 * local.t(), pos)
            out["loss_local"] = loc
            loss = loss + self.local_loss_weight * loc
        out["loss"] = loss
        return out

    def train(self, mode: bool = True) -> RetrievalTask:
        """Train mode, except frozen towers stay in eval mode (no dropout, fixed BatchNorm
        statistics), so a frozen backbone really computes the same features every step."""
        super().train(mode)
        if mode and not isinstance(self.model, _PRETRAINED_DUAL):
            if self.config.freeze_image:
                self.model.image_encoder.eval()
            if self.config.freeze_text:
                self.model.text_encoder.eval()
        if mode and isinstance(self.model, _PRETRAINED_DUAL):
            if self.config.freeze_image:
                self.model.model.vision_model.eval()
            if self.config.freeze_text:
                self.model.model.text_model.eval()
        return self

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.losses(batch)

    @torch.no_grad()
    def evaluation_step(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per sample: its id, image and text embeddings, and the keys that define positives."""
        img = self.model.encode_image(batch["images"])[0].float().cpu().numpy()
        txt = self.model.encode_text(batch["input_ids"], batch["attention_mask"], batch["texts"])[0].float().cpu().numpy()
        return [
            {
                "id": batch["ids"][i],
                "prediction": {"image_embedding": np.round(img[i], 6).tolist(), "text_embedding": np.round(txt[i], 6).tolist()},
                "reference": {"image_key": batch["image_keys"][i], "text_key": batch["text_keys"][i], "text": batch["texts"][i]},
                "group": batch["groups"][i],
                "image_path": batch["image_paths"][i],
            }
            for i in range(len(batch["ids"]))
        ]

    @classmethod
    def zero_shot_section(cls, section: dict[str, Any], pretrained: str, dataset: str | None,
                          prompts: str | None = None) -> dict[str, Any]:
        """`medmm evaluate --model CLIP --task retrieval`: clip_model set (`medmm.tasks.retrieval.untrained`)."""
        from medmm.tasks.retrieval.untrained import zero_shot_section

        return zero_shot_section(section, pretrained, dataset, prompts)

    @classmethod
    def file_scorer(cls) -> Any:
        """`medmm score --task retrieval` (`medmm.tasks.retrieval.file_scorer`)."""
        from medmm.tasks.retrieval.file_scorer import SCORER

        return SCORER

    def instruction_records(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """"Describe this image" -> the paired text (`medmm.tasks.retrieval.instruct`)."""
        from medmm.tasks.retrieval.instruct import retrieval_instruction_records

        return retrieval_instruction_records(samples, self.text_of)

    def explainable(self, samples: list[Sample]) -> Any:
        """Word-to-region maps: each word token's similarity to each image region."""
        from medmm.interpret.explainable import WordRegions
        from medmm.tasks.retrieval.word_regions import retrieval_word_regions

        batch = self.collate(samples)
        return WordRegions(self.name, "word", retrieval_word_regions(self, batch), batch["images"],
                           list(range(len(samples))), self.model.text_encoder)

    def protocol(self) -> dict[str, Any]:
        from medmm.tasks.retrieval.floors import retrieval_protocol

        return retrieval_protocol(self)

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Random ranking and a frozen-feature bridge (`medmm.tasks.retrieval.floors`)."""
        from medmm.tasks.retrieval.floors import retrieval_floors

        return retrieval_floors(self, train_samples, samples, records)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """R@1/5/10, MRR, median rank both directions with grouped bootstrap CIs (see retrieval_metrics)."""
        if not records:
            raise MedmmError("no evaluation records to score")
        return retrieval_metrics(records, n_resamples=self.bootstrap_resamples)
