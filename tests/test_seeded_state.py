"""Same seed, same result: state that used to differ between processes or ignore the run seed
(issue 24 item 2): the scratch WordPiece vocabulary and the tasks' own augmentation generators."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from medmm.models.encoders.scratch_text import train_wordpiece, wordpiece_vocab  # noqa: E402

VOCAB_SCRIPT = """
import json
from medmm.data.bundled import vqa_rad_sample_root
from medmm.data.registry import load_dataset
from medmm.models.encoders.scratch_text import train_wordpiece
ss = load_dataset("vqa_rad", vqa_rad_sample_root(), "train")
tok = train_wordpiece([s.text.get("question", "") for s in ss.samples], vocab_size=2000)
print(json.dumps(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])))
"""


@pytest.mark.slow  # two fresh interpreters: about 10 s idle, a minute under load
def test_scratch_vocabulary_is_identical_in_separate_processes():
    # tokenizers' own WordPieceTrainer numbered ~900 of these tokens differently per process.
    vocabs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", VOCAB_SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=True)
        vocabs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(vocabs[0]) > 1000
    assert vocabs[0] == vocabs[1]


def test_wordpiece_vocab_merges_frequent_pairs_and_breaks_ties_by_text():
    vocab = wordpiece_vocab({"ab": 3, "cd": 3, "abcd": 1}, vocab_size=100)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    merges = vocab[5 + 2 * 4:]
    assert merges[:2] == ["ab", "cd"]  # 4 vs 4 occurrences: "a"+"##b" sorts before "c"+"##d"
    assert wordpiece_vocab({"ab": 3, "cd": 3, "abcd": 1}, vocab_size=100) == vocab
    tok = train_wordpiece(["Left lung opacity.", "left lung clear"], vocab_size=60)
    assert tok.encode("left lung").tokens == ["[CLS]", "left", "lung", "[SEP]"]
    assert tok.get_vocab_size() <= 60


def _segmentation():
    from medmm.tasks.segmentation.task import Segmentation

    return Segmentation.from_config({"conditioning": "none", "text": {"encoder": None},
                                     "unet": {"channels": [4, 8], "attention_levels": 0}, "image": {"size": 32}})


def test_segmentation_augmentation_follows_the_run_seed_and_resumes_its_stream():
    from medmm.engine.config import TrainerConfig
    from medmm.engine.module import TaskModule
    from medmm.engine.resume import seed_generators

    task = _segmentation()
    images, masks = torch.rand(8, 3, 32, 32), torch.rand(8, 1, 32, 32)

    def draws(t, n=12):  # each draw's corner pixels: they show which flips were drawn
        return [t._augment(images, masks)[0][:, 0, [0, -1], [0, -1]].tolist() for _ in range(n)]

    seed_generators(task, 0)
    seed0 = draws(task)
    seed_generators(task, 0)
    assert draws(task) == seed0
    seed_generators(task, 1)
    assert draws(task) != seed0  # seed sweeps get different augmentations

    # The stream's position travels in checkpoints: a resume continues it, never replays it.
    seed_generators(task, 0)
    draws(task, 5)
    module = TaskModule(task, TrainerConfig(), 0, [], [])
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    after = draws(task)
    fresh = _segmentation()
    seed_generators(fresh, 0)
    TaskModule(fresh, TrainerConfig(), 0, [], []).on_load_checkpoint(ckpt)
    assert draws(fresh) == after
    assert isinstance(ckpt["medmm_rng"]["task"]["augment"], torch.Tensor)
