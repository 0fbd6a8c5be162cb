"""Where a job's state lives: one folder per job id under ``<root>/jobs/``.

    <root>/jobs/<job-id>/
        spec.json     the frozen spec (written when the job first starts)
        lease         held while a worker runs the job: owner, host, pid; its
                      mtime is the heartbeat
        status.json   the last state change (running / failed / preempted /
                      interrupted / submitted), with attempts and the last error
        error.json    why the last attempt failed (message and traceback)
        ckpt/         checkpoints written by the job body
        done.json     the final metrics; written last, atomically. Its
                      presence is what "done" means.

Claims are exclusive: ``O_CREAT|O_EXCL`` on the lease, so two ``run``s of the
same grid at the same time run each job once. A lease whose heartbeat is older
than ``lease_s`` (or whose owner process on this host is gone) is stale and may
be taken over.

A state file that does not parse is never read as success: a ``done.json`` that is
empty or garbage means "not done" (the job runs again), a broken ``status.json`` is
kept aside as ``status.json.corrupt`` and said so in the next record. Files are
created with the umask's mode (readable by the group on a shared filesystem, when
the umask says so), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DONE, RUNNING, FAILED, PREEMPTED, SUBMITTED, PENDING = "done", "running", "failed", "preempted", "submitted", "pending"
CANCELLED = "cancelled"  # a scheduler (Slurm) cancelled the job before it finished
INTERRUPTED = "interrupted"  # the user stopped the run (Ctrl-C, SIGTERM); resumes from its checkpoint


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; others on a shared filesystem follow the umask
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or does not parse (empty, truncated, not UTF-8)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def set_aside(path: Path, suffix: str = "corrupt") -> Path:
    """Rename a file that does not parse to ``<name>.<suffix>`` (kept for a look, never read again)."""
    aside = path.with_name(f"{path.name}.{suffix}")
    os.replace(path, aside)
    return aside


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class JobState:
    """What the store knows about one job."""

    state: str
    attempts: int = 0
    error: str | None = None
    has_checkpoint: bool = False
    info: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BackendState:
    """What a scheduler says about a job that ``status.json`` records as submitted to it."""

    state: str  # the scheduler's own word: PENDING, RUNNING, CANCELLED, COMPLETED, ...
    active: bool  # queued or running there: `run` does not submit it again
    ref: str = ""  # the scheduler's id for the job, e.g. Slurm's 1234_5


class Lease:
    """An exclusive claim on a job folder, kept alive by a heartbeat thread."""

    def __init__(self, path: Path, heartbeat_s: float) -> None:
        self.path, self.token = path, uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        owner = read_json(self.path) or {}
        if owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)


class Store:
    """Job folders under ``root``; safe for concurrent writers on one shared filesystem."""

    def __init__(self, root: Path | str, lease_s: float = 120.0) -> None:
        self.root = Path(root).resolve()
        self.lease_s = lease_s

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    # ---- reading -------------------------------------------------------
    def result(self, job_id: str) -> dict[str, Any] | None:
        """The done record (metrics) of a finished job, else None (also when ``done.json`` does not parse)."""
        record = read_json(self.job_dir(job_id) / "done.json")
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            return None
        return record

    def is_done(self, job_id: str) -> bool:
        """Done means a ``done.json`` that parses, with its metrics: an empty or broken one is not done."""
        return self.result(job_id) is not None

    def lease_owner(self, job_id: str) -> dict[str, Any] | None:
        """The live lease's owner record, or None when nobody holds a live lease."""
        path = self.job_dir(job_id) / "lease"
        owner = read_json(path)
        if owner is None or self._stale(path, owner):
            return None
        return owner

    def state(self, job_id: str) -> JobState:
        d = self.job_dir(job_id)
        status = read_json(d / "status.json")
        broken = _unreadable(d, "status.json", status) or _unreadable(d, "done.json", self.result(job_id))
        status = status if isinstance(status, dict) else {}
        ckpt = d / "ckpt"
        # A leftover temp file (``.name.xyz``) or a set-aside ``*.corrupt`` is not a checkpoint to resume from.
        has_ckpt = ckpt.is_dir() and any(not p.name.startswith(".") and p.suffix != ".corrupt" for p in ckpt.iterdir())
        attempts = int(status.get("attempts", 0))
        if self.is_done(job_id):
            return JobState(DONE, attempts, None, has_ckpt, status)
        if self.lease_owner(job_id) is not None:
            return JobState(RUNNING, attempts, None, has_ckpt, status)
        state = status.get("state", PENDING)
        if state in (RUNNING, DONE):  # the worker died without saying so (DONE: before done.json was written)
            state = FAILED if not has_ckpt else PREEMPTED
        if broken:  # never success: the job runs again, and the plan says why
            return JobState(FAILED, attempts, broken, has_ckpt, status)
        return JobState(state, attempts, status.get("error"), has_ckpt, status)

    # ---- writing -------------------------------------------------------
    def write_spec(self, job_id: str, spec: Mapping[str, Any]) -> str | None:
        """Write the job's spec (as planned) unless an equal one is there; says what was wrong with the old one.

        An existing ``spec.json`` that does not parse, or that differs from the plan's, is not
        trusted (nor uploaded): it is kept as ``spec.json.corrupt`` and replaced.
        """
        path = self.job_dir(job_id) / "spec.json"
        old = read_json(path)
        if old == json.loads(json.dumps(dict(spec), default=str)):
            return None
        note = None
        if path.exists():
            why = "does not parse" if old is None else "differs from the plan's spec for this job id"
            note = f"{path} {why}; kept as {set_aside(path).name} and rewritten from the plan"
        write_json_atomic(path, spec)
        return note

    def set_status(self, job_id: str, state: str, **info: Any) -> None:
        path = self.job_dir(job_id) / "status.json"
        old = read_json(path)
        if old is None and path.exists():  # never silently: the attempt count starts again, and the record says why
            info = {**info, "note": f"the previous status.json did not parse (kept as {set_aside(path).name}); "
                                    "attempts are counted from here"}
        old = old if isinstance(old, dict) else {}
        attempts = int(old.get("attempts", 0)) + (1 if state == RUNNING else 0)
        record = {**{k: v for k, v in old.items() if k in ("backend",)}, **info, "state": state,
                  "attempts": attempts, "time": time.time(), "host": socket.gethostname()}
        write_json_atomic(path, record)

    def mark_done(self, job_id: str, metrics: Mapping[str, Any]) -> None:
        """The last write of a job: after it, the job is done for every reader."""
        self.set_status(job_id, DONE)
        write_json_atomic(self.job_dir(job_id) / "done.json", {"metrics": dict(metrics), "time": time.time()})

    def claim(self, job_id: str, owner: str) -> Lease | None:
        """Take the job's lease, or None if someone else holds a live one."""
        d = self.job_dir(job_id)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "lease"
        for _ in range(3):
            lease = Lease(path, heartbeat_s=max(self.lease_s / 4, 0.05))
            record = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "token": lease.token, "time": time.time()}
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask decides
            except FileExistsError:
                current = read_json(path)
                if current is not None and not self._stale(path, current):
                    return None
                if current is None and time.time() - _mtime(path) < 5.0:
                    time.sleep(0.05)  # being written right now by its owner
                    continue
                # Stale: move it aside under a unique name; only one taker's rename succeeds.
                try:
                    os.replace(path, d / f".lease.stale.{uuid.uuid4().hex}")
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            lease._thread.start()
            return lease
        return None

    def _stale(self, path: Path, owner: Mapping[str, Any]) -> bool:
        if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
            return True
        return time.time() - _mtime(path) > self.lease_s


def _unreadable(folder: Path, name: str, parsed: Any) -> str | None:
    """Why a state file that exists cannot be trusted, or None."""
    if parsed is None and (folder / name).exists():
        return f"{folder / name} does not parse (empty or truncated?); the job runs again"
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
