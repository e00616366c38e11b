"""The run directory: everything needed to reproduce, reload and report a run.

    RUN_DIR/
      config.yaml            the resolved config (overrides applied, data.root absolute)
      environment.json       python/torch/lightning/medmm versions, git commit, seed, CPU
      task_state.json        task name, task.state() (labels, thresholds, tokenizer, ...),
                             weights file name + sha256, dataset licence
      model.pt               the best weights (task.state_dict())
      checkpoints/           best.ckpt, last.ckpt (Lightning; a rerun resumes from last.ckpt)
      metrics/<split>.json   {"metrics": ..., "provenance": {n samples, n skipped, seed, ...}}
      predictions/<split>.jsonl   one record per sample, with its id
      logs/                  CSV (and TensorBoard / MLflow when installed)
      report.html, plots/    made by `medmm.engine.report.write_report`
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medmm.fileio import TEMP_SUFFIX, atomic_open, write_text
from medmm.fileio import sha256_file as sha256_file  # re-exported: callers use rd.sha256_file, rd.temp_path
from medmm.fileio import temp_path as temp_path

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
TASK_STATE = "task_state.json"
WEIGHTS = "model.pt"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"


def remove_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of atomic writes killed half-way; returns them.

    Only medmm's own names are touched (`medmm.fileio.temp_path`): `.NAME.tmp` and `.NAME.tmp-PID`, in the run
    dir, checkpoints/, metrics/, predictions/ and logs/.
    """
    run_dir = Path(run_dir)
    gone = []
    for folder in (run_dir, run_dir / CHECKPOINTS, run_dir / "metrics", run_dir / "predictions", run_dir / "logs"):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            name = f.name
            stale = name.startswith(".") and (
                name.endswith(TEMP_SUFFIX) or name.rpartition(".tmp-")[2].isdigit()
            )
            if stale and f.is_file():
                f.unlink(missing_ok=True)
                gone.append(f)
    return gone


# errno values that mean "this folder cannot take the file": a user problem, not a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def write_error(path: str | Path, exc: BaseException):
    """A one-line MedmmError for a failed write of `path`: the folder, the reason, the free space."""
    from medmm.errors import MedmmError

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
    with contextlib.suppress(OSError):
        reason += f"; {shutil.disk_usage(folder).free / 1e6:.0f} MB free there"
    return MedmmError(f"{folder}: cannot write {path.name} ({reason}); free disk space or choose a writable --out")


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (tmp file + rename), so a crash never leaves half a file."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, default=_json_default) + "\n" for r in records)


def write_torch(obj: Any, path: str | Path) -> None:
    """torch.save `obj` to `path` atomically and durably (fsync): checkpoints and model.pt.

    A full disk or a read-only folder is a one-line MedmmError naming the folder (`write_error`).
    """
    import torch

    try:
        with atomic_open(path, "wb", fsync=True) as f:
            torch.save(obj, f)
    except OSError as exc:
        raise write_error(path, exc) from None
    except RuntimeError as exc:  # torch's writer reports a full disk as "file write failed"
        if "write" not in str(exc):
            raise
        raise write_error(path, exc) from None


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # torch tensors
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def git_commit(repo: Path | None = None) -> str | None:
    """The commit of the medmm source tree (with '+dirty' when it has changes), or None."""
    here = repo or Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10,
            check=False,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int) -> dict[str, Any]:
    """Versions, git commit, seed and host CPU: what a reader needs to reproduce a number."""
    import lightning
    import torch

    import medmm

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "medmm": medmm.__version__,
        "git_commit": git_commit(),
        "seed": seed,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with an error naming it."""
    from medmm.errors import BadInputError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputError(path, f"cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"not valid JSON: {exc}") from None


def read_yaml_config(run_dir: str | Path):
    """The RunConfig saved in run_dir/config.yaml (keys of an earlier layout moved, with a
    warning: `config_fields.saved_run_config`), or None when there is none."""
    from medmm.engine.config import config_from_dict, read_yaml
    from medmm.engine.config_fields import saved_run_config

    path = Path(run_dir) / CONFIG
    if not path.exists():
        return None
    return config_from_dict(saved_run_config(read_yaml(path), path), where=path)
