"""Convolutional image encoders: a small fast CNN, MONAI ResNet-18/34/50 and DenseNet-121.

All expose their stages as `maps` (shallow -> deep) so U-Net decoders and Grad-CAM can use them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.encoders.base import ImageEncoder, ImageFeatures, ImageInputSpec, match_channels
from medmm.models.encoders.factory import register_image_encoder

# The statistics these from-scratch CNNs are trained with: grey (0.5, 0.25); RGB the ImageNet
# channel statistics (stated here, not inherited from a default).
GREY_MEAN, GREY_STD = (0.5,), (0.25,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _spec(size: int, in_channels: int) -> ImageInputSpec:
    if in_channels == 1:
        return ImageInputSpec(size=size, in_channels=1, mean=GREY_MEAN, std=GREY_STD)
    return ImageInputSpec(size=size, in_channels=in_channels, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _features(maps: list[torch.Tensor]) -> ImageFeatures:
    deep = maps[-1]
    return ImageFeatures(pooled=deep.mean(dim=(2, 3)), tokens=deep.flatten(2).transpose(1, 2), maps=maps)


class SmallCNN(ImageEncoder):
    """Four conv-BN-ReLU stages (stride 2 each); fast enough for tests and demos at 64-128 px."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256), image_size: int = 128):
        super().__init__()
        self.in_channels = in_channels
        stages, c = [], in_channels
        for w in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                )
            )
            c = w
        self.stages = nn.ModuleList(stages)
        self.out_dim = widths[-1]
        self.input_spec = _spec(image_size, in_channels)

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        x = match_channels(images, self.in_channels)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return _features(maps)


RESNET_STEMS = ("imagenet", "small")


class MonaiResNet(ImageEncoder):
    """MONAI's 2-D ResNet run stage by stage.

    stem: "imagenet" (7x7 stride-2 conv + max-pool: 224 px -> 56 px into layer1) or "small" (one
    3x3 stride-1 conv, no max-pool: a 28 px image keeps its 28 px into layer1, as the ResNets of
    CIFAR and of MedMNIST v2's code; ~16x the compute of "imagenet" at the same input size).
    """

    _DIMS: ClassVar[dict[str, int]] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}

    def __init__(self, depth: str = "resnet18", in_channels: int = 3, image_size: int = 224, stem: str = "imagenet"):
        super().__init__()
        from monai.networks.nets import resnet

        if stem not in RESNET_STEMS:
            raise MedmmError(f"ResNet stem must be one of {', '.join(RESNET_STEMS)}, got {stem!r}")
        small = stem == "small"
        net = getattr(resnet, depth)(
            spatial_dims=2, n_input_channels=in_channels, conv1_t_size=3 if small else 7,
            conv1_t_stride=1 if small else 2, num_classes=1, feed_forward=False,
        )
        # Same module names either way (stem.0 conv, stem.1 BN), so weights files stay comparable.
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act) if small else nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool)
        self.stem_kind = stem
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.in_channels = in_channels
        self.out_dim = self._DIMS[depth]
        self.input_spec = _spec(image_size, in_channels)

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        x = self.stem(match_channels(images, self.in_channels))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return _features(maps)


class MonaiDenseNet121(ImageEncoder):
    """MONAI's 2-D DenseNet-121; maps are the outputs of the four dense blocks."""

    def __init__(self, in_channels: int = 3, image_size: int = 224):
        super().__init__()
        from monai.networks.nets import DenseNet121

        net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
        self.features = net.features
        self.in_channels = in_channels
        self.out_dim = 1024
        self.input_spec = _spec(image_size, in_channels)

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        x = match_channels(images, self.in_channels)
        maps = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name.startswith("denseblock") and name != "denseblock4":
                maps.append(x)
        # denseblock4 is followed by norm5; its normalised output is the deepest map.
        x = torch.relu(x)
        maps.append(x)
        return _features(maps)


@register_image_encoder("small_cnn")
def small_cnn(in_channels: int = 3, **kw) -> ImageEncoder:
    """Small 4-stage CNN (256-d), ~1.2 M parameters."""
    return SmallCNN(in_channels=in_channels, **kw)


@register_image_encoder("resnet18")
def resnet18(in_channels: int = 3, **kw) -> ImageEncoder:
    """MONAI ResNet-18 (512-d); stem="imagenet" (default) or "small" (3x3, no max-pool)."""
    return MonaiResNet("resnet18", in_channels=in_channels, **kw)


@register_image_encoder("resnet34")
def resnet34(in_channels: int = 3, **kw) -> ImageEncoder:
    """MONAI ResNet-34 (512-d); stem="imagenet" (default) or "small" (3x3, no max-pool)."""
    return MonaiResNet("resnet34", in_channels=in_channels, **kw)


@register_image_encoder("resnet50")
def resnet50(in_channels: int = 3, **kw) -> ImageEncoder:
    """MONAI ResNet-50 (2048-d); stem="imagenet" (default) or "small" (3x3, no max-pool)."""
    return MonaiResNet("resnet50", in_channels=in_channels, **kw)


@register_image_encoder("densenet121")
def densenet121(in_channels: int = 3, **kw) -> ImageEncoder:
    """MONAI DenseNet-121 (1024-d)."""
    return MonaiDenseNet121(in_channels=in_channels, **kw)
