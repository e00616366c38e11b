"""Optimizer parameter groups: weight decay by shape, learning-rate factors by name prefix."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from medmm.engine.config import ConfigError  # noqa: E402
from medmm.engine.optim import parameter_groups  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
        self.encoder_head = torch.nn.Linear(4, 4)  # shares the "encoder" text, not the module
        self.head = torch.nn.Linear(4, 2)


def _lr_of(groups: list[dict]) -> dict[int, tuple[float, float]]:
    """id(param) -> (lr, weight_decay) of the group holding it."""
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


def test_without_factors_two_groups_decay_only_matrices():
    net = Net()
    groups = parameter_groups(net.named_parameters(), lr=1e-3, weight_decay=0.05)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [(1e-3, 0.05, 3), (1e-3, 0.0, 5)]


def test_factor_applies_to_the_module_and_not_to_a_name_sharing_its_text():
    net = Net()
    groups = parameter_groups(net.named_parameters(), lr=1e-3, weight_decay=0.05, lr_multipliers={"encoder": 0.1})
    lr = _lr_of(groups)
    assert lr[id(net.encoder[0].weight)] == pytest.approx((1e-4, 0.05))
    assert lr[id(net.encoder[1].weight)] == pytest.approx((1e-4, 0.0))  # a norm scale: no decay
    assert lr[id(net.encoder_head.weight)] == pytest.approx((1e-3, 0.05))
    assert lr[id(net.head.bias)] == pytest.approx((1e-3, 0.0))
    assert groups[0]["lr_scale"] == 1.0  # the engine logs group 0's unscaled rate
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_longest_prefix_wins_and_frozen_parameters_are_left_out():
    net = Net()
    net.head.requires_grad_(False)
    groups = parameter_groups(
        net.named_parameters(), lr=1.0, weight_decay=0.0, lr_multipliers={"encoder": 0.1, "encoder.1": 0.5}
    )
    lr = _lr_of(groups)
    assert lr[id(net.encoder[0].bias)][0] == pytest.approx(0.1)
    assert lr[id(net.encoder[1].bias)][0] == pytest.approx(0.5)
    assert id(net.head.weight) not in lr


@pytest.mark.parametrize(
    ("factors", "message"),
    [({"encoderr": 0.1}, "'encoderr' match no trainable parameter"), ({"encoder": 0.0}, "must be > 0")],
)
def test_a_typo_or_a_non_positive_factor_is_a_config_error(factors, message):
    with pytest.raises(ConfigError, match=message):
        parameter_groups(Net().named_parameters(), lr=1.0, weight_decay=0.0, lr_multipliers=factors)


def test_a_factor_on_a_frozen_module_is_an_error():
    net = Net()
    net.encoder.requires_grad_(False)
    with pytest.raises(ConfigError, match="a frozen module has none"):
        parameter_groups(net.named_parameters(), lr=1.0, weight_decay=0.0, lr_multipliers={"encoder": 0.1})


def test_a_run_trains_with_a_scaled_learning_rate_and_logs_the_unscaled_one(tmp_path):
    pytest.importorskip("lightning")
    import csv

    from engine_toy import TOY_CONFIG, make_toy_root
    from medmm.engine import load_config
    from medmm.engine.api import train

    root = make_toy_root(tmp_path / "data", {"train": 16, "val": 8, "test": 8})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(TOY_CONFIG.format(root=root))
    overrides = ["trainer.max_epochs=1", "trainer.scheduler=constant", "trainer.warmup_steps=0", "trainer.lr=0.01"]
    cfg = load_config(cfg_path, [*overrides, "trainer.lr_multipliers={net.0: 0.25}"])
    assert cfg.trainer.lr_multipliers == {"net.0": 0.25}
    train(cfg, tmp_path / "run")
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    lrs = sorted({(g["lr"], g["lr_scale"]) for g in ckpt["optimizer_states"][0]["param_groups"]})
    assert lrs == [(pytest.approx(0.0025), 0.25), (pytest.approx(0.01), 1.0)]
    with open(tmp_path / "run/logs/metrics.csv") as f:
        logged = [float(row["lr"]) for row in csv.DictReader(f) if row.get("lr")]
    assert logged and logged == pytest.approx([0.01] * len(logged), rel=1e-6)
