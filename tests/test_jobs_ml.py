"""The features, train and eval job bodies on a tiny configuration (seconds each).

The jobs get a ``JobContext`` built by hand with temp folders, as the runner would
build it; the features job runs once per module and feeds the other tests.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from sweep.data.synthetic import QTYPES
from sweep.jobs import evaluate, features, train
from sweep.jobs.context import JobContext, Preempted
from sweep.specs.data import SyntheticData, SyntheticEval
from sweep.specs.jobs import CachedTrainSpec, Cell, FeaturesSpec, SyntheticEvalSpec
from sweep.specs.models import CompressorEntry, MiniLLM, MiniVision
from sweep.specs.train import CachedStage

CONF = Path(__file__).resolve().parents[1] / "conf"


def _conf(path: str) -> dict:
    return yaml.safe_load((CONF / path).read_text())


VISION = MiniVision.parse({**_conf("vision/mini.yaml"), "image_size": 32, "pretrain": {"steps": 30, "batch_size": 64, "lr": 3e-3}}, "vision")
DATA = SyntheticData.parse({**_conf("data/synthetic.yaml"), "image_size": 32, "train_images": 300, "test_images": 100}, "data")
STAGE = CachedStage.parse({**_conf("train/mini.yaml")["stages"][0], "steps": 20, "batch_size": 32, "checkpoint_every": 10,
                           "log_every": 5}, "train.stages.0")
LLM = MiniLLM.parse(_conf("llm/xs.yaml")["xs"], "llm.xs")
AVGPOOL = CompressorEntry.parse(_conf("compressor/avgpool.yaml")["avgpool"], "compressor.avgpool")
CELL = Cell(llm="xs", visual_tokens=4, compressor="avgpool", seed=0)


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("features")
    ctx = JobContext("f", "features", FeaturesSpec(vision=VISION, data=DATA), workdir)
    metrics = features.run(ctx)
    assert 0.0 <= metrics["vision/patch_acc"] <= 1.0
    assert metrics["vision/seconds"] > 0 and metrics["data/train_questions"] > 300
    return workdir


def _train_ctx(workdir: Path, features_dir: Path, stage: CachedStage | None = None, stage_index: int = 0, **kw) -> JobContext:
    spec = CachedTrainSpec(stage=stage or STAGE, stage_index=stage_index, cell=CELL, llm=LLM, compressor=AVGPOOL)
    workdir.mkdir(parents=True, exist_ok=True)
    return JobContext("t", "train", spec, workdir, upstream={"features": features_dir}, **kw)


def test_features_job_writes_the_cache(features_dir: Path) -> None:
    from sweep.jobs import common

    cache, meta = common.load_cache(features_dir, "train")
    assert cache.feats.dtype == torch.float16 and cache.feats.shape == (300, 64, VISION.dim)
    assert cache.levels.shape == (300, 64, VISION.dim * len(VISION.feature_layers))
    assert meta["level_dim"] == cache.levels.shape[-1] and meta["grid"] == 8
    assert len(cache) == len(cache.a_ids) == len(cache.qtype)
    assert (features_dir / common.TOWER_FILE).exists()


def test_a_batch_holds_its_questions_images_and_levels_only_when_asked(features_dir: Path) -> None:
    from sweep.jobs import common

    cache, meta = common.load_cache(features_dir, "train")
    idx = torch.tensor([5, 0, 17, 5, len(cache) - 1])
    batch = train.make_batch(cache, idx, int(meta["pad"]))
    rows = cache.image_index[idx]
    assert torch.equal(batch["feats"], torch.stack([cache.feats[int(r)] for r in rows]))
    assert torch.equal(batch["levels"], torch.stack([cache.levels[int(r)] for r in rows]))
    assert torch.equal(batch["a_ids"][:, 0], cache.a_ids[idx, 0])
    without = train.make_batch(cache, idx, int(meta["pad"]), levels=False)
    assert without["levels"] is None and torch.equal(without["feats"], batch["feats"])


def test_training_lowers_the_loss(tmp_path: Path, features_dir: Path) -> None:
    logged: list[tuple[int, float]] = []
    stage = replace(STAGE, steps=60, log_every=10, lr=3e-3)
    ctx = _train_ctx(tmp_path, features_dir, stage, log_metrics=lambda m, s: logged.append((s, m["train/loss"])))
    metrics = train.run(ctx)
    losses = [v for _, v in logged]
    assert [s for s, _ in logged] == [10, 20, 30, 40, 50, 60]
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics["train/loss_final"] == pytest.approx(losses[-1])
    assert metrics["train/steps_per_s"] > 0 and metrics["train/resumed_from_step"] == 0
    assert (tmp_path / "model.pt").exists()


def test_stopped_run_resumes_and_matches_an_uninterrupted_one(tmp_path: Path, features_dir: Path) -> None:
    whole = train.run(_train_ctx(tmp_path / "whole", features_dir))

    calls = {"n": 0}

    def stop_at_7() -> bool:
        calls["n"] += 1
        return calls["n"] == 7  # asked once per step: stop after step 7

    with pytest.raises(Preempted):
        train.run(_train_ctx(tmp_path / "split", features_dir, stop_requested=stop_at_7))
    assert not (tmp_path / "split" / "model.pt").exists()
    resumed = train.run(_train_ctx(tmp_path / "split", features_dir, stop_requested=stop_at_7))
    assert resumed["train/resumed_from_step"] == 7
    assert resumed["train/loss_final"] == pytest.approx(whole["train/loss_final"], abs=1e-6)
    a = torch.load(tmp_path / "whole" / "model.pt")["state_dict"]
    b = torch.load(tmp_path / "split" / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_second_stage_starts_from_the_first(tmp_path: Path, features_dir: Path) -> None:
    train.run(_train_ctx(tmp_path / "s1", features_dir))
    stage2 = replace(STAGE, name="stage2", steps=5, trainable="connector")
    ctx = _train_ctx(tmp_path / "s2", features_dir, stage2, stage_index=1)
    ctx.upstream = {"features": features_dir, "train": tmp_path / "s1"}
    metrics = train.run(ctx)
    first = torch.load(tmp_path / "s1" / "model.pt")["state_dict"]
    second = torch.load(tmp_path / "s2" / "model.pt")["state_dict"]
    llm_keys = [k for k in first if k.startswith("llm.")]
    assert all(torch.equal(first[k], second[k]) for k in llm_keys)  # frozen LLM kept stage 1's weights
    assert metrics["train/params_trainable"] < sum(v.numel() for v in first.values())


def test_a_cell_starts_from_its_pretrained_llm_with_a_fresh_connector(tmp_path: Path, features_dir: Path) -> None:
    train.run(_train_ctx(tmp_path / "pretrain", features_dir, replace(STAGE, name="llm_pretrain-xs-s0", steps=60, lr=3e-3)))
    logged: list[float] = []
    align = replace(STAGE, name="align", steps=60, lr=3e-3, log_every=10, trainable="connector")
    ctx = _train_ctx(tmp_path / "align", features_dir, align, log_metrics=lambda m, s: logged.append(m["train/loss"]))
    ctx.upstream = {"features": features_dir, "llm": tmp_path / "pretrain"}
    train.run(ctx)
    pretrained = torch.load(tmp_path / "pretrain" / "model.pt")["state_dict"]
    aligned = torch.load(tmp_path / "align" / "model.pt")["state_dict"]
    llm_keys = [k for k in pretrained if k.startswith("llm.")]
    assert llm_keys and all(torch.equal(pretrained[k], aligned[k]) for k in llm_keys)  # the pretrained LLM, kept frozen
    connector = [k for k in aligned if not k.startswith("llm.")]
    assert connector and all(not torch.equal(pretrained[k], aligned[k]) for k in connector)  # its own connector, trained
    assert max(logged[-3:]) < 0.95 * logged[0], logged  # which learns to talk to the frozen LLM


def test_eval_reports_the_fitters_metrics(tmp_path: Path, features_dir: Path) -> None:
    train.run(_train_ctx(tmp_path / "train", features_dir))
    conf = SyntheticEval.parse({**_conf("eval/mini.yaml"), "max_questions": 80}, "eval")
    spec = SyntheticEvalSpec(eval=conf, cell=CELL, llm=LLM, compressor=AVGPOOL)
    upstream = {"features": features_dir, "train": tmp_path / "train"}
    (tmp_path / "eval").mkdir()
    m = evaluate.run(JobContext("e", "eval", spec, tmp_path / "eval", upstream=upstream))
    for family in ("reasoning", "ocr"):
        assert 0.0 <= m[f"error/{family}"] <= 1.0
        accs = [v for k, v in m.items() if k.startswith(f"acc/{family}/")]
        assert len(accs) >= 2 and m[f"error/{family}"] == pytest.approx(1 - sum(accs) / len(accs))
    assert m["V"] == 4 and 0 < m["N"] < m["N_total"] and m["Q"] > 1
    assert m["flops/inference"] == pytest.approx(2 * m["N"] * (m["Q"] + m["V"]))
    assert m["flops/llm_prefill"] >= m["flops/inference"] and m["flops/question_pass"] == 0
    assert m["flops/total"] > m["flops/vision"] > 0
    assert m["eval/questions"] == 80 // len(QTYPES) * len(QTYPES) and m["eval/questions_per_s"] > 0
