"""Options the reproduction recipes need: the ResNet "small" stem, the epoch-stepped LR schedules,
LViT's MoNuSeg augmentation and loss; and a 2-step run of each reproduction config on real data."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from medmm.engine.config import ConfigError, TrainerConfig  # noqa: E402
from medmm.engine.optim import epoch_scheduler  # noqa: E402
from medmm.errors import MedmmError  # noqa: E402
from medmm.models.encoders import create_image_encoder  # noqa: E402
from medmm.models.segmentation_ops import lvit_dice_bce_loss, lvit_rotate_flip  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- ResNet stem
def test_small_stem_keeps_28px_resolution_and_module_names():
    x = torch.randn(2, 1, 28, 28)
    small = create_image_encoder("resnet18", in_channels=1, image_size=28, stem="small").eval()
    imagenet = create_image_encoder("resnet18", in_channels=1, image_size=28).eval()
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small.stem)
    # layer1 sees the full 28 px (MedMNIST v2's ResNet), not 7 px (ImageNet stem + max-pool)
    assert small(x).maps[0].shape[-2:] == (28, 28)
    assert imagenet(x).maps[0].shape[-2:] == (7, 7)
    assert small(x).pooled.shape == (2, 512)
    assert set(small.state_dict()) == set(imagenet.state_dict())  # same names, other kernel shapes


def test_unknown_stem_is_an_error():
    with pytest.raises(MedmmError, match="stem"):
        create_image_encoder("resnet18", stem="cifar")


def test_diagnosis_small_stem_needs_a_resnet():
    from medmm.tasks.diagnosis.task import DiagnosisTask

    cfg = DiagnosisTask.from_config({"image": {"encoder": "small_cnn", "stem": "small"}, "text": {"encoder": None},
                                     "fusion": "image_only"}).config
    with pytest.raises(MedmmError, match="ResNet"):
        task = DiagnosisTask(cfg)
        task.classes, task.class_counts = ["a", "b"], [1, 1]
        task._build()


# ----------------------------------------------------------------------------- schedules
def _lrs(cfg: TrainerConfig, epochs: int) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = epoch_scheduler(opt, cfg)
    assert sched is not None and sched["interval"] == "epoch"
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    return out


def test_multistep_decays_at_the_milestone_epochs():
    cfg = TrainerConfig(lr=1e-3, max_epochs=100, scheduler="multistep", lr_milestones=[50, 75], lr_gamma=0.1)
    lrs = _lrs(cfg, 100)
    assert lrs[0] == lrs[49] == pytest.approx(1e-3)
    assert lrs[50] == lrs[74] == pytest.approx(1e-4)
    assert lrs[75] == lrs[99] == pytest.approx(1e-5)


def test_cosine_restarts_as_lvit():
    cfg = TrainerConfig(lr=1e-3, max_epochs=30, scheduler="cosine_restarts", lr_restart_epochs=10, min_lr=1e-4)
    lrs = _lrs(cfg, 21)
    assert lrs[0] == lrs[10] == lrs[20] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    assert lrs[9] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * 0.9)))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"scheduler": "multistep", "lr_milestones": []}, "lr_milestones"),
        ({"scheduler": "multistep", "lr_milestones": [75, 50]}, "lr_milestones"),
        ({"scheduler": "multistep", "lr_milestones": [50, 100]}, "lr_milestones"),  # never reached
        ({"scheduler": "multistep", "lr_milestones": [50], "lr_gamma": 0.0}, "lr_gamma"),
        ({"scheduler": "multistep", "lr_milestones": [50], "warmup_steps": 5}, "warmup_steps"),
        ({"scheduler": "cosine", "lr_milestones": [50]}, "lr_milestones"),  # would be ignored silently
        ({"scheduler": "cosine_restarts", "min_lr": 1e-2}, "min_lr"),
        ({"scheduler": "cosine_restarts", "lr_restart_epochs": 0}, "lr_restart_epochs"),
    ],
)
def test_schedule_misconfigurations_are_errors(changes, key):
    cfg = TrainerConfig(lr=1e-3, max_epochs=100, **changes)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ConfigError, match=key):
        epoch_scheduler(opt, cfg)


def test_step_schedules_are_not_epoch_schedules():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    assert epoch_scheduler(opt, TrainerConfig(scheduler="cosine")) is None


# ----------------------------------------------------------------------------- LViT operations
def test_lvit_augmentation_moves_image_and_mask_together():
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(64, 1, 16, 16, generator=g) > 0.5).float()
    masks[:, :, :4, :4] = 1.0  # asymmetric content, so rotations and flips are visible
    images = masks.repeat(1, 3, 1, 1) * 2.0 - 1.0  # foreground +1, background -1
    out_i, out_m = lvit_rotate_flip(images, masks, g, fill=-5.0)
    assert out_i.shape == images.shape and out_m.shape == masks.shape
    assert set(out_m.unique().tolist()) <= {0.0, 1.0}
    filled = out_i[:, 0] == -5.0  # corners uncovered by a free rotation
    assert torch.equal(out_i[:, 0][~filled], (out_m[:, 0] * 2 - 1)[~filled])
    assert torch.all(out_m[:, 0][filled] == 0)
    unchanged = [bool(torch.equal(a, b)) for a, b in zip(out_m, masks, strict=True)]
    rotated = [bool(f.any()) for f in filled]
    # 1/2 rot90+flip, 1/4 free rotation (uncovered corners), 1/4 unchanged; 64 draws
    assert 4 <= sum(rotated) <= 28 and 4 <= sum(unchanged) <= 28
    assert not torch.equal(out_m, masks)


def test_lvit_augmentation_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        lvit_rotate_flip(torch.zeros(1, 3, 8, 6), torch.zeros(1, 1, 8, 6))


def test_lvit_loss_matches_their_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 8, 8, generator=g)
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    p = logits.sigmoid()
    # LViT utils.py: WeightedDiceLoss(weights=[0.5, 0.5]) and WeightedBCE(weights=[0.5, 0.5]), 0.5 each
    pw, tw = 0.5 * p.flatten(1), 0.5 * target.flatten(1)
    dice = (1 - (2 * (pw * tw).sum(-1) + 1e-5) / ((pw * pw).sum(-1) + (tw * tw).sum(-1) + 1e-5)).mean()
    bce = torch.nn.functional.binary_cross_entropy(p, target, reduction="none")
    pos, neg = target, 1 - target
    wbce = (0.5 * pos * bce / pos.sum() + 0.5 * neg * bce / neg.sum()).sum()
    assert float(lvit_dice_bce_loss(logits, target)) == pytest.approx(float(0.5 * dice + 0.5 * wbce), rel=1e-5)
    perfect = (target * 2 - 1) * 30
    assert float(lvit_dice_bce_loss(perfect, target)) < 1e-3
