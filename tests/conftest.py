"""Shared fixtures: a real MLflow store in a temp folder (its schema is created once per session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A collective that waits for a rank that is gone fails its test in 10 min rather than the default 30 (the
# ranks of tests and the jobs they launch read it at import); the per-test timeout (pyproject.toml) is 20 min.
os.environ.setdefault("SWEEP_DIST_TIMEOUT_S", "600")


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real SQLite MLflow store for the session (creating its schema takes seconds)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{db}"
    from sweep.tracking import Tracker

    Tracker(uri).experiment("warmup")
    return uri


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No hub access and an empty cache of our own, so the machine's cache can never make a model look present."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
