"""Secrets never reach a file, MLflow, stdout or a job id: values under secret-looking keys, credentials in
a tracking URI, ``TOKEN=...`` in a launcher's shell lines.

    .venv/bin/pytest tests/test_redaction.py
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from harness import free_port
from helpers import sweep_cli

SECRET = "hf_S3cretValue0123456789"
PASSWORD = "pw-S3cret-9876"


def test_redact_masks_keys_urls_and_assignments() -> None:
    from sweep.tracking import redact, redact_text

    data = {"hf_token": SECRET, "visual_tokens": [1, 4], "uri": f"https://alice:{PASSWORD}@mlflow.example:5000/x",
            "setup": [f"export HF_TOKEN={SECRET}", "module load cuda"], "note": f"api_key: {SECRET} and more",
            "nested": {"db_password": PASSWORD, "steps": 3}}
    text = json.dumps(redact(data))
    assert SECRET not in text and PASSWORD not in text
    masked = redact(data)
    assert masked["visual_tokens"] == [1, 4] and masked["nested"]["steps"] == 3  # only secrets change
    assert masked["uri"] == "https://***@mlflow.example:5000/x"
    assert masked["setup"] == ["export HF_TOKEN=***", "module load cuda"]
    assert redact_text("grid.visual_tokens=[1,4] tokens=3 path=/data") == "grid.visual_tokens=[1,4] tokens=3 path=/data"


def test_credentials_in_a_server_uri_move_to_mlflows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.tracking import Tracker

    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)  # and restored after the test
    tracker = Tracker(f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}")
    assert PASSWORD not in tracker.uri and "alice" not in tracker.uri
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD


def test_no_semantic_field_of_a_job_spec_looks_secret() -> None:
    """Identity is what a job computes: a secret there would rerun the study when a token is rotated."""
    import typing

    from sweep.specs.jobs import JobSpec
    from sweep.specs.schema import IDENTITY, spec_types
    from sweep.tracking import is_secret_key

    for variant in typing.get_args(JobSpec):
        for tp in spec_types(variant):
            semantic = [f.name for f in dataclasses.fields(tp) if f.metadata.get(IDENTITY)]
            assert not [n for n in semantic if is_secret_key(n)], tp


def test_a_password_in_the_tracking_uri_is_never_printed(tmp_path: Path) -> None:
    uri = f"tracking.uri=http://alice:{PASSWORD}@127.0.0.1:{free_port()}"
    for args in (("plan", uri), ("--cfg", uri), (uri, "grid.llm=[xs]", "grid.visual_tokens=[1]")):
        out = sweep_cli(*args, cwd=tmp_path)
        assert PASSWORD not in out.stdout + out.stderr, args
    assert out.returncode == 2 and "http://127.0.0.1:" in out.stderr  # refused (nothing listens), URL without its secret


def test_secrets_in_the_config_reach_no_file_no_run_and_no_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sweep.cli import load
    from sweep.lifecycle import setup_tracking
    from sweep.tracking import Tracker

    base = [f"sweep.root={tmp_path / 'out'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "launcher=slurm", "launcher.partition=debug"]
    _, plain = load(base)
    cfg, plan = load([*base, f"launcher.setup=['export HF_TOKEN={SECRET}']"])
    assert [j.id for j in plan] == [j.id for j in plain]  # secrets are not identity
    tracker, rt = setup_tracking(cfg, plan)
    config = (tmp_path / "out" / "sweeps" / plan.name / "config.yaml").read_text()
    assert "HF_TOKEN=***" in config and SECRET not in config
    parent = Tracker(rt.tracking_uri).client.get_run(rt.parent_run_id)
    assert SECRET not in json.dumps([parent.data.params, parent.data.tags])
    assert SECRET not in capsys.readouterr().out
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
