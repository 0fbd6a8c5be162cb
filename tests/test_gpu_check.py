"""``make gpu-check`` (bench/gpu_check.py) on a machine without a GPU: its skip, its arguments, a dry run at toy shapes.

No GPU is available to these tests: the GPU figures themselves come from running the script on
one. What can run here does: the script's refusal of bad arguments, its clean skip without
CUDA, and ``--device cpu --tiny``, every step of it (the bench cells, the FSDP stage-2 step on
two gloo ranks through the job's own Parallel / TrainLoop / micro_steps, the JSON and the
markdown) at toy shapes on the CPU.
Run: ``.venv/bin/pytest -m '' tests/test_gpu_check.py -q``
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.py"


def _run(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "g.json"), "--markdown", str(tmp_path / "g.md"),
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run, not skip")
def test_it_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 0 and "gpu-check skipped: CUDA is not available" in run.stdout
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "g.md").exists()


@pytest.mark.parametrize("args, problem", [
    (["--llms", "qwen15-70b"], "--llms ['qwen15-70b']: use some of"),
    (["--visual-tokens", "1,5"], "--visual-tokens [5]: V must be a square whose root divides 24"),
    (["--visual-tokens", "a"], "--visual-tokens must be integers"),
    (["--fsdp-llm", "gpt2"], "--fsdp-llm 'gpt2'"),
    (["--steps", "0"], "must be at least 1"),
])
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], problem: str) -> None:
    run = _run(tmp_path, *args)
    assert run.returncode == 2 and problem in run.stderr, run.stderr


@pytest.mark.slow
def test_a_dry_run_at_toy_shapes_on_the_cpu(tmp_path: Path) -> None:
    run = _run(tmp_path, "--device", "cpu", "--tiny", "--llms", "qwen15-0p5b,qwen15-7b", "--visual-tokens", "1,144",
               "--steps", "1", "--batch", "2", "--text-tokens", "8", "--fsdp-v", "16", timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    out = json.loads((tmp_path / "g.json").read_text())
    assert [(r["llm"], r["V"]) for r in out["rows"]] == [("qwen15-0p5b", 1), ("qwen15-0p5b", 144), ("qwen15-7b", 1), ("qwen15-7b", 144)]
    assert all(r["tokens_per_s"] > 0 and r["prefill_ms"] > 0 and r["mfu"] is None for r in out["rows"])  # no GPU peak on a CPU
    fsdp = out["fsdp"]
    assert fsdp["ranks"] == 2 and fsdp["mode"] == "fsdp" and math.isfinite(fsdp["loss"]) and fsdp["measured_gb"] > 0
    assert fsdp["estimate"]["device"] == "cpu" and fsdp["estimate"]["mode"] == "fsdp" and set(fsdp["peaks_gb"]) == {"0", "1"}
    table = (tmp_path / "g.md").read_text()
    assert "| LLM | N | V | batch | tokens/s |" in table and "under FSDP over 2 ranks" in table and "| qwen15-7b |" in table
