"""MLflow: one experiment per sweep, a parent run per sweep, a child run per job.

Runs are found-or-created by tags (``sweep_role``, ``sweep_job_id``), never by
name, so re-running a sweep never duplicates runs. Only the ``MlflowClient`` is
used (no fluent global state), so workers in any process can log safely. The
default store is MLflow's own default, ``sqlite:///mlflow.db`` in the working
directory, made absolute so jobs on other processes and nodes find it.

Faults: a fresh SQLite store's schema is created once, under a file lock beside
the database (two first runs at once would otherwise race MLflow's migrations
and can break the store). Every call to the store retries transient errors (a
locked database, a server that is down or busy) for at most ``retry_s`` seconds,
each HTTP request waiting ``timeout_s`` at most, then raises: a job fails and
says so, the driver still prints its summary. Creations search first, so a
retried create never makes a second run. Credentials in a server URI
(``http://user:password@host``) move to MLflow's own environment variables, so
the URI the sweep keeps, logs and prints has none, and ``redact`` masks secrets
in anything that is written or printed.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

T = TypeVar("T")
PARENT, JOB, FIT = "parent", "job", "fit"
MAX_PARAM_CHARS = 6000
RETRY_S, TIMEOUT_S = 120.0, 30.0  # defaults of tracking.retry_s / tracking.timeout_s (sweep.specs.config.Tracking)
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


# user:password@ in a URL; NAME=value / NAME: value where NAME looks secret (a shell line, a header).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&|]+)")


def redact_text(text: str) -> str:
    """``text`` with URL credentials and ``SECRET_NAME=value`` assignments masked (``***``)."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)
    return _ASSIGNMENT.sub(lambda m: f"{m['key']}{m['sep']}***" if is_secret_key(m["key"]) else m[0], text)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with secrets masked, for anything we log, store or print.

    Values under secret-looking keys are replaced whole; every other string is
    masked where it holds a URL's credentials or a ``TOKEN=value`` assignment.
    """
    if isinstance(obj, Mapping):
        return {k: "***" if is_secret_key(k) else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host:5000/x`` -> (``http://host:5000/x``, user, pw); other URIs unchanged."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username) if parts.username else None), (unquote(parts.password) if parts.password else None)


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


TRANSIENT = ("locked", "busy", "timed out", "timeout", "temporarily", "503", "502", "504", "429", "connection",
             "max retries exceeded")


def _retry(fn: Callable[[], T], budget_s: float = RETRY_S) -> T:
    """Call ``fn``, retrying errors that pass (a SQLite lock lost to a race, a server down or busy) for ``budget_s``."""
    delay, deadline = 0.1, time.monotonic() + budget_s
    while True:
        try:
            return fn()
        except Exception as e:  # MlflowException wraps OperationalError and HTTP errors
            text = str(e).lower()
            if not any(s in text for s in TRANSIENT) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


class Tracker:
    """The sweep's view of one MLflow tracking store.

    ``retry_s``: how long one call keeps retrying through an outage before it raises;
    ``timeout_s``: how long one HTTP request may wait for the server.
    """

    def __init__(self, uri: str, retry_s: float = RETRY_S, timeout_s: float = TIMEOUT_S) -> None:
        from mlflow import MlflowClient

        uri, user, password = split_credentials(absolute_uri(uri))
        if user is not None:  # MLflow reads these for every request; the URI we keep and log has no secret
            os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
        if password is not None:
            os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)
        if uri.startswith(("http://", "https://")):
            # MLflow's own defaults (7 retries x up to 120 s, backing off) times ours make half an hour;
            # the sweep retries by its budget instead. Settings the user exported win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(timeout_s))))
        self.uri, self.retry_s = uri, retry_s
        db = _sqlite_path(self.uri)
        if db is None:
            self.client = MlflowClient(tracking_uri=self.uri)
            return
        # Opening a fresh store runs MLflow's schema migrations (the client opens it at once); two
        # processes doing that together crash ("duplicate column", "table already exists") and can
        # leave the store half-migrated for good. One at a time; later opens find the schema done.
        with file_lock(db.with_name(db.name + ".lock")):
            self.client = MlflowClient(tracking_uri=self.uri)

    def _call(self, fn: Callable[[], T]) -> T:
        return _retry(fn, self.retry_s)

    # ---- find or create -----------------------------------------------
    def find_experiment(self, name: str) -> str | None:
        """The experiment's id, or None when there is none (nothing is created)."""
        exp = self._call(lambda: self.client.get_experiment_by_name(name))
        return None if exp is None else exp.experiment_id

    def experiment(self, name: str) -> str:
        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return self._call(lambda: self.find_experiment(name) or self.client.create_experiment(name))
        except Exception:  # created meanwhile by a concurrent sweep
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _find(self, experiment_id: str, **tags: str) -> Any | None:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = self._call(lambda: self.client.search_runs([experiment_id], query, max_results=2, order_by=["attributes.start_time ASC"]))
        return runs[0] if runs else None

    def _find_or_create(self, experiment_id: str, find: Mapping[str, str], run_name: str, tags: Mapping[str, str]) -> tuple[Any, bool]:
        """(run, created): the run tagged ``find``, else a new one. A create whose answer was lost and
        is retried finds the run it made instead of making a second one."""
        def attempt() -> tuple[Any, bool]:
            query = " and ".join(f"tags.{k} = '{v}'" for k, v in find.items())
            runs = self.client.search_runs([experiment_id], query, max_results=2, order_by=["attributes.start_time ASC"])
            if runs:
                return runs[0], False
            return self.client.create_run(experiment_id, run_name=run_name, tags={**find, **tags}), True

        return self._call(attempt)

    def parent_run(self, experiment_id: str, sweep_name: str, tags: Mapping[str, str]) -> str:
        run, created = self._find_or_create(experiment_id, {"sweep_role": PARENT}, f"sweep-{sweep_name}",
                                            {"sweep_name": sweep_name, **tags})
        if not created:
            self.set_tags(run.info.run_id, tags)
            self._call(lambda: self.client.update_run(run.info.run_id, status="RUNNING"))
        return run.info.run_id

    def job_run(self, experiment_id: str, parent_run_id: str, job_id: str, tags: Mapping[str, str],
                name: str | None = None) -> str:
        """The job's run, created on its first attempt and reopened on later ones; ``name``: the readable run name."""
        run, created = self._find_or_create(experiment_id, {"sweep_job_id": job_id}, name or job_id,
                                            {"sweep_role": JOB, "mlflow.parentRunId": parent_run_id, **tags})
        if not created:
            self._call(lambda: self.client.update_run(run.info.run_id, status="RUNNING", name=name))
            self.set_tags(run.info.run_id, tags)
        return run.info.run_id

    def fit_run(self, experiment_id: str, parent_run_id: str, tags: Mapping[str, str]) -> str:
        run, created = self._find_or_create(experiment_id, {"sweep_role": FIT}, "fit", {"mlflow.parentRunId": parent_run_id, **tags})
        if not created:
            self._call(lambda: self.client.update_run(run.info.run_id, status="RUNNING"))
        return run.info.run_id

    def metric_steps(self, run_id: str, key: str) -> dict[int, float]:
        """The values logged for ``key`` by step (the last one where a step was logged twice)."""
        return {int(m.step): float(m.value) for m in sorted(self._call(lambda: self.client.get_metric_history(run_id, key)),
                                                           key=lambda m: m.timestamp)}

    # ---- what the dashboard shows --------------------------------------
    def describe_experiment(self, experiment_id: str, note: str | None = None) -> None:
        """Mark the experiment as model training (the UI opens on its runs) and set its description."""
        self._call(lambda: self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND))
        if note is not None:
            self._call(lambda: self.client.set_experiment_tag(experiment_id, NOTE, note))

    def log_datasets(self, run_id: str, refs: Iterable[Any]) -> None:
        """The data a run read (``sweep.inputs.DatasetRef``) as MLflow dataset inputs; logging one again is a no-op."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(r.name, r.digest, r.source_type, json.dumps(dict(r.source), default=str),
                                       profile=json.dumps(dict(r.profile), default=str) if r.profile else None),
                               tags=[InputTag("mlflow.data.context", r.context)]) for r in refs]
        if inputs:
            self._call(lambda: self.client.log_inputs(run_id, datasets=inputs))

    # ---- logging -------------------------------------------------------
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self._call(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, tags=chunk))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100; a value already logged identically is not re-sent."""
        from mlflow.entities import Param

        existing = self._call(lambda: self.client.get_run(run_id)).data.params
        items = [Param(k, str(v)) for k, v in params.items() if existing.get(k) != str(v)]
        for i in range(0, len(items), 100):
            self._call(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, params=chunk))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step or 0)) for k, v in metrics.items() if _is_number(v)]
        for i in range(0, len(items), 500):
            self._call(lambda chunk=items[i:i + 500]: self.client.log_batch(run_id, metrics=chunk))

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._call(lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self._call(lambda: self.client.set_terminated(run_id, status=status))

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
            page = self._call(lambda: self.client.search_runs([experiment_id], query, max_results=1000, page_token=token))
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
