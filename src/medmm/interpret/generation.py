"""Explanations of generated text: which image regions drove what a generative model wrote.

The explained score of a sample is the summed log-probability of its generated tokens (the
answer, the report, or reasoning + answer with chain of thought) given the prompt and the image,
the generated text held fixed (`GeneratedText.score`). Heatmaps over the model's own pixel input:
occlusion (captum: the score's drop when a window is set to zero, the normalised mean image) and
integrated gradients (captum; the path-integrated form of gradient x input, from the all-zero
image). Each gets the deletion/insertion faithfulness check of `medmm.interpret.faithfulness`
on the same log-probability. A sample with several images (views) gets heatmaps per view, the
other views held fixed. The page shows, per sample, the prompt, the generated text, the
answer taken from it, the rationale (chain of thought) and the reference beside the overlays.

A view whose pixels are "raw" (processors that give image tiles or flattened patches, not one
pixel image: Idefics3 / SmolVLM, Qwen2-VL) is explained on the original image before the
processor, in its coordinates: occlusion of the raw image (`medmm.interpret.raw_occlusion`,
windows filled with the image's mean or a blur, each occluded image re-run through the model's
processor), with deletion/insertion towards the same fill. Integrated gradients need a
differentiable path from the pixels and are listed as unavailable, with the reason, on the page
and in explanations.json.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch

from medmm.errors import MedmmError
from medmm.interpret import attributions, faithfulness, gradcam, raw_occlusion, render
from medmm.interpret.explainable import GeneratedText

GENERATION_METHODS = ("occlusion", "integrated_gradients")
RAW_DISPLAY = 1024  # long side (px) up to which a small raw view is enlarged by `scale` for display
GRADIENT_METHODS = ("integrated_gradients",)  # unavailable on raw images: the processor is not differentiable
OCCLUSION_GRID = 8  # windows at least 1/8 of the image side: at most 15 x 15 forward passes at any resolution


def _as_scores(score: Any, i: int, v: int):
    """sample i's score as a function of its view v, as the (K, 1) 'logits' captum's target=0 picks from."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        return score(i, v, x).float()[:, None]
    return fn


def generation_heatmaps(view: GeneratedText, i: int, methods: tuple[str, ...], ig_steps: int = 16,
                        occlusion_window: int = 8, v: int = 0, occlusion_fill: str = "mean") -> dict[str, torch.Tensor]:
    """Heatmaps (H, W), min-max normalised, of sample i's view v for the methods of GENERATION_METHODS asked for.
    Raw views: occlusion of the raw image only (occlusion_fill: "mean" or "blur"; occlusion_window
    unused, windows are 1/RAW_OCCLUSION_GRID of each side); gradient methods give nothing."""
    if view.pixels == "raw":
        if "occlusion" not in methods:
            return {}
        occ = raw_occlusion.raw_occlusion(lambda x: view.score(i, v, x), view.images[i][v], fill=occlusion_fill)
        return {"occlusion": gradcam.normalise_maps(occ.clamp_min(0)[None])[0]}  # regions whose hiding lowers the score
    img = view.images[i][v : v + 1]
    scores = _as_scores(view.score, i, v)
    side = min(img.shape[-2:])
    out: dict[str, torch.Tensor] = {}
    if "occlusion" in methods:
        win = max(2, occlusion_window, side // OCCLUSION_GRID)
        win = min(win, max(2, side // 2))
        occ = attributions.pixel_map(attributions.occlusion(scores, img, 0, window=win, stride=max(1, win // 2)), signed=True)
        out["occlusion"] = gradcam.normalise_maps(occ.clamp_min(0))[0]  # regions whose removal lowers the text's log-probability
    if "integrated_gradients" in methods:
        attr, _ = attributions.integrated_gradients(scores, img, 0, steps=ig_steps)
        out["integrated_gradients"] = gradcam.normalise_maps(attributions.pixel_map(attr))[0]
    return out


def explain_generation(view: GeneratedText, samples: list[Any], out_dir: str | Path, methods: tuple[str, ...] = GENERATION_METHODS,
                       ig_steps: int = 16, faithfulness_steps: int = 16, n_random: int = 5, occlusion_window: int = 8,
                       scale: int = 3, occlusion_fill: str = "mean") -> dict[str, Any]:
    """Heatmaps of the image regions behind each sample's generated text; writes PNGs,
    explanations.json and index.html into out_dir. Methods not in GENERATION_METHODS are
    listed as not offered (Grad-CAM and attention need maps the model does not expose; token
    attributions and modality Shapley values are not computed for generated text); with none
    of them asked for, the page shows the generated text without heatmaps. Raw views (see the
    module docstring): occlusion of the raw image with `occlusion_fill`; gradient methods asked
    for are listed as unavailable with the reason."""
    from medmm.interpret.explain import _panel_title, _safe  # the classifier page's helpers

    used = tuple(m for m in methods if m in GENERATION_METHODS)  # the others are listed as not offered, as the page says
    raw = view.pixels == "raw"
    unavailable = {m: _gradient_reason(view) for m in used if raw and m in GRADIENT_METHODS}
    used = tuple(m for m in used if m not in unavailable)
    if len(view.records) != len(samples) or len(view.images) != len(samples):
        raise MedmmError(f"{len(samples)} samples but {len(view.records)} generation records and {len(view.images)} image sets")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for i, (smp, gen) in enumerate(zip(samples, view.records, strict=True)):
        d = out_dir / _safe(str(smp.id))
        views = view.images[i]
        with torch.no_grad():
            lp = float(view.score(i, 0, views[0][None])[0])
        rec: dict[str, Any] = {"id": str(smp.id), "task": view.kind, **{k: gen.get(k) for k in
                               ("prompt", "output", "answer", "rationale", "reference", "scored")},
                               "log_prob": lp, "input_pngs": [], "heatmaps": {}}
        tiles = []
        for v in range(len(views)):
            tag = "" if len(views) == 1 else f"view{v + 1}_"  # one view: the classifier page's file names
            shown = display_scale(tuple(views[v].shape[-2:]), scale) if raw else scale
            png = render.save_image(views[v], d / f"{tag}input.png", shown)
            rec["input_pngs"].append(str(png.relative_to(out_dir)))
            tiles.append((f"{tag.replace('view', 'view ').replace('_', ' ')}input", png))

            def score(x: torch.Tensor, i: int = i, v: int = v) -> torch.Tensor:
                return view.score(i, v, x)

            # raw views: pixels are deleted towards the occlusion's fill (the raw image's "absent" value)
            base = (raw_occlusion.fill_image(views[v], occlusion_fill, raw_occlusion.raw_window(tuple(views[v].shape[-2:])))
                    if raw else None)
            for m, h in generation_heatmaps(view, i, used, ig_steps, occlusion_window, v, occlusion_fill).items():
                f = faithfulness.faithfulness(score, views[v], h, steps=faithfulness_steps, n_random=n_random, baseline=base)
                png = render.save_overlay(views[v], h, d / f"{tag}{_safe(m)}.png", scale=shown)
                rec["heatmaps"][tag + m] = {"png": str(png.relative_to(out_dir)), "view": v,
                                            **{k: f[k] for k in ("deletion_auc", "insertion_auc", "random_deletion_auc",
                                                                  "random_insertion_auc", "deletion_gain", "insertion_gain",
                                                                  "unfaithful")},
                                            "deletion_curve": f["deletion"], "insertion_curve": f["insertion"]}
                tiles.append((f"{tag.replace('view', 'view ').replace('_', ' ')}{render.method_label(m)}", png))
        title = _panel_title({"id": rec["id"], "text": rec["prompt"], "explained_class": rec["answer"],
                              "probability": float(torch.tensor(lp).exp()), "reference": rec["reference"]}, "prompt")
        title[-1] = title[-1].replace("(p = ", "(p of the generated text = ")
        rec["panel_png"] = str(render.save_panel(tiles, title, d / "panel.png").relative_to(out_dir))
        results.append(rec)
    summary: dict[str, Any] = {
        "task": view.kind, "n_samples": len(samples), "methods": list(used),
        "not_offered": [m for m in methods if m not in GENERATION_METHODS], "samples": results,
        "settings": {"ig_steps": ig_steps, "faithfulness_steps": faithfulness_steps, "n_random": n_random,
                     "occlusion_window": occlusion_window, "occlusion_grid": OCCLUSION_GRID,
                     "score": "summed log-probability of the generated tokens, prompt and generated text fixed",
                     "absent_image": "all-zero input tensor (normalised space)"},
        "flagged_unfaithful": [{"id": r["id"], "method": m} for r in results for m, h in r["heatmaps"].items() if h["unfaithful"]],
    }
    if raw:
        summary.update(pixels="raw", pixel_note=view.pixel_note, unavailable=unavailable)
        summary["settings"].update(
            occlusion="raw image before the processor, heatmaps in its coordinates: windows of ceil(side / occlusion_grid) "
                      "pixels half a window apart, filled with the fill, each occluded image re-run through the processor",
            occlusion_grid=raw_occlusion.RAW_OCCLUSION_GRID, occlusion_fill=occlusion_fill,
            absent_image=f"the raw image's {'per-channel mean' if occlusion_fill == 'mean' else 'blur'} (occlusion fill)")
        del summary["settings"]["occlusion_window"]  # windows are relative to the raw image's size
    (out_dir / "explanations.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "index.html").write_text(_page(summary))
    summary["index"] = str(out_dir / "index.html")
    return summary


def display_scale(size: tuple[int, int], scale: int) -> int:
    """The PNG scale of a raw view (H, W): it is at its native resolution (an X-ray may be 3000 px
    wide), so `scale` enlarges it only while the long side stays within RAW_DISPLAY; never below 1."""
    return max(1, min(scale, RAW_DISPLAY // max(size)))


def _gradient_reason(view: GeneratedText) -> str:
    """Why gradient methods are unavailable for a raw view."""
    why = f" ({view.pixel_note})" if view.pixel_note else ""
    return (f"this model's processor gives no pixel image to differentiate{why}; the raw image reaches the model through "
            "resizing and tiling/patching that carry no gradient, so only occlusion of the raw image is offered")


def _figure(m: str, h: dict[str, Any]) -> str:
    """One heatmap overlay with its faithfulness numbers."""
    flag = ("<span class='flag'>UNFAITHFUL: deletion AUC not below random</span>" if h["unfaithful"]
            else "<span class='ok'>beats random</span>")
    label = render.method_label(m.split("_", 1)[1] if m.startswith("view") else m)
    return (f"<figure><img src='{html.escape(h['png'])}' alt='{html.escape(label)}'>"
            f"<figcaption><b>{html.escape(label)}</b><br>"
            f"deletion AUC {h['deletion_auc']:.3f} (random {h['random_deletion_auc']:.3f})<br>"
            f"insertion AUC {h['insertion_auc']:.3f} (random {h['random_insertion_auc']:.3f})<br>{flag}</figcaption></figure>")


def _page(summary: dict[str, Any]) -> str:
    secs = []
    for r in summary["samples"]:
        figs = []
        for v, inp in enumerate(r["input_pngs"]):
            label = "input" if len(r["input_pngs"]) == 1 else f"view {v + 1} input"
            figs.append(f"<figure><img src='{html.escape(inp)}' alt='{label}'><figcaption>{label}</figcaption></figure>")
            figs += [_figure(m, h) for m, h in r["heatmaps"].items() if h["view"] == v]
        lines = [("prompt", r["prompt"]), ("generated", r["output"]), ("answer", r["answer"]),
                 ("rationale (chain of thought)", r["rationale"]), ("reference", r["reference"])]
        text = "".join(f"<p><b>{k}:</b> {html.escape(str(v))}</p>" for k, v in lines if v not in (None, ""))
        secs.append(f"<div class='sample'><h3>{html.escape(r['id'])}</h3>{text}"
                    f"<p>explained: log p({html.escape(str(r['scored']))}) = {r['log_prob']:.3f}</p>"
                    f"<div class='row'>{''.join(figs)}</div></div>")
    intro = ("<p>Which image regions drove the generated text: heatmaps of the summed log-probability of the generated "
             "tokens (prompt and generated text held fixed) with respect to the model's pixel input, min-max normalised. "
             "Faithfulness: deletion/insertion curves of that log-probability as pixels are removed from / revealed onto a "
             "zero image in heatmap order, against smooth random maps; a heatmap whose deletion AUC is not below random is "
             "flagged.</p>")
    if summary.get("pixels") == "raw":
        fill = summary["settings"]["occlusion_fill"]
        intro = intro.replace("with respect to the model's pixel input", "with respect to the raw image, before the processor")
        intro = intro.replace("onto a zero image", f"onto the image's {'mean' if fill == 'mean' else 'blur'}")
        intro += (f"<p>Method: occlusion of the raw image (windows 1/{summary['settings']['occlusion_grid']} of each side, "
                  f"filled with the image's {'per-channel mean' if fill == 'mean' else 'blur'}; each occluded image passes "
                  "through the model's own processor), heatmaps in the original image's coordinates.</p>")
        for m, why in summary["unavailable"].items():
            intro += f"<p class='flag'>{html.escape(render.method_label(m))} unavailable for this model: {html.escape(why)}.</p>"
    if summary["not_offered"]:
        intro += f"<p>Not offered for generated text: {html.escape(', '.join(summary['not_offered']))}.</p>"
    return render.index_html(f"medmm explanations of generated text ({summary['task']})", intro, secs)
