"""The HF train and eval bodies end to end on tiny models: stage 1 -> stage 2 -> eval through JobContext.

A tiny byte-level BPE tokenizer with a ChatML template, a tiny Qwen2 and a tiny
CLIP are written with ``save_pretrained`` into tmp dirs; images, LLaVA JSON and
POPE / TextVQA fixtures in their release formats are generated. Nothing downloads.
Run: ``.venv/bin/pytest tests/test_hf_jobs.py -q``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import (bench_eval_spec, bench_eval_yaml, llava_train_yaml, run_paper_cli, save_tiny_clip, save_tiny_qwen,
                     save_tiny_tokenizer, tiny_hf_parts, write_llava_data, write_pope_textvqa)
from sweep.evals.benchmarks.pope import pope_says_yes
from sweep.jobs import hf_eval, hf_train
from sweep.jobs.context import JobContext, Preempted
from sweep.specs.jobs import HFTrainSpec
from sweep.specs.train import LlavaStage

pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_jobs")
    torch.manual_seed(0)
    llm = root / "qwen"
    save_tiny_qwen(llm, save_tiny_tokenizer(llm))
    clip = save_tiny_clip(root / "clip")
    data = write_llava_data(root / "llava")

    ev = write_pope_textvqa(root / "eval")
    return {"llm": llm, "clip": clip, "data": data, "eval": ev}


def _stage(name: str, trainable: str, lr: float, epochs: int) -> LlavaStage:
    # Built directly (not parsed): lr 0 is refused in a config, but this test wants an exact no-op stage.
    return LlavaStage(name=name, data=name, epochs=epochs, global_batch_size=4, micro_batch_size=2, lr=lr,  # type: ignore[arg-type]
                      warmup=0.0, schedule="constant", trainable=trainable, checkpoint_every=0, log_every=1,  # type: ignore[arg-type]
                      max_length=64)


def _train_spec(tiny: dict[str, Path], stage: LlavaStage, index: int) -> HFTrainSpec:
    return HFTrainSpec(stage=stage, stage_index=index, **tiny_hf_parts(tiny))


def _ctx(kind: str, spec: Any, workdir: Path, upstream: dict[str, Path], log: list, stop: Callable[[], bool] = lambda: False) -> JobContext:
    return JobContext(job_id=workdir.name, kind=kind, spec=spec, workdir=workdir, upstream=upstream,
                      log_metrics=lambda m, step=None: log.append((step, dict(m))), stop_requested=stop)


def test_stage1_stage2_eval(tiny: dict[str, Path], tmp_path: Path) -> None:
    s1_dir, s2_dir, ev_dir = tmp_path / "s1", tmp_path / "s2", tmp_path / "ev"
    s1 = _train_spec(tiny, _stage("stage1", "connector", 5e-2, 10), 0)
    log: list = []
    # Preempted after step 3: a checkpoint is left and the rerun resumes from it.
    with pytest.raises(Preempted):
        hf_train.run(_ctx("hf_train", s1, s1_dir, {}, log, stop=lambda: len(log) >= 3))
    assert sorted(p.name for p in (s1_dir / "ckpt").glob("step_*.pt")) == ["step_00000003.pt"]
    m1 = hf_train.run(_ctx("hf_train", s1, s1_dir, {}, log))
    losses = [m["train/loss"] for _, m in log]
    assert [s for s, _ in log] == list(range(1, 11)) and m1["train/resumed_from_step"] == 3.0
    assert m1["train/steps"] == 10.0 and m1["train/tokens_per_s"] > 0
    # Only the projector learns (the random LLM is frozen), so the drop is modest but clear; the run is seeded.
    assert losses[-1] < losses[0] - 0.1 and m1["train/loss_final"] == pytest.approx(losses[-1])
    w1 = torch.load(s1_dir / "model.pt", weights_only=True)
    assert w1["llm"] is None and set(w1["connector"]) == {"projector.0.weight", "projector.0.bias", "projector.2.weight", "projector.2.bias"}

    # lr 0: stage 2 must end with exactly stage 1's connector, and it saves the (now trained) LLM.
    s2 = _train_spec(tiny, _stage("stage2", "all", 0.0, 1), 1)
    m2 = hf_train.run(_ctx("hf_train", s2, s2_dir, {"train": s1_dir}, []))
    w2 = torch.load(s2_dir / "model.pt", weights_only=True)
    assert m2["train/steps"] == 2.0 and w2["llm"] is not None
    for k, v in w1["connector"].items():
        torch.testing.assert_close(w2["connector"][k], v)

    conf = {"kind": "benchmarks", "root": str(tiny["eval"]), "families": {"reasoning": ["pope"], "ocr": ["textvqa"]},
            "benchmarks": {"pope": {"categories": ["random"]}}, "max_items": 3, "batch_size": 2, "max_new_tokens": 4}
    ev = bench_eval_spec(tiny_hf_parts(tiny), conf)
    m = hf_eval.run(_ctx("bench_eval", ev, ev_dir, {"train": s2_dir}, []))
    preds = [json.loads(line) for line in (ev_dir / "predictions" / "pope.jsonl").read_text().splitlines()]
    gold = {"random/1": True, "random/2": False, "random/3": True}
    assert [p["id"] for p in preds] == list(gold)
    expected = sum(pope_says_yes(p["prediction"]) == gold[p["id"]] for p in preds) / 3
    assert 0.0 <= m["bench/pope/score"] <= 1.0 and m["bench/pope/score"] == pytest.approx(expected)
    assert m["bench/pope/n"] == 3.0 and "bench/pope/random/accuracy" in m and m["bench/textvqa/n"] == 3.0
    assert m["error/reasoning"] == pytest.approx(1 - m["bench/pope/score"])
    assert m["error/ocr"] == pytest.approx(1 - m["bench/textvqa/score"])
    assert m["V"] == 1.0 and m["Q"] > 5 and m["N"] > 0 and m["latency/prefill_ms"] > 0
    assert m["questions/reasoning"] == m["bench/pope/n"] and m["questions/ocr"] == m["bench/textvqa/n"]  # the fitter's noise
    assert m["flops/inference"] == pytest.approx(2 * m["N"] * (m["Q"] + 1))


TRAIN_YAML = llava_train_yaml(epochs=1, micro_batch_size=2, lrs=(1.0e-2, 1.0e-4), max_length=(64, 64))
EVAL_YAML = bench_eval_yaml(batch_size=2, max_new_tokens=3)


def test_paper_grid_cli_runs_the_hf_jobs(tiny: dict[str, Path], tmp_path: Path) -> None:
    """``python -m sweep +grid=paper`` with the catalogue pointed at the tiny models: stage 1, stage 2, eval in MLflow."""
    jobs = run_paper_cli(tmp_path, tiny, TRAIN_YAML, EVAL_YAML)
    assert sorted(jobs) == ["eval", "train"] and len(jobs["train"]) == 2 and len(jobs["eval"]) == 1
    m = jobs["eval"][0].data.metrics
    assert 0.0 <= m["bench/pope/score"] <= 1.0 and m["error/reasoning"] == pytest.approx(1 - m["bench/pope/score"])
    assert m["V"] == 1.0 and m["flops/inference"] == pytest.approx(2 * m["N"] * (m["Q"] + 1), rel=1e-6)


@pytest.mark.slow
def test_paper_grid_cli_runs_each_job_on_two_ranks(tiny: dict[str, Path], tmp_path: Path) -> None:
    """``+resources.gpu4.tasks_per_node=2``: every job of the cell runs as two gloo ranks through the local launcher;
    stage 1 with DDP, stage 2 sharded with FSDP (parallel: auto), eval dealt over both; one MLflow run per job."""
    jobs = run_paper_cli(tmp_path, tiny, TRAIN_YAML, EVAL_YAML, extra=["+resources.gpu4.tasks_per_node=2"])
    assert sorted(jobs) == ["eval", "train"] and len(jobs["train"]) == 2 and len(jobs["eval"]) == 1
    by_stage = {r.data.params["stage.name"]: r.data.metrics for r in jobs["train"]}
    assert by_stage["stage1"]["train/ranks"] == by_stage["stage2"]["train/ranks"] == 2
    assert by_stage["stage1"]["train/fsdp"] == 0 and by_stage["stage2"]["train/fsdp"] == 1
    m = jobs["eval"][0].data.metrics
    assert m["eval/questions"] == 4 and 0.0 <= m["bench/pope/score"] <= 1.0  # max_items 2 x 2 benchmarks, all answered


def test_a_global_batch_the_ranks_cannot_share_is_refused_before_anything_runs(tiny: dict[str, Path], tmp_path: Path) -> None:
    run = run_paper_cli(tmp_path, tiny, TRAIN_YAML, EVAL_YAML, extra=["+resources.gpu4.tasks_per_node=3"], expect_rc=2)
    assert "train.stages.0.global_batch_size" in run.stderr and "multiple of 3" in run.stderr
    assert not (tmp_path / "out" / "jobs").exists()


COMPRESSORS = ["avgpool", "tokenpacker", "quecc", "resampler", "pixelshuffle"]


def _stage2_batch(tiny: dict[str, Path], compressor: str) -> tuple[Any, list[Any], dict[str, Any]]:
    """The tiny HF VLM with ``compressor`` (every weight trainable) and one stage-2 batch of the tiny data."""
    from sweep.data.llava import LlavaDataset
    from sweep.models.hf_vlm import build_hf_vlm

    parts = tiny_hf_parts(tiny, compressor=compressor)
    torch.manual_seed(0)
    vlm = build_hf_vlm(parts["llm"], parts["compressor"], parts["vision"], 1)
    params = vlm.set_trainable("all")
    ds = LlavaDataset(tiny["data"] / "stage2.json", tiny["data"] / "images", vlm.tokenizer, style="chat",
                      max_length=64, visual_tokens=vlm.visual_tokens)
    return vlm, params, ds.collator()([ds[i] for i in range(len(ds))])


@pytest.mark.parametrize("name", COMPRESSORS)
def test_every_compressor_trains_and_answers_inside_the_hf_vlm(tiny: dict[str, Path], name: str) -> None:
    """The catalogue entry (conf/compressor/<name>.yaml) on CLIP's multi-level features into a Qwen2 via
    inputs_embeds: a stage-2 batch (images and a text-only sample) trains every connector weight, and greedy
    generation answers. QueCC's visual tokens depend on the question."""
    from sweep.models.hf_vlm import _prompt_ids, prompt_ids

    vlm, params, batch = _stage2_batch(tiny, name)
    assert sum(img is None for img in batch["images"]) == 1  # the text-only sample rides along
    loss = vlm(batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    connector = [(n, p) for n, p in vlm.named_parameters() if n.startswith(("compressor.", "projector.")) and p.requires_grad]
    assert connector and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in connector), \
        [n for n, p in connector if p.grad is None or p.grad.abs().sum() == 0]
    assert all(p.grad is not None for p in params if p.requires_grad and p.dim() > 1 and p in set(vlm.llm.parameters()))

    vlm.eval()
    image = batch["images"][0]
    ids = prompt_ids(vlm.tokenizer, "Is there a square in the image?", True)
    with torch.no_grad():
        answer = vlm.generate([ids], [image], max_new_tokens=3)
    assert len(answer) == 1 and isinstance(answer[0], str)
    if name == "quecc":  # the question is part of what the visual tokens see
        other = prompt_ids(vlm.tokenizer, "a red square", True)
        with torch.no_grad():
            a, b = (vlm.visual([image], [_prompt_ids(q, None)]) for q in (ids, other))
        assert not torch.allclose(a, b)


def test_a_micro_batch_whose_answers_were_cut_off_has_a_zero_loss(tiny: dict[str, Path]) -> None:
    """max_length can cut every answer token of a micro batch (many visual tokens, a long prompt): HF's mean over
    no tokens is NaN, which would poison the weights; it is a zero that still reaches every trainable weight."""
    vlm, params, batch = _stage2_batch(tiny, "avgpool")
    batch["labels"][:] = -100  # as if max_length had cut every answer
    loss = vlm(batch).loss
    assert float(loss) == 0.0
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) == 0.0 for p in params if p.requires_grad)


def test_the_loader_benchmark_runs_the_real_data_path(tmp_path: Path) -> None:
    """``make bench``'s loader script end to end on a few images (it once broke on the typed stage)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "bench_loader.py"), "--samples", "8", "--max-workers", "1",
                          "--step-ms", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert rows and all(float(r[2]) > 0 for r in rows), out.stdout
