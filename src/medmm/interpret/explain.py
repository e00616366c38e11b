"""`explain_samples`: explanations for chosen samples of a loaded task.

For each sample it writes heatmap overlays (Grad-CAM, Grad-CAM++, integrated gradients,
occlusion, attention rollout / cross-attention when the model has them), each with its
deletion/insertion faithfulness check against random maps; token attributions of the text
input as highlighted HTML; exact Shapley contributions of image and text; and an index.html.

Tasks plug in through their `Task.explainable(samples)` hook, which returns an `Explainable`
(the model as logits = f(images, input_ids, attention_mask)), a `WordRegions` (word- or
sentence-to-region maps), a `GeneratedText` (generated answers or reports, explained in
`medmm.interpret.generation`) or None; this module names no task. Explaining a trained run
directory (loading it, finding the samples) is `medmm.explain_run.explain_run`, outside
interpret, which imports no engine.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import torch

from medmm.errors import MedmmError
from medmm.interpret import attention, attributions, faithfulness, gradcam, modality, render
from medmm.interpret.explainable import Explainable, GeneratedText, ModelOutput, WordRegions, token_strings

IMAGE_METHODS = ("gradcam", "gradcam++", "integrated_gradients", "occlusion", "attention")
ALL_METHODS = IMAGE_METHODS + ("tokens", "modality")

__all__ = ["ALL_METHODS", "IMAGE_METHODS", "Explainable", "ModelOutput", "WordRegions", "empty_text", "explain_samples",
           "explain_word_regions", "token_strings"]


# ----------------------------------------------------------------------------- tokens
def _tokenizer_info(enc: Any) -> tuple[int, tuple[int, ...]]:
    """(pad id, special ids kept in the token baseline) of a medmm text encoder."""
    tok = getattr(enc, "tokenizer", None)
    if tok is not None and hasattr(tok, "all_special_ids"):  # transformers
        keep = tuple(i for i in (tok.cls_token_id, tok.sep_token_id, tok.bos_token_id, tok.eos_token_id) if i is not None)
        return int(tok.pad_token_id or 0), keep
    if tok is not None and hasattr(tok, "token_to_id"):  # tokenizers (scratch encoder)
        keep = tuple(i for i in (tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")) if i is not None)
        pad = tok.token_to_id("[PAD]")
        return int(pad if pad is not None else 0), keep
    return 0, ()


def empty_text(enc: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The absent-text baseline: the tokenization of "" repeated n times."""
    tok = enc.tokenize([""] * n)
    return tok["input_ids"], tok["attention_mask"]


# ----------------------------------------------------------------------------- per sample
def _safe(name: str) -> str:
    name = str(name).replace("+", "p")  # gradcam++ -> gradcampp
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:80] or "sample"


def _image_heatmaps(ex: Explainable, i: int, methods: tuple[str, ...], ig_steps: int, occlusion_window: int) -> dict[str, torch.Tensor]:
    """Heatmaps (H, W) of sample i for the requested image methods the model supports."""
    img = ex.images[i : i + 1]
    ids = ex.input_ids[i : i + 1] if ex.input_ids is not None else None
    mask = ex.attention_mask[i : i + 1] if ex.attention_mask is not None else None
    target = int(ex.targets[i])
    size = tuple(img.shape[-2:])
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        probe = ex.forward(img, ids, mask)
    # Transformers (they return attentions): their `maps` are reshaped copies off the path to
    # the scores, so Grad-CAM runs on the final patch tokens; CNNs: the chosen stage's map.
    use_tokens = bool(probe.attentions) and probe.tokens is not None
    if (probe.maps or use_tokens) and ("gradcam" in methods or "gradcam++" in methods):
        layer = None if use_tokens else gradcam.pick_map(probe.maps)

        def with_map(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            o = ex.forward(x, ids, mask)
            return o.logits, (o.tokens if layer is None else o.maps[layer])

        for name, pp in (("gradcam", False), ("gradcam++", True)):
            if name in methods:
                out[name] = gradcam.grad_cam(with_map, img, target, plus_plus=pp)[0]

    def scores(x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        return ex.forward(x, None if ids is None else ids.expand(k, -1), None if mask is None else mask.expand(k, -1)).logits

    if "integrated_gradients" in methods:
        attr, _ = attributions.integrated_gradients(scores, img, target, steps=ig_steps)
        out["integrated_gradients"] = gradcam.normalise_maps(attributions.pixel_map(attr))[0]
    if "occlusion" in methods:
        win = max(2, min(occlusion_window, size[0] // 4))
        occ = attributions.pixel_map(attributions.occlusion(scores, img, target, window=win, stride=max(1, win // 2)), signed=True)
        out["occlusion"] = gradcam.normalise_maps(occ.clamp_min(0))[0]
    if "attention" in methods:
        if probe.attentions:
            out["attention_rollout"] = gradcam.normalise_maps(
                gradcam.upsample(attention.tokens_to_grid(attention.attention_rollout(probe.attentions)), size))[0]
        region = attention.cross_attention_regions(probe.extras, mask)
        if region is not None:
            try:
                grid = attention.tokens_to_grid(region)
            except ValueError:
                grid = None  # tokens that are not a square grid (e.g. several views) are not drawn
            if grid is not None:
                out["cross_attention"] = gradcam.normalise_maps(gradcam.upsample(grid, size))[0]
    return out


def explain_samples(task: Any, samples: list[Any], out_dir: str | Path, methods: tuple[str, ...] = ALL_METHODS,
                    ig_steps: int = 16, faithfulness_steps: int = 16, n_random: int = 5, occlusion_window: int = 8,
                    scale: int = 3) -> dict[str, Any]:
    """Explain `samples` with a loaded task (eval mode); write PNGs and index.html into out_dir."""
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise MedmmError(f"unknown explanation method(s) {sorted(unknown)}; known: {', '.join(ALL_METHODS)}")
    name = getattr(task, "name", type(task).__name__)
    hook = getattr(task, "explainable", None)
    if hook is None:
        raise MedmmError(f"no explainer for task {name!r}: it has no Task.explainable hook")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task.eval()
    ex = hook(samples)
    if ex is None:
        raise MedmmError(f"no explainer for task {name!r}: its Task.explainable hook returns None")
    if isinstance(ex, WordRegions):
        return explain_word_regions(ex, samples, out_dir, scale)
    if isinstance(ex, GeneratedText):
        from medmm.interpret.generation import explain_generation

        return explain_generation(ex, samples, out_dir, methods, ig_steps, faithfulness_steps, n_random, occlusion_window, scale)
    if not isinstance(ex, Explainable):
        raise MedmmError(f"task {name!r}: Task.explainable returned {type(ex).__name__}, not an Explainable, WordRegions "
                         "or GeneratedText")
    n = len(samples)
    results: list[dict[str, Any]] = []

    shap = None
    if "modality" in methods and ex.images is not None and ex.input_ids is not None:
        def logits_of(img, ids, mask):
            return ex.forward(img, ids, mask).logits

        shap = modality.modality_shapley(logits_of, ex.images, (ex.input_ids, ex.attention_mask),
                                         empty_text(ex.text_encoder, n), ex.targets, output="prob")
    tok_attr = None
    if "tokens" in methods and ex.input_ids is not None:
        pad, keep = _tokenizer_info(ex.text_encoder)
        img_fixed = ex.images

        def text_scores(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            # captum expands the inputs steps-fold; the image rows follow them
            reps = ids.shape[0] // n
            imgs = None if img_fixed is None else img_fixed.repeat(reps, 1, 1, 1)
            return ex.forward(imgs, ids, mask).logits

        tok_attr, _ = attributions.token_attributions(text_scores, attributions.text_embedding_layer(ex.text_encoder),
                                                      ex.input_ids, ex.attention_mask, ex.targets, pad, ig_steps, keep)

    with torch.no_grad():
        probs = ex.forward(ex.images, ex.input_ids, ex.attention_mask).logits.float().softmax(-1)
    for i, s in enumerate(samples):
        sid = str(s.id)
        d = out_dir / _safe(sid)
        target = int(ex.targets[i])
        rec: dict[str, Any] = {"id": sid, "task": ex.kind, "explained_class": ex.classes[target],
                               "probability": float(probs[i, target]), "text": ex.texts[i],
                               "reference": ex.references[i] if ex.references else None, "heatmaps": {}}
        if ex.images is not None:
            rec["input_png"] = str(render.save_image(ex.images[i], d / "input.png", scale).relative_to(out_dir))
            heats = _image_heatmaps(ex, i, methods, ig_steps, occlusion_window)
            ids = ex.input_ids[i : i + 1] if ex.input_ids is not None else None
            mask = ex.attention_mask[i : i + 1] if ex.attention_mask is not None else None

            def score(x: torch.Tensor, ids=ids, mask=mask, target=target) -> torch.Tensor:
                k = x.shape[0]
                lo = ex.forward(x, None if ids is None else ids.expand(k, -1), None if mask is None else mask.expand(k, -1)).logits
                return lo.float().softmax(-1)[:, target]

            for m, h in heats.items():
                f = faithfulness.faithfulness(score, ex.images[i], h, steps=faithfulness_steps, n_random=n_random)
                png = render.save_overlay(ex.images[i], h, d / f"{_safe(m)}.png", scale=scale)
                rec["heatmaps"][m] = {"png": str(png.relative_to(out_dir)),
                                      **{k: f[k] for k in ("deletion_auc", "insertion_auc", "random_deletion_auc",
                                                            "random_insertion_auc", "deletion_gain", "insertion_gain", "unfaithful")},
                                      "deletion_curve": f["deletion"], "insertion_curve": f["insertion"]}
            tiles = [("input", d / "input.png")] + [
                (render.method_label(m), out_dir / h["png"]) for m, h in rec["heatmaps"].items()]
            rec["panel_png"] = str(render.save_panel(tiles, _panel_title(rec, ex.text_name), d / "panel.png").relative_to(out_dir))
        if tok_attr is not None:
            nt = int(ex.attention_mask[i].sum())
            toks = token_strings(ex.text_encoder, ex.input_ids[i, :nt].tolist())
            w = [float(v) for v in tok_attr[i, :nt]]
            rec["tokens"] = {"tokens": toks, "attributions": w}
            rec["tokens_html"] = render.token_html(toks, w)
        if shap is not None:
            rec["modality"] = {k: float(shap[k][i]) for k in ("image", "text", "both", "neither")}
        results.append(rec)

    summary: dict[str, Any] = {"task": ex.kind, "n_samples": n, "methods": list(methods), "samples": results,
                               "settings": {"ig_steps": ig_steps, "faithfulness_steps": faithfulness_steps, "n_random": n_random,
                                            "occlusion_window": occlusion_window, "modality_output": "probability of the explained class",
                                            "absent_image": "all-zero input tensor (normalised space)", "absent_text": "tokenization of ''"}}
    if shap is not None:
        summary["modality_per_class"] = modality.per_class_mean(
            [r["modality"]["image"] for r in results], [r["modality"]["text"] for r in results], [r["explained_class"] for r in results])
    flagged = [(r["id"], m) for r in results for m, h in r["heatmaps"].items() if h["unfaithful"]]
    summary["flagged_unfaithful"] = [{"id": a, "method": b} for a, b in flagged]
    (out_dir / "explanations.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "index.html").write_text(_page(summary))
    summary["index"] = str(out_dir / "index.html")
    return summary


_SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}


def explain_word_regions(view: WordRegions, samples: list[Any], out_dir: str | Path, scale: int = 3,
                         max_words: int = 8) -> dict[str, Any]:
    """Word-to-region overlays of a task's `WordRegions`: one map per word token (up to
    `max_words`) or one map per generated sentence. Writes PNGs and index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, recs, starts = view.kind, view.records, view.starts
    results, secs = [], []
    for i, (smp, rec) in enumerate(zip(samples, recs, strict=False)):
        d = out_dir / _safe(str(smp.id))
        img = view.images[starts[i]]
        figs = [f"<figure><img src='{html.escape(str(render.save_image(img, d / 'input.png', scale).relative_to(out_dir)))}'><figcaption>input</figcaption></figure>"]
        entry: dict[str, Any] = {"id": str(smp.id), "maps": []}
        if view.unit == "word":
            toks = token_strings(view.text_encoder, rec["input_ids"])
            entry["method"] = rec["method"]
            items = [(k, t) for k, t in enumerate(toks) if t not in _SPECIAL_TOKENS][:max_words]
            for k, t in items:
                png = render.save_overlay(img, rec["maps"][k], d / f"word{k:02d}_{_safe(t)}.png", scale=scale)
                entry["maps"].append({"word": t, "png": str(png.relative_to(out_dir))})
                figs.append(f"<figure><img src='{html.escape(entry['maps'][-1]['png'])}'><figcaption>{html.escape(t)}</figcaption></figure>")
            head = f"<p>text: {html.escape(' '.join(render.merge_wordpieces(toks, [0.0] * len(toks))[0]))} ({html.escape(rec['method'])})</p>"
        else:
            entry["report"] = rec["report"]
            for k, sen in enumerate(rec["sentences"]):
                png = render.save_overlay(img, sen["map"], d / f"sentence{k:02d}.png", scale=scale)
                entry["maps"].append({"sentence": sen["text"], "png": str(png.relative_to(out_dir))})
                figs.append(f"<figure><img src='{html.escape(entry['maps'][-1]['png'])}'><figcaption>{html.escape(sen['text'][:60])}</figcaption></figure>")
            head = f"<p>generated: {html.escape(rec['report'])}</p>"
        results.append(entry)
        secs.append(f"<div class='sample'><h3>{html.escape(str(smp.id))}</h3>{head}<div class='row'>{''.join(figs)}</div></div>")
    summary = {"task": name, "n_samples": len(samples), "samples": results}
    (out_dir / "explanations.json").write_text(json.dumps(summary, indent=1))
    intro = ("<p>Word-to-region maps: cosine similarity of each word to each image region (dual encoders) or the decoder's "
             "cross-attention of each generated sentence to the image tokens (text generators); not checked for faithfulness.</p>")
    (out_dir / "index.html").write_text(render.index_html(f"medmm word-region maps ({name})", intro, secs))
    summary["index"] = str(out_dir / "index.html")
    return summary


def _panel_title(rec: dict[str, Any], text_name: str = "text") -> list[str]:
    """What a sample's panel explains: id, input text, prediction (with p) and reference."""
    lines = [f"sample {rec['id']}"]
    text = " ".join(t for t in str(rec.get("text") or "").split() if t not in _SPECIAL_TOKENS)
    if text:
        lines.append(f"{text_name}: {text}")
    ref = rec.get("reference")
    verdict = "" if ref is None else ("  (correct)" if str(ref).strip().lower() == str(rec["explained_class"]).strip().lower() else "  (wrong)")
    lines.append(f"prediction: {rec['explained_class']} (p = {rec['probability']:.2f})"
                 + ("" if ref is None else f"   reference: {ref}") + verdict)
    return lines


def _page(summary: dict[str, Any], title: str | None = None) -> str:
    secs = []
    for r in summary["samples"]:
        figs = []
        if r.get("input_png"):
            figs.append(f"<figure><a href='{html.escape(r['input_png'])}'><img src='{html.escape(r['input_png'])}' alt='input'></a>"
                        "<figcaption>input</figcaption></figure>")
        for m, h in r["heatmaps"].items():
            flag = ("<span class='flag'>UNFAITHFUL: deletion AUC not below random</span>" if h["unfaithful"]
                    else "<span class='ok'>beats random</span>")
            figs.append(f"<figure><a href='{html.escape(h['png'])}'><img src='{html.escape(h['png'])}' alt='{html.escape(render.method_label(m))}'></a>"
                        f"<figcaption><b>{html.escape(render.method_label(m))}</b><br>"
                        f"deletion AUC {h['deletion_auc']:.3f} (random {h['random_deletion_auc']:.3f})<br>"
                        f"insertion AUC {h['insertion_auc']:.3f} (random {h['random_insertion_auc']:.3f})<br>{flag}</figcaption></figure>")
        body = f"<div class='row'>{''.join(figs)}</div>"
        if "tokens_html" in r:
            body += f"<p>Token attributions (integrated gradients on the input embeddings; red supports, blue opposes):</p>{r['tokens_html']}"
        if "modality" in r:
            m = r["modality"]
            body += (f"<p>Shapley contributions to p({html.escape(r['explained_class'])}): image {m['image']:+.3f}, "
                     f"text {m['text']:+.3f} (p with both {m['both']:.3f}, with neither {m['neither']:.3f})</p>")
        ref = f"; reference: {html.escape(str(r['reference']))}" if r.get("reference") else ""
        secs.append(f"<div class='sample'><h3>{html.escape(r['id'])}</h3><p>{html.escape(r['text'])}</p>"
                    f"<p>explained class: <b>{html.escape(r['explained_class'])}</b> (p = {r['probability']:.3f}){ref}</p>{body}</div>")
    intro = ("<p>Heatmaps are min-max normalised. Faithfulness: deletion/insertion curves of the explained class's probability "
             "as pixels are removed from / revealed onto a zero image in heatmap order, compared with the mean of smooth random maps; "
             "a heatmap whose deletion AUC is not below random is flagged.</p>")
    if "modality_per_class" in summary:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v['image']:+.3f}</td><td>{v['text']:+.3f}</td><td>{v['n']}</td></tr>"
                       for k, v in summary["modality_per_class"].items())
        intro += f"<table><tr><th>class</th><th>image</th><th>text</th><th>n</th></tr>{rows}</table>"
    return render.index_html(title or f"medmm explanations ({summary['task']})", intro, secs)
