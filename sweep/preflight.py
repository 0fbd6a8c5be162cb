"""Checks of the places a run writes to, done in seconds before anything is created.

    python -m sweep tracking.uri=http://127.0.0.1:1     # exit 2: tracking.uri, no server answers
    python -m sweep sweep.root=/proc/nope               # exit 2: sweep.root, cannot create files

``run`` refuses (``SweepError``, exit 2) a tracking store it cannot reach or write
and a ``sweep.root`` it cannot write or that lacks room for the first checkpoints,
before the plan is printed, an MLflow store is created or a job folder is made:
otherwise these surface late (MLflow's HTTP retries take half an hour to give
up; an unwritable root ends in a traceback after ``mlflow.db`` was created).
``plan`` and ``status`` print the same findings as notes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

CHECK_TIMEOUT_S = 5.0  # the up-front server check waits at most this long
BYTES_PER_PARAM = 16  # one checkpoint: fp32 weights + AdamW's two moments, and some room
MIN_FREE_BYTES = 64 * 2**20


def tracking_problem(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> str | None:
    """Why the tracking store at ``uri`` cannot be used, or None.

    A server must answer an MLflow API call within ``timeout_s`` (any answer but a 5xx, a
    refusal of our credentials, or a 404 that is not MLflow's); a SQLite file or a local
    folder must be in a folder we can write. Other stores (a database server, Databricks)
    are left to their first call.
    """
    from sweep.tracking import absolute_uri, split_credentials

    clean, user, password = split_credentials(absolute_uri(uri))
    if clean.startswith(("http://", "https://")):
        return _server_problem(clean, user, password, timeout_s)
    if clean.startswith("sqlite:///"):
        return not_writable(Path(clean[len("sqlite:///"):]).parent)
    if "://" not in clean and not clean.startswith("databricks"):
        return not_writable(Path(clean))
    return None


def _server_problem(url: str, user: str | None, password: str | None, timeout_s: float) -> str | None:
    import requests

    user = user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    auth = (user, password) if user and password and not token else None
    api = f"{url.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name"
    try:
        resp = requests.get(api, params={"experiment_name": "sweep-preflight"}, timeout=timeout_s, auth=auth, headers=headers)
    except requests.RequestException as e:
        return f"no MLflow server answers at {url} within {timeout_s:g} s ({type(e).__name__})"
    if resp.status_code in (401, 403):
        return f"the MLflow server at {url} refused our credentials (HTTP {resp.status_code})"
    if resp.status_code >= 500:
        return f"the MLflow server at {url} answers HTTP {resp.status_code}"
    if resp.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" not in resp.text:
        return f"{url} answers, but not as an MLflow tracking server (HTTP 404 for its API)"
    return None


def nearest_existing(folder: Path) -> Path:
    """``folder`` or the closest folder above it that exists (what creating it would write into)."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def not_writable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or, while it does not exist, in the folder it would go into)."""
    probe = nearest_existing(folder)
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:  # os.access says yes to root on a read-only mount; only a write tells
        fd, name = tempfile.mkstemp(dir=probe, prefix=".sweep-write-check.")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return f"cannot create files in {probe} ({e.strerror or e})"
    return None


def first_checkpoint_bytes(jobs: Iterable[Any]) -> int:
    """Room for one checkpoint of the largest model that will train (at least ``MIN_FREE_BYTES``)."""
    sizes = [0.0]
    for job in jobs:
        llm = getattr(job.spec, "llm", None)
        if job.role == "train" and llm is not None:
            params = float(llm.params_b) * 1e9 if hasattr(llm, "params_b") else llm.params()
            sizes.append(params * BYTES_PER_PARAM)
    return int(max(MIN_FREE_BYTES, max(sizes)))


def root_problem(root: str | Path, need_bytes: int = MIN_FREE_BYTES) -> str | None:
    """Why ``sweep.root`` cannot hold the run's job folders, or None."""
    problem = not_writable(Path(root))
    if problem:
        return problem
    free = shutil.disk_usage(nearest_existing(Path(root))).free
    if free < need_bytes:
        return (f"has {free / 2**30:.2f} GiB free, less than the {need_bytes / 2**30:.2f} GiB the first checkpoint "
                "of the largest model to train needs")
    return None


def check_places(cfg: Any, plan: Any, todo: Iterable[str]) -> list[SweepError]:
    """The tracking store and ``sweep.root``: every problem found, each naming its field and a fix."""
    from sweep.tracking import redact_text

    problems = []
    todo = set(todo)
    problem = root_problem(cfg.sweep.root, first_checkpoint_bytes(j for j in plan if j.id in todo))
    if problem:
        problems.append(SweepError("sweep.root", f"{cfg.sweep.root}: {problem}",
                                   "point sweep.root (or SWEEP_ROOT) at a writable folder with room, on storage every node sees"))
    problem = tracking_problem(cfg.tracking.uri, min(CHECK_TIMEOUT_S, cfg.tracking.timeout_s))
    if problem:
        problems.append(SweepError("tracking.uri", redact_text(problem),
                                   "start the server (`make mlflow-server`) or fix tracking.uri (or MLFLOW_TRACKING_URI); "
                                   "a SQLite store needs a writable folder"))
    return problems
