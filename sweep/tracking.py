"""MLflow: one experiment per sweep, a parent run per sweep, a child run per job.

Runs are found-or-created by tags (``sweep_role``, ``sweep_job_id``), never by
name, so re-running a sweep never duplicates runs. Only the ``MlflowClient`` is
used (no fluent global state), so workers in any process can log safely. The
default store is MLflow's own default, ``sqlite:///mlflow.db`` in the working
directory, made absolute so jobs on other processes and nodes find it.
"""

from __future__ import annotations

import fcntl
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

T = TypeVar("T")
PARENT, JOB, FIT = "parent", "job", "fit"
MAX_PARAM_CHARS = 6000
# MLflow's own tags. The UI opens an experiment of the training kind on its runs (not the GenAI
# overview), shows the note as the description, and fills the runs table's Source column from
# the source tags.
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
NOTE = "mlflow.note.content"


def absolute_uri(uri: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db``; plain paths -> absolute paths."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith("databricks"):
        return str(Path(uri).resolve())
    return uri


SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "apikey", "credential", "credentials"})
SECRET_PAIRS = ("api_key", "private_key", "access_key")


def is_secret_key(key: object) -> bool:
    """``HF_TOKEN``, ``db_password``, ``api_key`` yes; ``visual_tokens`` no: whole words only."""
    text = str(key).lower()
    return bool(SECRET_WORDS.intersection(re.split(r"[^a-z0-9]+", text))) or any(p in text for p in SECRET_PAIRS)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with the values of secret-looking keys replaced, for anything we log or store."""
    if isinstance(obj, Mapping):
        return {k: "***" if is_secret_key(k) else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists -> ``{"a.b.0.c": "value"}`` with values as MLflow-safe strings."""
    out: dict[str, str] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and obj and any(isinstance(v, (Mapping, list)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = str(obj)[:MAX_PARAM_CHARS]
    return out


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Retry a store call that lost a race for a SQLite lock or hit a busy server."""
    delay = 0.1
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # MlflowException wraps OperationalError and HTTP errors
            text = str(e).lower()
            transient = any(s in text for s in ("locked", "busy", "timed out", "temporarily", "503", "502", "connection"))
            if not transient or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


class Tracker:
    """The sweep's view of one MLflow tracking store."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = absolute_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)

    # ---- find or create -----------------------------------------------
    def find_experiment(self, name: str) -> str | None:
        """The experiment's id, or None when there is none (nothing is created)."""
        exp = _retry(lambda: self.client.get_experiment_by_name(name))
        return None if exp is None else exp.experiment_id

    def experiment(self, name: str) -> str:
        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return _retry(lambda: self.client.create_experiment(name))
        except Exception:  # created meanwhile by a concurrent sweep
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _find(self, experiment_id: str, **tags: str) -> Any | None:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = _retry(lambda: self.client.search_runs([experiment_id], query, max_results=2, order_by=["attributes.start_time ASC"]))
        return runs[0] if runs else None

    def parent_run(self, experiment_id: str, sweep_name: str, tags: Mapping[str, str]) -> str:
        run = self._find(experiment_id, sweep_role=PARENT)
        if run is None:
            run = _retry(lambda: self.client.create_run(
                experiment_id, run_name=f"sweep-{sweep_name}", tags={"sweep_role": PARENT, "sweep_name": sweep_name, **tags}))
        else:
            self.set_tags(run.info.run_id, tags)
            _retry(lambda: self.client.update_run(run.info.run_id, status="RUNNING"))
        return run.info.run_id

    def job_run(self, experiment_id: str, parent_run_id: str, job_id: str, tags: Mapping[str, str],
                name: str | None = None) -> str:
        """The job's run, created on its first attempt and reopened on later ones; ``name``: the readable run name."""
        run = self._find(experiment_id, sweep_job_id=job_id)
        all_tags = {"sweep_role": JOB, "sweep_job_id": job_id, "mlflow.parentRunId": parent_run_id, **tags}
        if run is None:
            run = _retry(lambda: self.client.create_run(experiment_id, run_name=name or job_id, tags=all_tags))
            return run.info.run_id
        _retry(lambda: self.client.update_run(run.info.run_id, status="RUNNING", name=name))
        self.set_tags(run.info.run_id, tags)
        return run.info.run_id

    def fit_run(self, experiment_id: str, parent_run_id: str, tags: Mapping[str, str]) -> str:
        run = self._find(experiment_id, sweep_role=FIT)
        if run is None:
            run = _retry(lambda: self.client.create_run(
                experiment_id, run_name="fit", tags={"sweep_role": FIT, "mlflow.parentRunId": parent_run_id, **tags}))
            return run.info.run_id
        _retry(lambda: self.client.update_run(run.info.run_id, status="RUNNING"))
        return run.info.run_id

    # ---- what the dashboard shows --------------------------------------
    def describe_experiment(self, experiment_id: str, note: str | None = None) -> None:
        """Mark the experiment as model training (the UI opens on its runs) and set its description."""
        _retry(lambda: self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND))
        if note is not None:
            _retry(lambda: self.client.set_experiment_tag(experiment_id, NOTE, note))

    def log_datasets(self, run_id: str, refs: Iterable[Any]) -> None:
        """The data a run read (``sweep.inputs.DatasetRef``) as MLflow dataset inputs; logging one again is a no-op."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(r.name, r.digest, r.source_type, json.dumps(dict(r.source), default=str),
                                       profile=json.dumps(dict(r.profile), default=str) if r.profile else None),
                               tags=[InputTag("mlflow.data.context", r.context)]) for r in refs]
        if inputs:
            _retry(lambda: self.client.log_inputs(run_id, datasets=inputs))

    # ---- logging -------------------------------------------------------
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, tags=chunk))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100; a value already logged identically is not re-sent."""
        from mlflow.entities import Param

        existing = _retry(lambda: self.client.get_run(run_id)).data.params
        items = [Param(k, str(v)) for k, v in params.items() if existing.get(k) != str(v)]
        for i in range(0, len(items), 100):
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, params=chunk))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step or 0)) for k, v in metrics.items() if _is_number(v)]
        for i in range(0, len(items), 500):
            _retry(lambda chunk=items[i:i + 500]: self.client.log_batch(run_id, metrics=chunk))

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status))

    def close_job_runs(self, experiment_id: str, ended: Mapping[str, tuple[str, str]]) -> dict[str, str]:
        """Close the RUNNING runs of jobs whose worker died: ``ended`` is job id -> (status, reason).

        One search for the experiment's RUNNING job runs; each one of a job in ``ended`` gets the
        reason as its ``sweep_error`` tag and the status (KILLED / FAILED). Runs in any other
        status are not touched, so a second call changes nothing. Returns job id -> reason, closed.
        """
        if not ended:
            return {}
        closed: dict[str, str] = {}
        for run in self._search_all(experiment_id, f"tags.sweep_role = '{JOB}' and attributes.status = 'RUNNING'"):
            job_id = run.data.tags.get("sweep_job_id")
            if job_id not in ended:
                continue
            status, reason = ended[job_id]
            self.set_tags(run.info.run_id, {"sweep_error": reason[:5000]})
            self.finish(run.info.run_id, status)
            closed[job_id] = reason
        return closed

    def _search_all(self, experiment_id: str, query: str) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = _retry(lambda: self.client.search_runs([experiment_id], query, max_results=1000, page_token=token))
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    # ---- reading -------------------------------------------------------
    def job_runs(self, experiment_id: str, kind: str, job_ids: Iterable[str] | None = None) -> list[Any]:
        """Finished job runs of one kind, optionally restricted to these job ids."""
        runs = self._search_all(experiment_id, f"tags.sweep_kind = '{kind}' and attributes.status = 'FINISHED'")
        if job_ids is not None:
            wanted = set(job_ids)
            runs = [r for r in runs if r.data.tags.get("sweep_job_id") in wanted]
        return runs


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # NaN is dropped


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An advisory lock held for the duration of the block (parent-run get-or-create)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def git_commit(repo: Path | None = None) -> str:
    """The checkout's commit (with ``-dirty`` when modified), or ``unknown``."""
    import subprocess

    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"



def source_tags(name: str, commit: str) -> dict[str, str]:
    """MLflow's own source tags (the runs table's Source column): entry point, git commit, user."""
    import getpass

    tags = {"mlflow.source.name": name, "mlflow.source.type": "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        pass
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags
