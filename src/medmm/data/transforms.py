"""Deterministic, torch-free image preprocessing: channels, resize, intensity scaling, normalisation.

Everything here is plain numpy + PIL, so the same input gives the same output bytes on every
machine and in every data-loader worker. The ONE way an image becomes model input (timm's
`resolve_data_config` habit): a model declares what it needs as an `ImageInputSpec` (size,
channels, mean/std, interpolation, and the resize rule and centre crop of a pretrained model's
image processor) and `build_transform(spec)` turns any array `read_image` returns into that
input. Every task, the report store's keys and the U-Net go through it.

Conventions: images are (H, W) or (H, W, C) numpy arrays; sizes are (height, width) or one int
for a square; the output of `preprocess_image` / an `ImageTransform` is float32 (C, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights, the same ones PIL uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

Interpolation = Literal["bilinear", "bicubic"]
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# "stretch": resize to a (height, width) box; "shortest_edge": the shorter side to one length,
# keeping the aspect ratio (transformers' `size={"shortest_edge": n}`, torchvision's Resize(int)).
ResizeMode = Literal["stretch", "shortest_edge"]
_RESIZE_MODES = ("stretch", "shortest_edge")


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {(h, w)}")
    return h, w


def _check_image(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, 3|4), got {arr.shape}")
    return arr


def to_channels(arr: np.ndarray, n: int) -> np.ndarray:
    """Convert to n channels: n=1 gives (H, W) grayscale (BT.601 luma), n=3 gives (H, W, 3).

    Alpha channels are dropped. Integer inputs keep their dtype (luma is rounded).
    """
    if n not in (1, 3):
        raise ValueError(f"n must be 1 or 3, got {n}")
    arr = _check_image(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if n == 3:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=-1)) if arr.ndim == 2 else arr
    if arr.ndim == 2:
        return arr
    gray = arr.astype(np.float64) @ _LUMA
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(gray), info.min, info.max).astype(arr.dtype)
    return gray.astype(arr.dtype)


def to_unit_range(arr: np.ndarray) -> np.ndarray:
    """Scale intensities to float32 in [0, 1].

    uint8 is divided by 255. Any other input already inside [0, 1] (a windowed DICOM) is kept;
    anything else (uint16 PNG/TIFF, Hounsfield units) is min-max scaled per image, because its
    stored range says nothing reliable about the display range. A constant image becomes 0.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(out.min()), float(out.max())
    if lo >= 0.0 and hi <= 1.0:
        return out
    if hi == lo:
        return np.zeros_like(out)
    return ((out - lo) / (hi - lo)).astype(np.float32)


def _resize_plane(plane: np.ndarray, h: int, w: int, resample: Image.Resampling) -> np.ndarray:
    # Mode "F" (32-bit float) keeps full precision for any dtype; PIL's bilinear filter widens its
    # support when shrinking, so downsampling is antialiased.
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), resample=resample), dtype=np.float32)


def resize(arr: np.ndarray, size: int | Sequence[int], *, mask: bool = False, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Resize to ``size`` = (height, width) (or an int for a square).

    Images use PIL ``interpolation`` ("bilinear" or "bicubic") and come back as float32 (uint8
    stays uint8, rounded); masks (``mask=True``) use nearest neighbour and keep their dtype and
    label values.
    """
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {arr.shape}")
    h, w = _size_hw(size)
    if arr.shape[:2] == (h, w):
        return arr.copy()
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    resample = Image.Resampling.NEAREST if mask else _RESAMPLE[interpolation]
    if mask and np.issubdtype(arr.dtype, np.integer) and arr.size and np.abs(arr).max() > 2**24:
        raise ValueError("mask label values above 2**24 cannot be resized exactly")
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[-1])]
    out = [_resize_plane(p, h, w, resample) for p in planes]
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    if mask or arr.dtype == np.bool_:
        return res.astype(arr.dtype)
    if arr.dtype == np.uint8:
        return np.clip(np.rint(res), 0, 255).astype(np.uint8)
    return res


def resize_8bit(arr: np.ndarray, size: int | Sequence[int], interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Resize a uint8 image with PIL's 8-bit filter, as transformers' PIL image processors do.

    PIL resamples 8-bit images in two separable passes, each rounded and clipped to 0..255; the
    float path (`resize`) rounds nothing. The two differ by a few grey levels (more with bicubic,
    whose overshoot the 8-bit passes clip), so a model trained on the 8-bit result gets it here.
    """
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"resize_8bit needs a uint8 (H, W) or (H, W, C) image, got {arr.dtype} {arr.shape}")
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    h, w = _size_hw(size)
    if arr.shape[:2] == (h, w):
        return arr.copy()
    # Mode "L" per plane: PIL's RGB resample applies the same 8-bit arithmetic to each band.
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[-1])]
    resample = _RESAMPLE[interpolation]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(p), mode="L").resize((w, h), resample)) for p in planes]
    return out[0] if arr.ndim == 2 else np.stack(out, axis=-1)


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `edge`, keeping the aspect ratio.

    The longer side is truncated, ``int(edge * long / short)``, exactly as transformers'
    `get_resize_output_image_size(default_to_square=False)` computes it.
    """
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def center_crop(arr: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """The centred (height, width) window of (H, W) or (H, W, C); top = (H - h) // 2 (transformers'
    and torchvision's offset). A window larger than the image is an error, not zero padding."""
    arr = np.asarray(arr)
    h, w = _size_hw(size)
    H, W = arr.shape[:2]
    if h > H or w > W:
        raise ValueError(f"centre crop {(h, w)} is larger than the image {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return arr[top : top + h, left : left + w]


def normalize(arr: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """(x - mean) / std per channel (last axis of (H, W, C); scalar for (H, W)), as float32."""
    x = np.asarray(arr, dtype=np.float32)
    channels = 1 if x.ndim == 2 else x.shape[-1]
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    for name, v in (("mean", m), ("std", s)):
        if v.size not in (1, channels):
            raise ValueError(f"{name} has {v.size} values for an image with {channels} channel(s)")
    if np.any(s <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return ((x - m) / s).astype(np.float32)


def preprocess_image(
    arr: np.ndarray,
    size: int | Sequence[int],
    in_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
    interpolation: Interpolation = "bilinear",
    *,
    resize_mode: ResizeMode = "stretch",
    resize_size: int | Sequence[int] | None = None,
    resize_8bit: bool = False,
) -> np.ndarray:
    """Any image from `read_image` -> model input: float32 (in_channels, H, W), normalised.

    Steps: channel conversion (`to_channels`), intensity to [0, 1] (`to_unit_range`), resize to
    ``size`` (`resize`, bilinear unless told), then (x - mean) / std per channel. Models call it
    through `build_transform(spec)`.

    A pretrained model's processor may resize first to ``resize_size`` (``resize_mode``
    "stretch": that (height, width); "shortest_edge": the shorter side to that length) and then
    take the centred ``size`` window. ``resize_8bit``: a uint8 image is resized with PIL's 8-bit
    filter before scaling to [0, 1] (`resize_8bit`), as transformers' PIL processors do; other
    dtypes take the float path.
    """
    # Grayscale is resized once and replicated afterwards: 3x less work, identical result.
    x = to_channels(arr, 1) if in_channels == 1 or np.ndim(arr) == 2 else to_channels(arr, 3)
    if resize_mode == "stretch" and resize_size is None and not resize_8bit:
        x = resize(to_unit_range(x), size, interpolation=interpolation)
    elif resize_8bit and x.dtype == np.uint8:
        x = to_unit_range(_resize_and_crop(x, size, interpolation, resize_mode, resize_size, eight_bit=True))
    else:
        x = _resize_and_crop(to_unit_range(x), size, interpolation, resize_mode, resize_size, eight_bit=False)
    if in_channels == 3 and x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    x = normalize(x, mean, std)
    x = x[None] if x.ndim == 2 else np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x, dtype=np.float32)


def _resize_and_crop(
    x: np.ndarray, size, interpolation: Interpolation, mode: ResizeMode, resize_size, *, eight_bit: bool
) -> np.ndarray:
    """Resize by the processor's rule, then the centred `size` window (none when they match)."""
    if mode == "shortest_edge":
        if not isinstance(resize_size, (int, np.integer)):
            raise ValueError(f"resize_mode 'shortest_edge' needs one int resize_size, got {resize_size!r}")
        target = shortest_edge_size(x.shape[0], x.shape[1], int(resize_size))
    elif mode == "stretch":
        target = _size_hw(size if resize_size is None else resize_size)
    else:
        raise ValueError(f"resize_mode must be one of {list(_RESIZE_MODES)}, got {mode!r}")
    x = resize_8bit(x, target, interpolation) if eight_bit else resize(x, target, interpolation=interpolation)
    return x if x.shape[:2] == _size_hw(size) else center_crop(x, size)


def preprocess_mask(arr: np.ndarray, size: int | Sequence[int], *, binary: bool = True) -> np.ndarray:
    """A mask (H, W) -> (H', W') by nearest-neighbour resize.

    ``binary=True`` returns uint8 {0, 1} (nonzero = foreground, as in `MaskRef`); otherwise the
    label values and dtype are kept (multi-class label maps).
    """
    m = np.asarray(arr)
    if m.ndim == 3 and m.shape[-1] in (3, 4):
        m = m[..., :3].max(axis=-1)  # masks saved as RGB: any lit channel marks foreground
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"expected a mask of shape (H, W), got {np.asarray(arr).shape}")
    if binary:
        m = (m != 0).astype(np.uint8)
    return resize(m, size, mask=True)


@dataclass(frozen=True)
class ImageInputSpec:
    """What an image model takes, declared by the model itself; `build_transform` builds the input.

    size: side in pixels, or (height, width): the model's input. in_channels: 1 or 3. mean, std:
    per-channel normalisation after intensities are scaled to [0, 1] (one value, or one per
    channel). No defaults for the statistics on purpose: a model that does not state them is an
    error, never ImageNet's numbers in disguise. interpolation: the resize filter ("bilinear" or
    "bicubic").

    What a pretrained model's image processor adds (defaults: resize straight to `size`):
    resize_mode / resize_size: "stretch" to a (height, width) or int box, or "shortest_edge" (the
    shorter side to one int length, aspect kept); when the resized image is larger than `size`,
    the centred `size` window is taken (CLIP: shortest edge 224, crop 224; DINOv2: 256, crop 224).
    resize_8bit: resize uint8 images with PIL's 8-bit filter, as transformers' PIL processors do.
    """

    size: int | tuple[int, int]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: Interpolation = "bilinear"
    resize_mode: ResizeMode = "stretch"
    resize_size: int | tuple[int, int] | None = None
    resize_8bit: bool = False

    def __post_init__(self) -> None:
        size = self.size if isinstance(self.size, (int, np.integer)) else tuple(int(v) for v in self.size)
        _size_hw(size)  # validates
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        stats = {}
        for name in ("mean", "std"):
            raw = getattr(self, name)
            v = tuple(float(x) for x in (np.atleast_1d(np.asarray(raw, dtype=np.float64)).reshape(-1)))
            if len(v) not in (1, self.in_channels):
                raise ValueError(f"{name} has {len(v)} values for {self.in_channels} input channel(s): {raw!r}")
            stats[name] = v
        if any(s <= 0 for s in stats["std"]):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        object.__setattr__(self, "size", int(size) if isinstance(size, (int, np.integer)) else size)
        object.__setattr__(self, "in_channels", int(self.in_channels))
        object.__setattr__(self, "mean", stats["mean"])
        object.__setattr__(self, "std", stats["std"])
        object.__setattr__(self, "resize_size", self._checked_resize_size())
        object.__setattr__(self, "resize_8bit", bool(self.resize_8bit))

    def _checked_resize_size(self) -> int | tuple[int, int] | None:
        """The resize target, validated: the centre crop (`size`) must fit inside the resized image."""
        rs, (h, w) = self.resize_size, _size_hw(self.size)
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {list(_RESIZE_MODES)}, got {self.resize_mode!r}")
        if self.resize_mode == "shortest_edge":
            if not isinstance(rs, (int, np.integer)) or isinstance(rs, bool):
                raise ValueError(f"resize_mode 'shortest_edge' needs one int resize_size, got {rs!r}")
            if int(rs) < max(h, w):
                raise ValueError(f"crop {(h, w)} does not fit an image whose shorter side is resized to {int(rs)}")
            return int(rs)
        if rs is None:
            return None
        rh, rw = _size_hw(rs)
        if rh < h or rw < w:
            raise ValueError(f"crop {(h, w)} is larger than the resize box {(rh, rw)}")
        return int(rs) if isinstance(rs, (int, np.integer)) else (rh, rw)

    def with_size(self, size: int | Sequence[int] | None) -> ImageInputSpec:
        """This spec at another input size (a config's ``image_size``); None keeps the declared one.

        A spec that resizes larger and crops keeps its resize-to-crop ratio (timm's ``crop_pct``):
        CLIP's 224 / 224 at 336 becomes 336 / 336, DINOv2's 256 / 224 at 112 becomes 128 / 112.
        """
        if size is None:
            return self
        size = int(size) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
        (oh, ow), (nh, nw) = _size_hw(self.size), _size_hw(size)
        if (oh, ow) == (nh, nw) or self.resize_size is None:
            return replace(self, size=size)
        if self.resize_mode == "shortest_edge":
            edge = max(round(self.resize_size * max(nh / oh, nw / ow)), nh, nw)
            return replace(self, size=size, resize_size=int(edge))
        rh, rw = _size_hw(self.resize_size)
        return replace(self, size=size, resize_size=(max(round(rh * nh / oh), nh), max(round(rw * nw / ow), nw)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (weights metadata, model packages). The processor fields appear only when they
        differ from plain resizing, so a medmm encoder's dict (and every key built from it) is as before."""
        size = self.size if isinstance(self.size, int) else list(self.size)
        d: dict[str, Any] = {"size": size, "in_channels": self.in_channels, "mean": list(self.mean),
                             "std": list(self.std), "interpolation": self.interpolation}
        if self.resize_mode != "stretch" or self.resize_size is not None:
            d["resize_mode"] = self.resize_mode
            d["resize_size"] = self.resize_size if isinstance(self.resize_size, int) else list(self.resize_size)
        if self.resize_8bit:
            d["resize_8bit"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageInputSpec:
        """Inverse of `to_dict`; also reads the older task-state keys ``image_size`` and ``channels``
        (a dict without ``interpolation`` was written when bilinear was the only filter)."""
        try:
            size = d["size"] if "size" in d else d["image_size"]
            channels = d["in_channels"] if "in_channels" in d else d["channels"]
            rs = d.get("resize_size")
            return cls(size=size, in_channels=channels, mean=d["mean"], std=d["std"],
                       interpolation=d.get("interpolation", "bilinear"), resize_mode=d.get("resize_mode", "stretch"),
                       resize_size=rs if rs is None or isinstance(rs, int) else tuple(rs),
                       resize_8bit=bool(d.get("resize_8bit", False)))
        except KeyError as exc:
            raise ValueError(f"image input spec lacks {exc.args[0]!r}: {dict(d)!r}") from exc


class ImageTransform:
    """Callable: any image from `read_image` -> float32 (in_channels, H, W) for `spec`.

    A class rather than a closure so that tasks holding one can be pickled to data-loader workers.
    """

    def __init__(self, spec: ImageInputSpec):
        self.spec = spec

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        s = self.spec
        return preprocess_image(np.asarray(arr), s.size, s.in_channels, s.mean, s.std, interpolation=s.interpolation,
                                resize_mode=s.resize_mode, resize_size=s.resize_size, resize_8bit=s.resize_8bit)

    def __repr__(self) -> str:
        return f"ImageTransform({self.spec})"


def build_transform(spec: ImageInputSpec) -> ImageTransform:
    """The preprocessing a model declared: channels, intensities to [0, 1] (`to_unit_range`),
    resize with the spec's filter and rule, centre crop when the spec asks, (x - mean) / std. The
    one path from image to model input."""
    if not isinstance(spec, ImageInputSpec):
        raise TypeError(f"build_transform needs an ImageInputSpec, got {type(spec).__name__}")
    return ImageTransform(spec)
