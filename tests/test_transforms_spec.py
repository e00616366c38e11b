"""One preprocessing path: every image model declares an `ImageInputSpec`, and the transform built
from it (`build_transform`) gives the expected tensor on a real image of the bundled VQA-RAD sample.

The expected tensor is computed independently of medmm.data.transforms: PIL's own RGB -> L
conversion, uint8 / 255, torch's antialiased bilinear resize (which matches PIL's filter), then
(x - mean) / std.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.transforms import ImageInputSpec, build_transform, resize

torch = pytest.importorskip("torch")
F = torch.nn.functional

from medmm.models.encoders import create_image_encoder, list_image_encoders  # noqa: E402

REAL = vqa_rad_sample_root() / "VQA_RAD Image Folder" / "synpic100132.jpg"  # RGB JPEG, 256 x 153, max 255
# Small inputs keep the loop fast; ViTs are built for one size.
TINY = {"vit_small": {"image_size": 32}, "vit_base": {"image_size": 32}, "small_cnn": {"image_size": 32}}
HEAVY = {"resnet34", "resnet50", "densenet121", "vit_base"}


def _real_rgb() -> np.ndarray:
    from medmm.data.io import read_image

    arr = read_image(REAL)
    assert arr.dtype == np.uint8 and arr.shape == (153, 256, 3)
    return arr


def expected_tensor(path, spec: ImageInputSpec) -> np.ndarray:
    """Reference preprocessing without medmm's transforms (see the module docstring)."""
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L" if spec.in_channels == 1 else "RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1)).permute(2, 0, 1)[None]
    side = (spec.size, spec.size) if isinstance(spec.size, int) else spec.size
    x = F.interpolate(x, size=side, mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return ((x - mean) / std).numpy()


ENCODER_CASES = [
    pytest.param(name, ch, marks=[pytest.mark.slow] if name in HEAVY and ch == 1 else [])
    for name in list_image_encoders()
    for ch in (3, 1)
]


@pytest.mark.parametrize("name,in_channels", ENCODER_CASES)
def test_every_registered_image_encoder_declares_a_spec_its_transform_feeds(name, in_channels):
    torch.manual_seed(0)
    enc = create_image_encoder(name, in_channels=in_channels, **TINY.get(name, {})).eval()
    spec = enc.input_spec
    assert isinstance(spec, ImageInputSpec)
    assert spec.in_channels == in_channels and len(spec.mean) in (1, in_channels) and len(spec.std) in (1, in_channels)
    x = build_transform(spec)(_real_rgb())
    assert x.dtype == np.float32 and x.shape == (in_channels, spec.size, spec.size)
    # one grey level of PIL's integer luma rounding is the most the two may differ by
    np.testing.assert_allclose(x, expected_tensor(REAL, spec), rtol=0, atol=1.0 / 255 / min(spec.std) + 1e-5)
    assert np.mean(np.abs(x - expected_tensor(REAL, spec))) < 1e-4
    with torch.no_grad():
        feats = enc(torch.from_numpy(x)[None])  # the declared size and channels are what the model takes
    assert torch.isfinite(feats.pooled).all()


def test_declared_statistics_of_the_scratch_cnns():
    """Grey inputs: (0.5, 0.25); RGB: ImageNet's channel statistics, stated by the encoder."""
    grey = create_image_encoder("small_cnn", in_channels=1, image_size=32).input_spec
    rgb = create_image_encoder("small_cnn", in_channels=3, image_size=32).input_spec
    assert (grey.mean, grey.std) == ((0.5,), (0.25,))
    assert (rgb.mean, rgb.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = build_transform(grey)(np.full((40, 40), 255, np.uint8))
    assert np.allclose(x, (1.0 - 0.5) / 0.25)  # uint8 is divided by 255


def test_hf_encoder_spec_comes_from_its_processor_config(tmp_path):
    import json

    from medmm.models.families import write_tiny

    folder = write_tiny("vit", tmp_path / "vit")
    proc = json.loads((folder / "preprocessor_config.json").read_text())
    enc = create_image_encoder(f"hf:{folder}").eval()
    spec = enc.input_spec
    assert spec.mean == tuple(proc["image_mean"]) and spec.std == tuple(proc["image_std"]) and spec.in_channels == 3
    x = build_transform(spec)(_real_rgb())
    # the processor's own output (its 8-bit PIL resize; tests/test_hf_preprocessing.py covers every family)
    import transformers

    pil_cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor  # v5 / v4
    with Image.open(REAL) as im:
        ref = pil_cls.from_pretrained(folder)(im.convert("RGB"), return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert torch.isfinite(enc(torch.from_numpy(x)[None]).pooled).all()


def test_the_unet_declares_its_input_and_the_segmentation_task_uses_it():
    from medmm.data.schema import ImageRef, Sample
    from medmm.tasks.segmentation.task import Segmentation

    task = Segmentation.from_config({"conditioning": "none", "text": {"encoder": None}, "unet": {"channels": [4, 8]},
                                     "image": {"in_channels": 1, "size": 32, "mean": [0.4], "std": [0.3]},
                                     "classes": {"organ": ["organ"]}})
    spec = task.model.unet.input_spec
    assert spec == ImageInputSpec(size=32, in_channels=1, mean=(0.4,), std=(0.3,))
    assert task.state()["input"] == spec.to_dict()
    img, shape = task._image(Sample(id="s", dataset="t", split="test", images=[ImageRef(path=str(REAL))]), cache=False)
    assert shape == (153, 256)
    np.testing.assert_array_equal(img, build_transform(spec)(_real_rgb()))
    np.testing.assert_allclose(img, expected_tensor(REAL, spec), rtol=0, atol=1.0 / 255 / 0.3 + 1e-5)


def test_spec_states_its_statistics_and_checks_them():
    with pytest.raises(TypeError):
        ImageInputSpec(size=32, in_channels=3)  # no default statistics: never ImageNet's by accident
    with pytest.raises(ValueError, match="mean has 2 values"):
        ImageInputSpec(size=32, in_channels=3, mean=(0.5, 0.5), std=(0.2,))
    with pytest.raises(ValueError, match="std must be positive"):
        ImageInputSpec(size=32, in_channels=1, mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="in_channels"):
        ImageInputSpec(size=32, in_channels=2, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="interpolation"):
        ImageInputSpec(size=32, in_channels=1, mean=(0.5,), std=(0.2,), interpolation="lanczos")
    with pytest.raises(TypeError, match="ImageInputSpec"):
        build_transform({"size": 32})


def test_spec_dict_round_trip_size_override_and_older_state_keys():
    spec = ImageInputSpec(size=(24, 32), in_channels=3, mean=[0.1, 0.2, 0.3], std=np.array([0.4, 0.5, 0.6]))
    assert spec.mean == (0.1, 0.2, 0.3) and isinstance(spec.std[0], float)
    assert ImageInputSpec.from_dict(spec.to_dict()) == spec
    assert spec.with_size(None) is spec and spec.with_size(16).size == 16
    old = {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.25]}  # report/VQA task-state keys
    assert ImageInputSpec.from_dict(old) == ImageInputSpec(size=16, in_channels=1, mean=(0.5,), std=(0.25,))
    with pytest.raises(ValueError, match="lacks 'std'"):
        ImageInputSpec.from_dict({"size": 16, "in_channels": 1, "mean": [0.5]})


def test_bicubic_is_pil_bicubic_and_differs_from_bilinear():
    arr = _real_rgb()
    bicubic = ImageInputSpec(size=40, in_channels=1, mean=(0.0,), std=(1.0,), interpolation="bicubic")
    x = build_transform(bicubic)(arr)[0]
    with Image.open(REAL) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    ref = np.asarray(Image.fromarray(grey, mode="F").resize((40, 40), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)
    assert np.abs(x - resize(grey, 40)).max() > 1e-3


def test_transform_pickles_for_loader_workers():
    import pickle

    t = build_transform(ImageInputSpec(size=16, in_channels=1, mean=(0.5,), std=(0.25,)))
    again = pickle.loads(pickle.dumps(t))
    arr = _real_rgb()
    np.testing.assert_array_equal(again(arr), t(arr))
