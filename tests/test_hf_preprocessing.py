"""Hugging Face image encoders: medmm's transform reproduces the model's own image processor.

For ViT, DINOv2, SigLIP, CLIP (vision tower and dual encoder) and ConvNeXt, a tiny randomly
initialised model is saved with its real processor class (`write_tiny`), loaded through medmm, and
`build_transform(encoder.input_spec)` is compared with transformers' processor on real images: the
bundled VQA-RAD sample (square and non-square JPEGs) and, where ../shared/data exists, a large
non-square chest X-ray and a greyscale MedPix PNG. The same at the public checkpoints' 224 px
processor settings (resize rules, bicubic, centre crops, ConvNeXt's crop_pct).

Tolerance: 1e-5. medmm resizes 8-bit images with PIL's 8-bit filter exactly as transformers' PIL
processors do, so the pixels agree exactly; what is left is float32 rounding of the rescale and
normalisation arithmetic (<= 1e-6 here). The reference is the PIL back end (`...ImageProcessorPil`,
what transformers uses without torchvision, and what its slow processors did before v5). Its
torchvision back end resizes float tensors with torch's filters instead and differs from both by a
few 8-bit grey levels (not installed here, so not measured).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from conftest import SHARED_DATA  # noqa: E402
from medmm.data.bundled import vqa_rad_sample_root  # noqa: E402
from medmm.data.io import read_image  # noqa: E402
from medmm.data.transforms import ImageInputSpec, build_transform  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.models.encoders import create_image_encoder  # noqa: E402
from medmm.models.encoders.hf_processor import spec_from_processor  # noqa: E402
from medmm.models.families import write_tiny  # noqa: E402

ATOL = 1e-5
BUNDLED = vqa_rad_sample_root() / "VQA_RAD Image Folder"
# 256 x 153, 256 x 256, 214 x 256 (portrait), 243 x 256, 256 x 252: both orientations and a square
SAMPLE = [BUNDLED / f for f in
          ("synpic100132.jpg", "synpic100176.jpg", "synpic17675.jpg", "synpic19232.jpg", "synpic21042.jpg")]
SHARED = [SHARED_DATA / "covid_cxr" / "segmentations_100" / "images" / "ARDSSevere.png",  # 790 x 631 RGB
          SHARED_DATA / "medpix2" / "MedPix-2-0" / "images" / "MPX1007_synpic46719.png"]  # 214 x 256 greyscale

IMAGE_FAMILIES = ["vit", "dinov2", "siglip_vision", "clip_vision", "convnext"]
DUAL_FAMILIES = ["clip", "siglip"]

# The processor settings of public checkpoints (their preprocessor_config.json fields that decide
# the pixels; written here, no file is downloaded), legacy int sizes included.
PUBLIC = {
    "vit": {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": 224, "resample": 2,
            "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "dinov2": {"image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 256},
               "resample": 3, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
               "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
               "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    "siglip_vision": {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                      "size": {"height": 224, "width": 224}, "resample": 3, "do_rescale": True,
                      "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                      "image_std": [0.5, 0.5, 0.5]},
    "clip_vision": {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": 224, "resample": 3,
                    "do_center_crop": True, "crop_size": 224, "do_normalize": True,
                    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]},
    "convnext": {"image_processor_type": "ConvNextImageProcessor", "do_resize": True, "size": 224, "crop_pct": 0.875,
                 "resample": 3, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                 "image_std": [0.229, 0.224, 0.225]},
}
# What medmm must read from each: (input size, resize rule, resize size, filter)
EXPECTED = {"vit": (224, "stretch", None, "bilinear"), "dinov2": (224, "shortest_edge", 256, "bicubic"),
            "siglip_vision": (224, "stretch", None, "bicubic"),
            "clip_vision": (224, "shortest_edge", 224, "bicubic"),
            "convnext": (224, "shortest_edge", 256, "bicubic")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {name: write_tiny(name, root / name) for name in IMAGE_FAMILIES + DUAL_FAMILIES}


def pil_processor(folder: Path):
    """transformers' PIL-backend processor of the folder's class (the v4 slow class where no Pil class exists)."""
    cls_name = json.loads((folder / "preprocessor_config.json").read_text())["image_processor_type"]
    cls = getattr(tf, f"{cls_name}Pil", None) or getattr(tf, cls_name)
    return cls.from_pretrained(folder)


def assert_matches_processor(spec: ImageInputSpec, folder: Path, paths: list[Path]) -> None:
    proc, transform = pil_processor(folder), build_transform(spec)
    for path in paths:
        with Image.open(path) as im:  # HF processors want RGB (ViT's does not convert greyscale itself)
            ref = proc(im.convert("RGB"), return_tensors="np")["pixel_values"][0]
        out = transform(read_image(path))
        assert out.shape == ref.shape, path.name
        np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL, err_msg=f"{folder.name} on {path.name}")


def encoder_spec(family: str, folder: Path) -> ImageInputSpec:
    if family in DUAL_FAMILIES:
        from medmm.models.encoders.hf_dual import HFClipDualEncoder

        return HFClipDualEncoder(str(folder)).input_spec
    return create_image_encoder(f"hf:{folder}").input_spec


@pytest.mark.parametrize("family", IMAGE_FAMILIES + DUAL_FAMILIES)
def test_tiny_family_transform_equals_its_processor_on_the_bundled_sample(tiny, family):
    assert_matches_processor(encoder_spec(family, tiny[family]), tiny[family], SAMPLE)


def _public_folder(tiny: dict[str, Path], family: str, tmp_path: Path) -> Path:
    """The tiny model with the public checkpoint's processor settings in its preprocessor_config.json."""
    folder = tmp_path / family
    shutil.copytree(tiny[family], folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PUBLIC[family]))
    return folder


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_public_checkpoint_processor_settings_are_reproduced(tiny, family, tmp_path):
    folder = _public_folder(tiny, family, tmp_path)
    spec = encoder_spec(family, folder)
    size, mode, resize_size, interpolation = EXPECTED[family]
    assert (spec.size, spec.resize_mode, spec.resize_size) == (size, mode, resize_size)
    assert spec.interpolation == interpolation and spec.resize_8bit
    assert spec.mean == tuple(PUBLIC[family]["image_mean"]) and spec.std == tuple(PUBLIC[family]["image_std"])
    assert_matches_processor(spec, folder, SAMPLE)


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_large_non_square_and_greyscale_images_from_shared_data(tiny, family, tmp_path):
    if not all(p.is_file() for p in SHARED):
        pytest.skip(f"needs {', '.join(str(p) for p in SHARED)} (../shared/data)")
    folder = _public_folder(tiny, family, tmp_path)
    assert_matches_processor(encoder_spec(family, folder), folder, SHARED)
    assert_matches_processor(encoder_spec(family, tiny[family]), tiny[family], SHARED)


def test_the_processor_path_differs_from_the_old_plain_resize(tiny, tmp_path):
    """The point of the change: CLIP's shortest-edge resize, crop and bicubic filter are not a bilinear
    stretch to 224 with the same statistics (what medmm fed CLIP before)."""
    spec = encoder_spec("clip_vision", _public_folder(tiny, "clip_vision", tmp_path))
    plain = ImageInputSpec(size=224, in_channels=3, mean=spec.mean, std=spec.std)
    arr = read_image(SAMPLE[0])  # 256 x 153: the crop drops the sides
    assert np.abs(build_transform(spec)(arr) - build_transform(plain)(arr)).max() > 0.5


def _cfg(**over):
    return {**PUBLIC["dinov2"], **over}


@pytest.mark.parametrize("over, message", [
    ({"resample": 1}, r"resample=1 \(lanczos\) is not reproduced"),
    ({"resample": 0}, r"resample=0 \(nearest\)"),
    ({"do_pad": True}, "do_pad=true"),
    ({"do_resize": False}, "do_resize=false"),
    ({"image_processor_type": "BeitImageProcessor"}, "BeitImageProcessor is not one medmm reproduces"),
    ({"size": {"longest_edge": 224}}, "must be {height, width}"),
    ({"do_center_crop": False}, "varying shape"),
    ({"size": {"height": 200, "width": 200}}, r"crop \(224, 224\) is larger than the resize box"),
    ({"size": {"shortest_edge": 200}}, r"does not fit an image whose shorter side is resized to 200"),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}}, "crop_pct is not reproduced"),
    ({"image_processor_type": "ConvNextImageProcessor", "do_center_crop": False, "size": {"height": 224, "width": 224}},
     "must be {shortest_edge}"),
])
def test_a_field_medmm_cannot_reproduce_is_a_clear_error(over, message):
    with pytest.raises(MedmmError, match=message) as info:
        spec_from_processor(_cfg(**over), 3, where="m/preprocessor_config.json")
    assert str(info.value).startswith("m/preprocessor_config.json: ")


def test_an_unsupported_processor_in_a_model_folder_fails_at_load(tiny, tmp_path):
    folder = tmp_path / "vit_lanczos"
    shutil.copytree(tiny["vit"], folder)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**cfg, "resample": 1}))
    with pytest.raises(MedmmError, match="resample=1"):
        create_image_encoder(f"hf:{folder}")
    # stating the statistics replaces the processor by a plain bilinear resize, as documented
    spec = create_image_encoder(f"hf:{folder}", image_mean=[0.5] * 3, image_std=[0.5] * 3).input_spec
    assert (spec.resize_mode, spec.interpolation, spec.resize_8bit) == ("stretch", "bilinear", False)


@pytest.mark.parametrize("over", [{"rescale_factor": 1 / 127.5, "image_mean": [1.0] * 3, "image_std": [1.0] * 3},
                                  {"do_normalize": False}, {"do_rescale": False}])
def test_rescale_and_normalise_flags_fold_into_the_statistics(tiny, tmp_path, over):
    folder = tmp_path / "vit_rescale"
    shutil.copytree(tiny["vit"], folder)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**cfg, **over}))
    spec = create_image_encoder(f"hf:{folder}").input_spec
    proc, transform = pil_processor(folder), build_transform(spec)
    with Image.open(SAMPLE[0]) as im:
        ref = proc(im.convert("RGB"), return_tensors="np")["pixel_values"][0]
    out = transform(read_image(SAMPLE[0]))
    scale = max(1.0, float(np.abs(ref).max()))  # do_rescale=false leaves 0..255 values
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL * scale)


def test_spec_round_trip_and_size_override_keep_the_crop_ratio(tiny, tmp_path):
    spec = encoder_spec("dinov2", _public_folder(tiny, "dinov2", tmp_path))
    assert ImageInputSpec.from_dict(spec.to_dict()) == spec
    small = spec.with_size(112)
    assert (small.size, small.resize_size, small.resize_mode) == (112, 128, "shortest_edge")
    out = build_transform(small)(read_image(SAMPLE[0]))
    assert out.shape == (3, 112, 112)
    enc = create_image_encoder(f"hf:{_public_folder(tiny, 'convnext', tmp_path / 'c')}", image_size=64)
    assert (enc.input_spec.size, enc.input_spec.resize_size) == (64, 73)  # 256 / 224 * 64, rounded
    stretch = replace(spec, resize_mode="stretch", resize_size=(256, 240)).with_size((112, 120))
    assert stretch.resize_size == (128, 129)


def test_plain_specs_keep_their_json_form_and_bytes():
    """medmm's own encoders declare plain specs: their dict (feature-cache keys, weights metadata,
    retrieval keys) has exactly the five fields it had, and their output is the float path."""
    spec = ImageInputSpec(size=(20, 24), in_channels=1, mean=(0.5,), std=(0.25,))
    assert list(spec.to_dict()) == ["size", "in_channels", "mean", "std", "interpolation"]
    from medmm.models.feature_cache import _spec_json

    assert _spec_json(spec) == {"size": [20, 24], "in_channels": 1, "mean": [0.5], "std": [0.25],
                                "interpolation": "bilinear"}
    arr = read_image(SAMPLE[0])
    eight = replace(spec, resize_8bit=True)
    assert not np.array_equal(build_transform(spec)(arr), build_transform(eight)(arr))  # the flag does something
    assert np.abs(build_transform(spec)(arr) - build_transform(eight)(arr)).max() < 4 / 255 / 0.25


def test_crop_spec_validation():
    with pytest.raises(ValueError, match="needs one int resize_size"):
        ImageInputSpec(size=32, in_channels=3, mean=(0.5,), std=(0.5,), resize_mode="shortest_edge")
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        ImageInputSpec(size=32, in_channels=3, mean=(0.5,), std=(0.5,), resize_mode="longest_edge", resize_size=40)
    spec = ImageInputSpec(size=(16, 24), in_channels=3, mean=(0.5,), std=(0.5,), resize_size=(20, 30))
    out = build_transform(spec)(np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3))
    assert out.shape == (3, 16, 24)
