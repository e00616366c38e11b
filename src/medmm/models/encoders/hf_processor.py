"""A Hugging Face image processor's preprocessing as medmm's `ImageInputSpec`.

medmm never calls the processor at run time (its transform is numpy + PIL, picklable to loader
workers, and shared with the report store and retrieval keys); instead it reads what the
processor declares and reproduces it: resize rule (``size``: height/width or shortest_edge),
filter (``resample``), centre crop (``crop_size``; ConvNeXt's ``crop_pct``), rescale and
normalisation. For 8-bit images (JPEG, PNG) the result equals transformers' PIL-backend
processors to float32 rounding (tests/test_hf_preprocessing.py); opaque ones, that is: medmm
drops an alpha channel where transformers composites it onto white. A field value medmm cannot
reproduce is an error naming the field, never a silent approximation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medmm.data.transforms import ImageInputSpec
from medmm.errors import MedmmError

# Processor classes whose preprocessing is the standard pipeline (resize, optional centre crop,
# rescale, normalise) or, for ConvNeXt, that pipeline with its crop_pct rule. DINOv2 / RAD-DINO
# ship BitImageProcessor; Swin ships ViTImageProcessor.
SUPPORTED = ("BitImageProcessor", "CLIPImageProcessor", "ConvNextImageProcessor", "DeiTImageProcessor",
             "SiglipImageProcessor", "ViTImageProcessor")
# PIL's resampling codes as transformers stores them ("resample": 3).
_RESAMPLE = {2: "bilinear", 3: "bicubic"}
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 4: "box", 5: "hamming"}
_CONVNEXT_WARP_FROM = 384  # ConvNeXt resizes to a square without cropping from this size up


def _class_name(cfg: Mapping[str, Any]) -> str:
    name = str(cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or "")
    for suffix in ("Fast", "Pil"):  # the torchvision and PIL back ends of one processor
        name = name.removesuffix(suffix)
    return name.replace("FeatureExtractor", "ImageProcessor")


def _box(value: Any, field: str, where: str) -> dict[str, int]:
    """A size dict's set keys (transformers 5 gives all keys, most None)."""
    if not isinstance(value, Mapping):
        raise MedmmError(f"{where}: {field}={value!r} is not a size dict; medmm reads {field} as "
                         "{height, width} or {shortest_edge} (load the config through transformers first)")
    return {k: int(v) for k, v in value.items() if v is not None}


def _hw(box: dict[str, int], field: str, where: str) -> tuple[int, int]:
    if set(box) != {"height", "width"}:
        raise MedmmError(f"{where}: {field}={box} must be {{height, width}}")
    return box["height"], box["width"]


def _side(hw: tuple[int, int]) -> int | tuple[int, int]:
    return hw[0] if hw[0] == hw[1] else hw


def _statistics(cfg: Mapping[str, Any], where: str) -> tuple[list[float], list[float]]:
    """mean/std on medmm's [0, 1] scale: the processor's rescale folded in (exact for 8-bit images).

    The processor computes (x * rescale_factor - mean) / std on 0..255 values; medmm scales to
    x / 255 first, and (x * r - m) / s == (x / 255 - m / (255 r)) / (s / (255 r)).
    """
    if cfg.get("do_normalize", True):
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        if mean is None or std is None:
            raise MedmmError(f"{where}: do_normalize is set but image_mean / image_std are missing")
        mean = [float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean])]
        std = [float(v) for v in (std if isinstance(std, (list, tuple)) else [std])]
    else:
        mean, std = [0.0], [1.0]
    factor = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if factor <= 0:
        raise MedmmError(f"{where}: rescale_factor={factor} must be positive")
    k = 255.0 * factor
    if abs(k - 1.0) < 1e-9:  # the usual 1/255: keep the numbers exactly as written
        return mean, std
    return [m / k for m in mean], [s / k for s in std]


def spec_from_processor(cfg: Mapping[str, Any], in_channels: int, where: str = "image processor") -> ImageInputSpec:
    """The `ImageInputSpec` reproducing an image processor, from its `to_dict()` (or a
    preprocessor_config.json already normalised by transformers). `where` names it in errors."""
    name = _class_name(cfg)
    if name not in SUPPORTED:
        raise MedmmError(f"{where}: image processor {name or '(unnamed)'} is not one medmm reproduces "
                         f"(known: {', '.join(SUPPORTED)}); pass image_mean, image_std and image_size in the "
                         "encoder kwargs to state a plain resize instead")
    if cfg.get("do_resize", True) is False:
        raise MedmmError(f"{where}: do_resize=false (images at their own size); medmm feeds a fixed input size: "
                         "pass image_size, image_mean and image_std in the encoder kwargs")
    if cfg.get("do_pad"):
        raise MedmmError(f"{where}: do_pad=true is not reproduced by medmm's transform")
    code = int(cfg.get("resample", 2))
    if code not in _RESAMPLE:
        raise MedmmError(f"{where}: resample={code} ({_RESAMPLE_NAMES.get(code, 'unknown')}) is not reproduced; "
                         f"medmm resizes with {', '.join(f'{k} ({v})' for k, v in _RESAMPLE.items())}")
    size = _box(cfg.get("size"), "size", where)
    crop = _box(cfg.get("crop_size"), "crop_size", where) if cfg.get("do_center_crop") else None
    if name == "ConvNextImageProcessor":
        geometry = _convnext(size, crop, cfg, where)
    elif set(size) == {"shortest_edge"}:
        if crop is None:  # the model would get images of varying shape
            raise MedmmError(f"{where}: size={size} without a centre crop gives images of varying shape; "
                             "medmm needs a fixed input size")
        geometry = {"size": _side(_hw(crop, "crop_size", where)), "resize_mode": "shortest_edge",
                    "resize_size": size["shortest_edge"]}
    else:
        hw = _hw(size, "size", where)
        if crop is None:
            geometry = {"size": _side(hw)}
        else:
            geometry = {"size": _side(_hw(crop, "crop_size", where)), "resize_size": _side(hw)}
    mean, std = _statistics(cfg, where)
    try:
        return ImageInputSpec(in_channels=in_channels, mean=mean, std=std, interpolation=_RESAMPLE[code],
                              resize_8bit=True, **geometry)
    except ValueError as exc:  # e.g. a crop larger than the resized image (transformers pads with zeros)
        raise MedmmError(f"{where}: {exc}") from exc


def _convnext(size: dict[str, int], crop: dict[str, int] | None, cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """ConvNeXt: below 384 px, shortest edge to int(edge / crop_pct) then the centred edge x edge
    window; from 384 up, a square resize without cropping."""
    if set(size) != {"shortest_edge"}:
        raise MedmmError(f"{where}: ConvNeXt's size={size} must be {{shortest_edge}}")
    if crop is not None:
        raise MedmmError(f"{where}: do_center_crop=true on top of ConvNeXt's crop_pct is not reproduced")
    edge = size["shortest_edge"]
    if edge >= _CONVNEXT_WARP_FROM:
        return {"size": edge}
    pct = float(cfg.get("crop_pct") or 224 / 256)
    return {"size": edge, "resize_mode": "shortest_edge", "resize_size": int(edge / pct)}
