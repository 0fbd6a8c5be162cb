"""The paper path at the real shapes of its smallest cell, on the CPU: Qwen-1.5-0.5B and CLIP ViT-L/14-336.

The tiny-model tests prove the code; this one proves the sizes. Random weights with the
exact architectures are written once per session with ``save_pretrained`` (nothing is
downloaded): Qwen-1.5-0.5B (hidden 1024, 24 layers, 16 heads, MLP 2816, the real
151936-entry vocabulary, tied embeddings; the tokenizer is a small byte-level BPE, so the
embedding is larger than the tokenizer) and CLIP ViT-L/14 at 336 px (24 layers, width 1024,
16 heads, 14 px patches: 577 tokens; the penultimate layer and layers 12, 16, 22, 23).
``python -m sweep +grid=paper`` then runs TokenPacker cells at V = 1 and V = 144, each as
two gloo ranks: stage 1 (DDP) and stage 2 (FSDP, gradient checkpointing), two optimizer
steps each with two micro batches per rank, then the eval of two records of POPE and of
TextVQA. Every sample is cut at ``max_length`` tokens, so each micro batch is exactly the
longest one the plan's memory estimate assumes.

Checks: everything finishes with finite losses; stage 2 ran sharded; a stage-1 job whose
``done.json`` is lost after its step-1 checkpoint resumes from it and ends at the very same
weights; and each job's measured peak memory over the steps (its largest rank's) (``sweep.jobs.peakmem``: the
RSS high-water mark above the process's RSS before the model was built) is within
``[LOW, HIGH]`` times what ``python -m sweep plan --json`` estimated for the job on the CPU.

Why a tolerance, and why this one: on the CPU the estimate counts the same fp32 tensors the
job allocates (no bf16 autocast, no CUDA caching allocator), but the RSS also holds what the
estimate leaves out on purpose: the model code transformers imports lazily after the
baseline (~0.1 GiB), small tensors' heap fragments, oneDNN's scratch. That only adds, and
adds about 0.3 GiB at these sizes: +10% on a 3.4 GiB stage-1 rank, +4% on a 6 GiB stage-2
rank in a 4-layer trial. So the measured peak may exceed the estimate by up to 20% and fall
short of it by at most 10% (a term counted that the job does not hold). The test runs with
``MALLOC_MMAP_THRESHOLD_`` fixed, so that freed large tensors go back to the system and the
high-water mark follows live tensors rather than malloc's reuse pattern.

Takes about 10-14 minutes on 2 idle cores (a quarter of the whole suite), so ``make test`` leaves it
out (marker ``real_shapes``); the stage-2 ranks hold about 9 GiB each, so it skips when less than
about 19 GiB is free (a shared machine) rather than let the OOM killer end a rank. Run:
``.venv/bin/pytest -m real_shapes tests/test_real_shapes.py -q`` or ``make test-real-shapes``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import (COLORS, bench_eval_yaml, conf_with_tiny_paths, llava_train_yaml, paper_cli_args, run_paper_cli,
                     save_tiny_tokenizer, sweep_cli, write_pope_textvqa)

pytestmark = [pytest.mark.slow, pytest.mark.real_shapes, pytest.mark.usefixtures("hf_offline")]

MAX_LENGTH = 152  # V = 144 visual tokens + a few text tokens; V = 1 is text up to the same length
MAX_LENGTH_CHAT = 200  # stage 2's chat template takes more of it: at 152 no answer token of a V = 144 sample is left
LOW, HIGH = 0.9, 1.2  # measured / estimated for each train job (its largest rank), on the CPU; see the docstring
QWEN_05B = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24, "num_attention_heads": 16,
            "num_key_value_heads": 16, "vocab_size": 151936, "tie_word_embeddings": True}
CLIP_L336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
             "image_size": 336, "patch_size": 14}

TRAIN_YAML = llava_train_yaml(epochs=4, micro_batch_size=1, lrs=(1.0e-3, 2.0e-5), max_length=(MAX_LENGTH, MAX_LENGTH_CHAT),
                              checkpoint_every=1, stage2_extra=", gradient_checkpointing: true")
EVAL_YAML = bench_eval_yaml(batch_size=1, max_new_tokens=2)
# One job at a time (each is two ranks on this 2-core machine, and two stage-2 jobs would need ~30 GB).
OVERRIDES = ["grid.visual_tokens=[1,144]", "grid.compressor=[tokenpacker]", "vision.feature_layers=[12,16,22,23]",
             "+resources.gpu4.tasks_per_node=2", "launcher.workers=1"]
# Freed tensors of any size go back to the system at once (glibc otherwise raises its mmap threshold
# up to 32 MB after the first frees and keeps such blocks), so the RSS follows the live tensors.
ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def _long_text(words: int) -> str:
    return " ".join(f"a {c} square" for c in list(COLORS) * words)


def write_models(root: Path) -> None:
    """Qwen-1.5-0.5B (with the small tokenizer) and CLIP ViT-L/14-336 with random weights, under ``root``."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tok = save_tiny_tokenizer(root / "qwen15-0p5b")
    config = Qwen2Config(**QWEN_05B, max_position_embeddings=32768, rope_theta=1e6, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(root / "qwen15-0p5b")
    CLIPVisionModel(CLIPVisionConfig(**CLIP_L336)).save_pretrained(root / "clip-vit-l-336")
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(root / "clip-vit-l-336")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two models (written by a child process, so this one stays small), LLaVA data whose samples all
    reach max_length, eval data."""
    from PIL import Image

    root = tmp_path_factory.mktemp("real_shapes")
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_real_shapes import write_models; " \
           f"from pathlib import Path; write_models(Path({str(root)!r}))"
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]

    data = root / "llava"
    (data / "images").mkdir(parents=True)
    for c, rgb in list(COLORS.items())[:2]:
        Image.new("RGB", (64, 64), rgb).save(data / "images" / f"{c}.png")
    # Two records per stage, each longer than MAX_LENGTH tokens: every micro batch is cut to the same length. The
    # prompts are short (the tokenizer is byte-level), so at V = 144 some answer tokens survive the cut.
    caps = [{"id": c, "image": f"{c}.png", "conversations": [{"from": "human", "value": "<image>\nDescribe."},
                                                             {"from": "gpt", "value": _long_text(20)}]} for c in ("red", "blue")]
    chat = [{"id": f"q{c}", "image": f"{c}.png", "conversations": [
        {"from": "human", "value": "<image>\nSquare?"}, {"from": "gpt", "value": _long_text(20)}]}
        for c in ("red", "blue")]
    (data / "stage1.json").write_text(json.dumps(caps))
    (data / "stage2.json").write_text(json.dumps(chat))
    return {"llm": root / "qwen15-0p5b", "clip": root / "clip-vit-l-336", "data": data,
            "eval": write_pope_textvqa(root / "eval")}


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) / 2**20
    return float("inf")


def _plan_rows(tmp_path: Path, real: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """``python -m sweep plan --json`` for the same config as the run: each job's memory estimate, by job id."""
    conf = conf_with_tiny_paths(tmp_path / "plan", real)
    env = {"SWEEP_ROOT": str(tmp_path / "out"), "SWEEP_CONFIG_DIR": str(conf), "HF_HUB_OFFLINE": "1",
           "SWEEP_DATA": str(real["data"]), "SWEEP_EVAL_DATA": str(real["eval"])}
    (conf / "train" / "paper.yaml").write_text(TRAIN_YAML)
    (conf / "eval" / "paper.yaml").write_text(EVAL_YAML)
    args = ["plan", "--json", *paper_cli_args(OVERRIDES)]  # the very overrides of the run: the same job ids
    out = sweep_cli(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return {row["id"]: row for row in map(json.loads, out.stdout.splitlines())}


@pytest.mark.timeout(3600)
def test_the_smallest_paper_cell_at_real_shapes(real: dict[str, Path], tmp_path: Path) -> None:
    rows = _plan_rows(tmp_path, real)
    # Two ranks at the plan's estimate, plus the processes' own RSS: on a machine others share, skip rather than
    # have the kernel's OOM killer end a rank halfway (or someone else's process).
    need = max(2 * r["memory"]["gb"] for r in rows.values()) + 1.5  # + the ranks' own RSS and the launcher's
    if _available_gib() < need:
        pytest.skip(f"the real-shape run needs about {need:.0f} GiB of free memory; {_available_gib():.1f} GiB is available")
    jobs = run_paper_cli(tmp_path, real, TRAIN_YAML, EVAL_YAML, extra=OVERRIDES, timeout=2400, env_extra=ENV)
    assert sorted(jobs) == ["eval", "train"] and len(jobs["train"]) == 4 and len(jobs["eval"]) == 2
    compared: list[tuple[str, float, float]] = []  # (what, measured GiB, estimated GiB)
    for run in jobs["train"]:
        m, stage = run.data.metrics, run.data.params["stage.name"]
        # > 0: some answer tokens survived the cut at max_length, so the loss is a real one
        assert math.isfinite(m["train/loss_final"]) and m["train/loss_final"] > 0, m
        assert m["train/steps"] == 2 and m["train/ranks"] == 2, m
        assert m["train/fsdp"] == float(stage == "stage2")
        est = rows[run.data.tags["sweep_job_id"]]["memory"]
        assert est["device"] == "cpu" and est["mode"] == ("fsdp" if stage == "stage2" else "ddp")
        compared += [(f"{run.data.tags['sweep_cell']} {stage} rank {r}", m[f"train/peak_mem_gb/rank{r}"], est["gb"])
                     for r in (0, 1)]
    evals = []
    for run in jobs["eval"]:
        m = run.data.metrics
        assert m["eval/questions"] == 4 and 0.0 <= m["bench/pope/score"] <= 1.0 and math.isfinite(m["error/ocr"])
        est = rows[run.data.tags["sweep_job_id"]]["memory"]
        evals.append((f"{run.data.tags['sweep_cell']} eval", m["eval/peak_mem_gb"], est["gb"]))
    lines = [f"{what}: measured {got:.2f} GiB, estimated {want:.2f} GiB ({got / want - 1:+.1%})" for what, got, want in compared + evals]
    print("\n" + "\n".join(lines))
    # A job needs GPUs as large as its largest rank's peak, which is what the plan refuses on: each job's largest
    # rank against the estimate. (Rank 0 of the V=1 stage-2 job reads about half of rank 1, 4.4 against 9.2 GiB, in
    # every run so far, while at V=144 both ranks read 8.5-9.2; not yet explained, so the lines above show every rank.)
    per_job: dict[str, list[tuple[float, float]]] = {}
    for what, got, want in compared:
        per_job.setdefault(what.rsplit(" rank ", 1)[0], []).append((got, want))
    assert all(LOW <= max(g for g, _ in pairs) / pairs[0][1] <= HIGH for pairs in per_job.values()), "\n".join(lines)

    # The V=144 stage-1 job loses its done.json after its step-1 checkpoint: the rerun resumes and ends the same.
    store = tmp_path / "out" / "jobs"
    job = next(d for d in store.iterdir() if d.name.startswith("hf-train-qwen15-0p5b-v144-tokenpacker-s0-stage1"))
    assert [p.name for p in (job / "ckpt").glob("step_*.pt")] == ["step_00000001.pt"]
    before = torch.load(job / "model.pt", weights_only=True)["connector"]
    (job / "done.json").unlink()
    shutil.move(job / "model.pt", tmp_path / "model-before.pt")
    again = run_paper_cli(tmp_path, real, TRAIN_YAML, EVAL_YAML, extra=OVERRIDES, timeout=900, env_extra=ENV)
    rerun = next(r for r in again["train"] if r.data.tags["sweep_job_id"] == job.name)
    assert rerun.data.metrics["train/resumed_from_step"] == 1.0
    after = torch.load(job / "model.pt", weights_only=True)["connector"]
    assert set(after) == set(before)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=1e-5, atol=1e-6, msg=f"{k}: the resumed run differs")
