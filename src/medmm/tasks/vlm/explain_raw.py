"""Generated text of a VLM whose processor gives no (3, H, W) pixel image, seen on the raw images.

Idefics3 / SmolVLM split an image into tiles (pixel_values (B, tiles, 3, h, w)) and Qwen2-VL
flattens it into patches (pixel_values (patches, dim)): neither gives a pixel image to attribute
in the original image's coordinates, and the resizing and splitting carry no gradient. The
`GeneratedText` built here therefore takes raw images: its score renders each candidate image
(C, H, W), values in [0, 1], as the 8-bit RGB image the processor reads, re-runs the model's own
processor with the same prompt and completion, and returns the completion's summed
log-probability (`VisionLanguageModel.completion_logprobs`, as the pixel path scores it).
`medmm.interpret.generation` explains it by occlusion of the raw image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medmm.interpret.explainable import GeneratedText
from medmm.models.vlm import VisionLanguageModel
from medmm.tasks.vlm.answering import to_model

SCORE_BATCH = 8  # occluded images per forward pass: bounds memory whatever the caller passes at once


def gives_pixel_images(pixel_values: torch.Tensor | None, n_images: int) -> bool:
    """True when the processor gave one (3, H, W) pixel tensor per image (LLaVA, Gemma 3 / MedGemma)."""
    return pixel_values is not None and pixel_values.dim() == 4 and pixel_values.shape[0] == n_images


def pixel_note(processor: Any, pixel_values: torch.Tensor | None, n_images: int) -> str:
    """Why a processor's output is not a pixel image, for the explanation page."""
    shape = None if pixel_values is None else tuple(pixel_values.shape)
    return (f"{type(processor).__name__} gives pixel input of shape {shape} for {n_images} image(s): "
            "image tiles or flattened patches, not one (3, H, W) image each")


def pil_to_tensor(image: Any) -> torch.Tensor:
    """An RGB PIL image as (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Any:
    """(3, H, W) in [0, 1] as the 8-bit RGB PIL image a processor reads (exact for images that came from 8 bits)."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)  # (H, W, 3) uint8: RGB


def raw_generated_text(vlm: VisionLanguageModel, rows: list[tuple[str, list[Any], str]], records: list[dict[str, Any]],
                       kind: str, note: str | None = None, batch_size: int = SCORE_BATCH) -> GeneratedText:
    """A raw-image `GeneratedText`: rows[i] = (chat prompt, sample i's PIL views, completion held fixed)."""
    raw = [[pil_to_tensor(im) for im in views] for _, views, _ in rows]

    @torch.no_grad()
    def score(i: int, v: int, images: torch.Tensor) -> torch.Tensor:
        prompt, views, completion = rows[i]
        out = []
        for s in range(0, images.shape[0], batch_size):
            chunk = images[s : s + batch_size]
            # each copy: view v replaced by one candidate image, the other views as they are
            lists = [[tensor_to_pil(x) if j == v else views[j] for j in range(len(views))] for x in chunk]
            enc = to_model(vlm, vlm.encode([prompt] * len(lists), lists, [completion] * len(lists)))
            out.append(vlm.completion_logprobs(enc).float().cpu())
        return torch.cat(out)

    return GeneratedText(score, raw, records, kind, pixels="raw", pixel_note=note)
