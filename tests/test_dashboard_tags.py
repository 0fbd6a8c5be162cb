"""What the MLflow dashboard reads, in a real SQLite store: the experiment's kind and description,
the source tags, readable run names and each job's dataset inputs (the synthetic set by its spec,
a LLaVA JSON by its path and content digest, benchmarks by folder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import Recorder, bench_eval_spec, make_runtime, probe_plan, tiny_hf_parts


def _synthetic() -> dict:
    from sweep.specs.data import SyntheticData

    return SyntheticData.parse({"train_images": 300, "test_images": 100, "image_size": 32}, "data").to_dict()


def test_synthetic_set_is_named_by_its_spec(tmp_path: Path) -> None:
    from sweep.inputs import EVALUATION, TRAINING, job_datasets
    from sweep.specs.data import SyntheticData
    from sweep.cli import load
    from sweep.specs.jobs import CachedTrainSpec, FeaturesSpec, SyntheticEvalSpec

    data = SyntheticData.parse(_synthetic(), "data")
    cfg, plan = load(["grid.llm=[xs]", "grid.visual_tokens=[1]"])
    feats = next(j for j in plan if j.kind == "features")
    (ref,) = job_datasets(feats.spec, {})
    assert (ref.name, ref.source_type, ref.context) == ("synthetic-vqa", "code", TRAINING)
    assert ref.source["spec"] == cfg.data.to_dict() and ref.profile["train_images"] == cfg.data.train_images
    other = FeaturesSpec(vision=feats.spec.vision, data=data)
    assert job_datasets(other, {})[0].digest != ref.digest  # another set, another digest

    # Train and eval jobs read the set through the features job's cache: its spec.json names it.
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "spec.json").write_text(json.dumps({"kind": "features", **feats.spec.to_dict()}))
    train = next(j for j in plan if j.kind == "train")
    ev = next(j for j in plan if j.kind == "eval")
    assert isinstance(train.spec, CachedTrainSpec) and isinstance(ev.spec, SyntheticEvalSpec)
    (t,) = job_datasets(train.spec, {"features": tmp_path / "feats"})
    (e,) = job_datasets(ev.spec, {"features": tmp_path / "feats", "train": tmp_path})
    assert (t.digest, t.context, e.digest, e.context) == (ref.digest, TRAINING, ref.digest, EVALUATION)
    assert job_datasets(train.spec, {"features": tmp_path / "missing"}) == []


def test_llava_json_by_path_and_content_digest_and_benchmarks_by_folder(tmp_path: Path) -> None:
    from sweep.inputs import job_datasets
    from sweep.specs.jobs import HFTrainSpec
    from sweep.specs.train import LlavaStage

    data = tmp_path / "data"
    data.mkdir()
    (data / "stage1.json").write_text(json.dumps([{"id": "a", "image": "a.png", "conversations": []}]))
    parts = tiny_hf_parts({"llm": tmp_path, "clip": tmp_path, "data": data})
    stage = LlavaStage.parse({"name": "stage1", "data": "stage1", "lr": 1e-3, "global_batch_size": 2,
                              "trainable": "connector"}, "train.stages.0")
    spec = HFTrainSpec(cell=parts["cell"], llm=parts["llm"], compressor=parts["compressor"], vision=parts["vision"],
                       data=parts["data"], stage=stage)
    (ref,) = job_datasets(spec, {})
    want = hashlib.sha256((data / "stage1.json").read_bytes()).hexdigest()[:16]
    assert (ref.name, ref.digest, ref.source, ref.source_type) == ("stage1", want, {"uri": str(data / "stage1.json")}, "local")
    (data / "stage1.json").write_text("[]")  # new bytes, new digest
    assert job_datasets(spec, {})[0].digest != want

    ev = bench_eval_spec(parts, {"kind": "benchmarks", "root": str(tmp_path / "eval"),
                                 "families": {"reasoning": ["pope", "gqa"], "ocr": ["textvqa"]}})
    refs = job_datasets(ev, {})
    assert [r.name for r in refs] == ["pope", "gqa", "textvqa"]
    assert refs[0].source == {"uri": str(tmp_path / "eval" / "pope")} and refs[0].context == "evaluation"


def test_experiment_kind_note_sources_names_and_inputs_in_the_store(tmp_path: Path, mlflow_uri: str) -> None:
    from launchers.inline import InlineLauncher
    from sweep.inputs import synthetic_ref
    from sweep.tracking import EXPERIMENT_KIND, NOTE, TRAINING_KIND, Tracker, source_tags

    rt = make_runtime(tmp_path, mlflow_uri, "dashboard-tags")
    tracker = Tracker(mlflow_uri)
    tracker.describe_experiment(rt.experiment_id, "**grid** xs x V=1")
    tags = tracker.client.get_experiment(rt.experiment_id).tags
    assert tags[EXPERIMENT_KIND] == TRAINING_KIND and tags[NOTE] == "**grid** xs x V=1"

    plan = probe_plan({"one": ((), {})}, name="dashboard-tags")
    InlineLauncher({"name": "inline"}).launch(plan, [j.id for j in plan], rt, Recorder())
    run = tracker._find(rt.experiment_id, sweep_job_id=plan.jobs[0].id)
    assert run.info.run_name == "probe"  # the job's label, not its hash id
    assert run.data.tags["mlflow.source.name"] == "sweep.jobs.probe:run" and run.data.tags["mlflow.source.type"] == "LOCAL"

    ref = synthetic_ref(_synthetic(), "training")
    tracker.log_datasets(run.info.run_id, [ref])
    tracker.log_datasets(run.info.run_id, [ref])  # a retry logs it again: still one input
    inputs = tracker.client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    got = inputs[0]
    assert (got.dataset.name, got.dataset.digest, got.dataset.source_type) == ("synthetic-vqa", ref.digest, "code")
    assert json.loads(got.dataset.source)["spec"]["train_images"] == 300
    assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", "training")]
    assert source_tags("x", "abc-dirty")["mlflow.source.git.commit"] == "abc"
    assert "mlflow.source.git.commit" not in source_tags("x", "unknown")
