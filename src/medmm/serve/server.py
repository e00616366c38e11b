"""`run_server`: load packages once, check the bind address and token, start uvicorn."""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from pathlib import Path

from medmm.errors import MedmmError
from medmm.serve.predictor import Predictor


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: treated as reachable from outside


def check_auth(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise MedmmError(f"--host {host} is not a loopback address: set --token or MEDMM_SERVE_TOKEN (clients then send "
                         "'Authorization: Bearer <token>')")
    if token is not None and len(token) < 16:
        raise MedmmError("the token must be at least 16 characters")


def load_predictors(dirs: list[Path], names: list[str] | None = None) -> dict[str, Predictor]:
    """name -> Predictor for each package folder (name: the folder's name unless `names` gives them)."""
    if names and len(names) != len(dirs):
        raise MedmmError(f"--name given {len(names)} times for {len(dirs)} packages; give one per package or none")
    keys = names or [Path(d).resolve().name for d in dirs]
    if len(set(keys)) != len(keys):
        raise MedmmError(f"two packages would be served under one name: {keys}; use --name")
    return {k: Predictor(d) for k, d in zip(keys, dirs, strict=True)}


def json_logging(level: int = logging.INFO) -> None:
    """medmm.serve logs one JSON object per line on stderr."""
    logger = logging.getLogger("medmm.serve")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        try:
            body = json.loads(msg)
        except ValueError:
            body = {"message": msg}
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname, **body})


def run_server(dirs: list[Path], *, host: str, port: int, names: list[str] | None, token: str | None, threads: int,
               max_batch: int, max_wait_ms: float, max_body_mb: float, max_pixels: int) -> None:
    """Load every package once, then serve them until interrupted."""
    from medmm.errors import require

    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
        require(module, "serve", "medmm serve")
    import torch
    import uvicorn

    from medmm.serve.app import create_app

    check_auth(host, token)
    torch.set_num_threads(threads)
    json_logging()
    predictors = load_predictors(dirs, names)
    app = create_app(predictors, token=token, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     max_body_bytes=int(max_body_mb * (1 << 20)), max_pixels=max_pixels)
    logging.getLogger("medmm.serve").info(json.dumps({"event": "start", "host": host, "port": port, "models": sorted(predictors),
                                                      "threads": threads, "max_batch": max_batch, "max_wait_ms": max_wait_ms}))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
