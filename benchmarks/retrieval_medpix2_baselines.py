"""Baselines for MedPix 2.0 image <-> caption retrieval on the official dev split.

    python benchmarks/retrieval_medpix2_baselines.py --data ../shared/data/medpix2 --out baselines.json

Galleries are built exactly as `RetrievalTask.compute_metrics` builds them (distinct images;
distinct captions after lower-casing and whitespace folding; an image and a caption are a
positive pair when some dev sample has both), and scored by the same function
(`medmm.tasks.retrieval.task.similarity_metrics`, case-grouped bootstrap CIs).

Unimodal nearest-neighbour baseline ("NN bridge through the training set"):
  text -> image: embed the dev caption with MiniLM (all-MiniLM-L6-v2, mean pooling, cosine),
      take the most similar TRAINING caption, and rank dev images by the pixel similarity of
      each to that caption's training image.
  image -> text: take the most similar TRAINING image by pixel similarity, and rank dev
      captions by MiniLM cosine to that training image's caption.
  Pixel similarity: cosine of 32x32 grey thumbnails with their mean subtracted.
  No cross-modal model is involved: each step compares text with text or image with image.
Random baseline: the exact expectation of R@K under a uniformly random ranking.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def thumbnails(samples, size: int = 32) -> np.ndarray:
    """Mean-centred, L2-normalised size x size grey thumbnails (N, size*size)."""
    import torch
    import torch.nn.functional as F

    from medmm.data.io import read_image

    out = []
    for s in samples:
        arr = read_image(s.images[0].path).astype(np.float32)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(-1)
        t = torch.from_numpy(arr)[None, None]
        v = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False).flatten().numpy()
        v = v - v.mean()
        out.append(v / (np.linalg.norm(v) + 1e-8))
    return np.stack(out)


def minilm_embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised MiniLM sentence embeddings (N, 384)."""
    import torch

    from medmm.models.encoders import create_text_encoder

    enc = create_text_encoder("minilm").eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            tok = enc.tokenize(texts[i : i + batch_size], max_length=128)
            out.append(torch.nn.functional.normalize(enc(tok["input_ids"], tok["attention_mask"]).pooled, dim=-1))
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> dict:
    """Compute the baselines; print and optionally write a JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/medpix2")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from medmm.data.registry import load_dataset
    from medmm.tasks.retrieval.task import similarity_metrics

    t0 = time.perf_counter()
    train = load_dataset("medpix2", args.data, "train").samples
    dev = load_dataset("medpix2", args.data, args.split).samples

    def key(text: str) -> str:
        return " ".join(text.lower().split())

    # dev galleries, de-duplicated as in RetrievalTask.compute_metrics
    img_idx: dict[str, int] = {}
    txt_idx: dict[str, int] = {}
    img_samples, txt_texts, img_groups, txt_groups, pairs = [], [], [], [], []
    for s in dev:
        ik, tk = s.image_id, key(s.text["caption"])
        if ik not in img_idx:
            img_idx[ik] = len(img_idx)
            img_samples.append(s)
            img_groups.append(s.case_id)
        if tk not in txt_idx:
            txt_idx[tk] = len(txt_idx)
            txt_texts.append(s.text["caption"])
            txt_groups.append(s.case_id)
        pairs.append((img_idx[ik], txt_idx[tk]))
    pos = np.zeros((len(img_idx), len(txt_idx)), dtype=bool)
    for i, t in pairs:
        pos[i, t] = True

    train_txt = minilm_embed([s.text["caption"] for s in train])
    dev_txt = minilm_embed(txt_texts)
    train_pix = thumbnails(train)
    dev_pix = thumbnails(img_samples)

    # text -> image: dev caption -> nearest training caption -> its image -> pixel similarity
    nn_train_for_text = (dev_txt @ train_txt.T).argmax(axis=1)
    t2i = dev_pix @ train_pix[nn_train_for_text].T  # (images, texts)
    # image -> text: dev image -> nearest training image -> its caption -> MiniLM similarity
    nn_train_for_image = (dev_pix @ train_pix.T).argmax(axis=1)
    i2t = train_txt[nn_train_for_image] @ dev_txt.T  # (images, texts)

    m_t2i = similarity_metrics(t2i.astype(np.float64), pos, img_groups, txt_groups, n_resamples=args.resamples)
    m_i2t = similarity_metrics(i2t.astype(np.float64), pos, img_groups, txt_groups, n_resamples=args.resamples)
    summary = {
        "split": args.split,
        "n_train_samples": len(train),
        "n_images": int(pos.shape[0]),
        "n_texts": int(pos.shape[1]),
        "nn_bridge": {
            "image_to_text": m_i2t["image_to_text"],
            "image_to_text_ci": m_i2t["image_to_text_ci"],
            "text_to_image": m_t2i["text_to_image"],
            "text_to_image_ci": m_t2i["text_to_image_ci"],
        },
        "random": {"image_to_text": m_i2t["image_to_text_random"], "text_to_image": m_t2i["text_to_image_random"]},
        "ci_method": m_i2t["ci_method"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
