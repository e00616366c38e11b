"""medmm.fileio: the one atomic-write implementation (files and folders) every layer uses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from medmm import fileio
from medmm.engine import rundir as rd


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or ".old-" in p.name)


def test_writes_land_whole_and_leave_no_temporary_file(tmp_path):
    fileio.write_text(tmp_path / "a" / "t.txt", "héllo\n")
    fileio.write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01", fsync=True)
    with fileio.atomic_open(tmp_path / "a" / "c.csv", "w", newline="", encoding="utf-8") as f:
        f.write("x,y\r\n")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a" / "c.csv").read_bytes() == b"x,y\r\n"
    assert _leftovers(tmp_path / "a") == []


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer died"), fileio.atomic_open(target, "w") as f:
        f.write("half of the new")
        assert fileio.temp_path(target).is_file() and target.read_text() == "old"
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_temporary_names_follow_the_run_dir_convention(tmp_path):
    assert fileio.temp_path(tmp_path / "last.ckpt").name == ".last.ckpt.tmp"
    assert fileio.temp_path(tmp_path / "x.so", unique=True).name == f".x.so.tmp-{os.getpid()}"
    assert rd.temp_path is fileio.temp_path
    # what a killed write leaves is what the run dir's clean-up removes
    for unique in (False, True):
        fileio.temp_path(tmp_path / "metrics.json", unique=unique).write_text("{")
    assert {p.name for p in rd.remove_temp_files(tmp_path)} == {".metrics.json.tmp", f".metrics.json.tmp-{os.getpid()}"}


def test_a_killed_writer_leaves_the_target_as_it_was(tmp_path):
    """A real kill (no cleanup code runs): the target keeps its old bytes, the temporary file
    stays for the next write of the same target to overwrite."""
    target = tmp_path / "model.pt"
    target.write_bytes(b"old weights")
    code = ("import os, sys; from medmm import fileio\n"
            "with fileio.atomic_open(sys.argv[1], 'wb') as f:\n"
            "    f.write(b'half'); f.flush(); os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ}, check=False)
    assert proc.returncode == 9
    assert target.read_bytes() == b"old weights" and fileio.temp_path(target).read_bytes() == b"half"
    fileio.write_bytes(target, b"new weights")
    assert target.read_bytes() == b"new weights" and _leftovers(tmp_path) == []


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    out = tmp_path / "index"
    with fileio.atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with fileio.atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and not (out / "b").exists()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    with pytest.raises(ValueError, match="build failed"), fileio.atomic_dir(out) as tmp:
        (tmp / "c").write_text("3")
        raise ValueError("build failed")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert _leftovers(tmp_path) == []


def test_atomic_dir_keep_existing_keeps_the_folder_another_process_finished_first(tmp_path):
    out = tmp_path / "cache"
    with fileio.atomic_dir(out, keep_existing=True) as tmp:
        (tmp / "v").write_text("first")
        with fileio.atomic_dir(out, keep_existing=True) as other:  # a parallel builder finishes first
            (other / "v").write_text("second")
    assert (out / "v").read_text() == "second" and _leftovers(tmp_path) == []


def test_atomic_open_refuses_modes_that_would_not_write_a_whole_file(tmp_path):
    with pytest.raises(ValueError, match="not a write mode"), fileio.atomic_open(tmp_path / "x", "a"):
        pass


def test_file_digests(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert fileio.sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fileio.file_digest(f, "sha1") == "a9993e364706816aba3e25717850c26c9cd0d89d"
