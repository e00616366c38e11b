"""Every shipped configs/**/*.yaml loads, validates against its task's Config, and says how to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmm.engine.config import ConfigError, load_config, read_yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def check_config(path: Path, repo: Path = REPO) -> None:
    """Raise AssertionError/ConfigError when a shipped config breaks the configs/README.md rules."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2, f"{path}: must start with comment lines: the command, then expected time/result"
    assert "medmm " in header[0] or "python " in header[0], f"{path}: first line must be the command that runs it"
    rel = path.relative_to(repo)
    assert str(rel) in header[0], f"{path}: the command in the first line must name the file ({rel})"
    root = str((read_yaml(path).get("data") or {}).get("root", ""))
    assert not Path(root).is_absolute(), f"{path}: data.root must be relative (../shared/data/...), got {root}"
    cfg = load_config(path, validate_model=True)  # raises ConfigError naming key and file
    assert path.parent.name.startswith(cfg.task) or cfg.task.startswith(path.parent.name), (
        f"{path}: lives in configs/{path.parent.name}/ but runs task {cfg.task!r}"
    )
    from medmm.data.registry import dataset_info

    info = dataset_info(cfg.data.dataset)  # the dataset must be registered
    if cfg.data.split == "official":
        for s in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split):
            assert s is None or s in info.splits, f"{path}: dataset {info.name} has no split {s!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_uses_no_oracle_input(path: Path, monkeypatch):
    """No shipped config feeds the model an annotation a deployed model would not have (e.g. VQA
    routing by answer_type): Task.oracle_inputs of its model section is empty."""
    from medmm.engine.config import build_dataclass
    from medmm.engine.task import get_task_class

    monkeypatch.chdir(REPO)
    cfg = load_config(path, validate_model=True)
    cls = get_task_class(cfg.task)
    assert cls.oracle_inputs(build_dataclass(cls.Config, dict(cfg.model), path, prefix="model.")) == [], path


def test_oracle_input_check_can_fail():
    from medmm.engine.task import get_task_class

    vqa = get_task_class("vqa")
    assert vqa.oracle_inputs(vqa.Config(routing="annotation"))
    assert vqa.oracle_inputs(vqa.Config()) == []


def test_configs_folder_documented():
    assert (REPO / "configs" / "README.md").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_is_valid(path: Path, monkeypatch):
    monkeypatch.chdir(REPO)  # shipped configs use ../shared/data/... relative to the repo root
    check_config(path)


def test_checker_rejects_bad_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "configs" / "retrieval"
    d.mkdir(parents=True)
    p = d / "x.yaml"
    p.write_text("task: retrieval\ndata: {dataset: vqa_rad, root: ../shared/data/vqa_rad}\n")
    with pytest.raises(AssertionError, match="comment lines"):
        check_config(p, tmp_path)
    p.write_text("# medmm train configs/retrieval/x.yaml --out runs/x\n# 1 min\ntask: retrieval\n"
                 "data: {dataset: vqa_rad, root: ../shared/data/vqa_rad}\ntrainer: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="trainer.epochs"):
        check_config(p, tmp_path)
