"""Every case of the generated bad-input corpus (tests/bad_inputs.py) ends in a BadInputError
naming the file and the problem, or in an exact count of skipped records; none crashes, hangs
or loads silently. Issue 24 items 3-4."""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from bad_inputs import Case, build_corpus
from medmm.data.registry import ErrorPolicy, load_dataset
from medmm.errors import BadInputError


def _numbered(cases: list[Case]) -> dict[str, Case]:
    """Cases by a unique id: target-kind, numbered when a target has several of one kind."""
    ids = [c.id for c in cases]
    out: dict[str, Case] = {}
    for c in cases:
        key = c.id if ids.count(c.id) == 1 else f"{c.id}-{sum(k.startswith(c.id) for k in out)}"
        out[key] = c
    return out


# Built once per session at collection (a few seconds), so every case is its own test id.
_TMP = Path(tempfile.mkdtemp(prefix="medmm_bad_inputs_"))
atexit.register(shutil.rmtree, _TMP, True)
CORPUS = _numbered(build_corpus(_TMP, seed=0))


@contextmanager
def no_hang(seconds: int = 20):
    """Fail (not hang) when a case runs longer than `seconds`: every decoder has its own guard."""

    def on_alarm(signum, frame):
        raise AssertionError(f"case did not finish within {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _assert_names(exc: BadInputError, case: Case) -> None:
    assert (exc.path is not None and Path(exc.path).name == case.file) or case.file in str(exc), (case.id, str(exc))
    assert re.search(case.problem, str(exc)), (case.id, case.problem, str(exc))


def _load(case: Case, skip_bad: bool):
    """The loader (plus, for engine cases, the engine's load-time file check used by every run)."""
    loaded = load_dataset(case.dataset, case.root, case.split, skip_bad=skip_bad)
    if not case.engine:
        return loaded.samples, loaded.skipped
    from medmm.data.io.verify import verify_headers

    policy = ErrorPolicy(skip_bad=skip_bad)
    good = verify_headers(list(loaded.samples), policy)
    return good, [*loaded.skipped, *policy.skipped]


@pytest.mark.parametrize("case_id", list(CORPUS))
def test_bad_input_is_an_error_or_a_counted_skip(case_id):
    case = CORPUS[case_id]
    with no_hang():
        if case.read is not None:
            with pytest.raises(BadInputError) as info:
                case.read()
            _assert_names(info.value, case)
            return
        with pytest.raises(BadInputError) as info:
            _load(case, skip_bad=False)
        _assert_names(info.value, case)
        if case.whole_file:
            with pytest.raises(BadInputError) as again:
                _load(case, skip_bad=True)
            _assert_names(again.value, case)
            return
        good, skipped = _load(case, skip_bad=True)
    assert len(skipped) == case.n_skipped, (case.id, [str(e) for e in skipped])
    _assert_names(skipped[0], case)
    if case.n_good is not None:
        assert len(good) == case.n_good, (case.id, len(good))


def test_corpus_covers_every_loader_and_kind():
    corpus = CORPUS
    from medmm.data.registry import list_datasets

    targets = {c.target for c in corpus.values()}
    # medmm's own loaders (tests register toy datasets of their own); the PneumoniaMNIST copies
    # and slake_zh share their loader code with breastmnist and slake; medpix2_covid_cxr reads through
    # the medpix2 and covid_cxr loaders
    loaders = {i.name for i in list_datasets() if i.loader.__module__.startswith("medmm.data.datasets")} - {"pneumoniamnist", "pneumoniamnist_trainsubset", "pneumoniamnist_balanced", "slake_zh", "medpix2_covid_cxr"}
    assert loaders <= targets, f"loaders without a bad-input case: {sorted(loaders - targets)}"
    kinds = {c.kind.split("-bbox")[0] if c.kind.startswith("bad-bbox") else c.kind for c in corpus.values()}
    needed = {"bad-utf8", "nan-label", "float-label", "duplicate-id", "list-as-text", "number-as-text", "nul-byte",
              "extra-field", "empty-file", "bad", "truncated-mask", "nan-pixels", "symlink-loop", "text-as-image",
              "jp2-zero-box", "truncated-image", "three-bad-records"}  # fmt: skip
    assert needed <= kinds | {"bad"}, sorted(needed - kinds)


def test_corpus_is_seeded(tmp_path):
    a = build_corpus(tmp_path / "a", seed=3)
    b = build_corpus(tmp_path / "b", seed=3)
    for ca, cb in zip(a, b, strict=True):
        if ca.root is not None:
            fa = sorted(p.relative_to(ca.root) for p in ca.root.rglob("*") if p.is_file() and not p.is_symlink())
            fb = sorted(p.relative_to(cb.root) for p in cb.root.rglob("*") if p.is_file() and not p.is_symlink())
            assert fa == fb
