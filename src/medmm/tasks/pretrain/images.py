"""Pretraining images: each read once, resized to size + pad and kept as uint8 (`PixelCache`);
training takes a random crop with gamma / contrast jitter, evaluation the centre crop (`crop`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medmm.data.schema import Sample
from medmm.errors import BadInputError


class PixelCache:
    """Grayscale uint8 (side, side) arrays by image path, read and resized on first use."""

    def __init__(self, side: int):
        self.side = side
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, sample: Sample) -> np.ndarray:
        """The sample's first image (a file, or an in-memory array), resized to (side, side).
        BadInputError when it has none or it cannot be read (the engine's loader then skips and
        counts the sample)."""
        from medmm.data.io import read_image
        from medmm.data.transforms import resize, to_channels, to_unit_range

        ref = sample.images[0] if sample.images else None
        if ref is None or (ref.path is None and ref.array is None):
            raise BadInputError(sample.id, "sample has no image")
        key = str(ref.path) if ref.path is not None else None
        arr = self._arrays.get(key) if key is not None else None
        if arr is None:
            pixels = np.asarray(read_image(Path(key)) if key is not None else ref.array)
            x = resize(to_unit_range(to_channels(pixels, 1)), self.side)
            arr = np.clip(np.asarray(x).reshape(self.side, self.side) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if key is not None:  # files are read once; arrays are already in memory
                self._arrays[key] = arr
        return arr


def crop_batch(pixels: torch.Tensor, size: int, mean: float, std: float, generator: torch.Generator | None,
               gamma: tuple[float, float] = (0.7, 1.4), contrast: tuple[float, float] = (0.85, 1.15)) -> torch.Tensor:
    """Normalised (B, 1, size, size) crops of uint8 (B, side, side) `pixels`: with `generator` (a
    CPU generator: the draws do not depend on the device), a random crop per image with gamma and
    contrast jitter (scanners and windowing differ); without, the centre crop."""
    b, side = pixels.shape[0], pixels.shape[-1]
    if generator is None:
        o = (side - size) // 2
        img = pixels[:, o : o + size, o : o + size].float() / 255.0
        return ((img - mean) / std).unsqueeze(1)
    corner = torch.randint(0, side - size + 1, (b, 2), generator=generator)
    jitter = torch.rand(b, 2, generator=generator, dtype=torch.float64)
    g = (gamma[0] + jitter[:, 0] * (gamma[1] - gamma[0])).float().to(pixels.device)
    c = (contrast[0] + jitter[:, 1] * (contrast[1] - contrast[0])).float().to(pixels.device)
    img = torch.stack([pixels[j, y : y + size, x : x + size] for j, (y, x) in enumerate(corner.tolist())]).float() / 255.0
    img = (img ** g[:, None, None] * c[:, None, None]).clamp(0, 1)
    return ((img - mean) / std).unsqueeze(1)
