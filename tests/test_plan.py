"""Grid expansion, content ids and the DAG, from the real config tree."""

from __future__ import annotations

import pytest

from sweep.cli import load
from sweep.config import with_default_grid
from sweep.errors import SweepError
from sweep.ids import canonical_json, content_hash, job_id


def plan_for(*overrides: str):
    return load(list(overrides))[1]


def test_default_grid_is_mini_and_plus_grid_selects():
    assert with_default_grid([]) == ["+grid=mini"]
    assert with_default_grid(["+grid=paper", "x=1"]) == ["+grid=paper", "x=1"]
    default, explicit = plan_for(), plan_for("+grid=mini")
    assert [j.id for j in default] == [j.id for j in explicit]


def test_mini_grid_expansion():
    plan = plan_for("grid.llm=[xs,s]", "grid.visual_tokens=[1,16]", "grid.seeds=[0,1]")
    assert len(plan.cells) == 2 * 2 * 2
    assert [c.name for c in plan.cells][:2] == ["xs-v1-avgpool-s0", "xs-v1-avgpool-s1"]
    kinds = [j.kind for j in plan]
    assert kinds.count("features") == 1 and kinds.count("train") == 8 and kinds.count("eval") == 8
    assert {j.role for j in plan} == {"features", "train", "eval"}


def test_paper_grid_has_two_stages_and_heldout():
    plan = plan_for("+grid=paper")
    assert len(plan.cells) == 5 * 7  # Qwen-1.5 0.5B..14B x V in {1..576}
    assert {j.kind for j in plan} == {"hf_train", "bench_eval"}  # the planner picks the Hugging Face bodies
    assert {j.role for j in plan} == {"train", "eval"}
    assert sum(j.role == "train" for j in plan) == 2 * len(plan.cells)
    held = {c.llm for c in plan.cells if c.heldout}
    assert held == {"qwen15-14b"}
    assert all(j.gpu_hours > 0 for j in plan)
    big, small = (max(j.gpu_hours for j in plan if j.cell.llm == m and j.role == "train") for m in ("qwen15-7b", "qwen15-0p5b"))
    assert big > 5 * small


def test_dag_order_every_job_after_its_upstream():
    plan = plan_for("+grid=paper")
    seen: set[str] = set()
    for job in plan:
        assert set(job.deps) <= seen, job.id
        seen.add(job.id)
    eval_job = next(j for j in plan if j.role == "eval")
    train2 = plan.get(eval_job.upstream["train"])
    assert train2.spec.stage.name == "stage2"
    assert plan.get(train2.upstream["train"]).spec.stage.name == "stage1"


def test_id_ignores_key_order_and_tracks_semantics():
    a = {"x": 1, "y": {"b": 2, "a": 3}}
    b = {"y": {"a": 3, "b": 2}, "x": 1}
    assert canonical_json(a) == canonical_json(b) and content_hash(a) == content_hash(b)
    assert job_id("train", "c", a, 1, ["u1", "u2"]) == job_id("train", "c", b, 1, ["u2", "u1"])
    assert job_id("train", "c", a, 1, []) != job_id("train", "c", {**a, "x": 2}, 1, [])
    assert job_id("train", "c", a, 1, []) != job_id("train", "c", a, 2, [])  # kind version bump


def test_ids_ignore_launcher_resources_and_paths_but_not_semantics():
    base = {j.kind + (j.cell.name if j.cell else ""): j.id for j in plan_for()}
    same = plan_for("launcher.workers=1", "resources.cpu.mem_gb=99", "sweep.root=/elsewhere", "tracking.uri=sqlite:///x.db")
    assert {j.kind + (j.cell.name if j.cell else ""): j.id for j in same} == base
    changed = {j.kind + (j.cell.name if j.cell else ""): j.id for j in plan_for("train.stages.0.lr=0.001")}
    assert changed["features"] == base["features"]  # upstream of training: unchanged
    assert all(changed[k] != base[k] for k in base if k != "features")  # train and eval: new ids
    upstream_change = {j.kind + (j.cell.name if j.cell else ""): j.id for j in plan_for("data.seed=1")}
    assert all(upstream_change[k] != base[k] for k in base)  # propagates downstream


@pytest.mark.parametrize("override, field", [
    ("grid.llm=[xs,nope]", "grid.llm"),
    ("grid.compressor=[avgpol]", "grid.compressor"),
    ("grid.visual_tokens=[1,5]", "grid.visual_tokens"),
    ("grid.visual_tokens=[]", "grid.visual_tokens"),
    ("grid.visual_tokens=[0]", "grid.visual_tokens"),
    ("grid.seeds=[]", "grid.seeds"),
    ("train.stages.0.steps=0", "train.stages.0.steps"),
    ("train.stages.0.lr=-1", "train.stages.0.lr"),
    ("train.stages.0.batch_size=0", "train.stages.0.batch_size"),
    ("grid.heldout_llm=[l]", "grid.heldout_llm"),
    ("launcher=nosuch", "overrides"),
])
def test_bad_input_names_the_field(override: str, field: str):
    with pytest.raises(SweepError) as err:
        plan_for(override)
    assert err.value.field == field
    assert err.value.fix


def test_unknown_name_suggests_close_match():
    with pytest.raises(SweepError, match="Did you mean xs"):
        plan_for("grid.llm=[xz]")


def test_data_roots_reach_the_jobs_but_not_the_ids():
    a = plan_for("+grid=paper", "data.root=/data/a", "eval.root=/eval/a")
    b = plan_for("+grid=paper", "data.root=/data/b", "eval.root=/eval/b")
    assert [j.id for j in a] == [j.id for j in b]
    train = next(j for j in b if j.role == "train")
    assert train.spec.data.root == "/data/b"
    assert all(r.root.startswith("/eval/b/") for r in next(j for j in b if j.role == "eval").spec.benchmarks)


def test_how_a_stage_is_spread_over_gpus_is_not_part_of_its_id():
    a = plan_for("+grid=paper")
    # Memory per GPU follows (DDP without checkpointing needs far more than 80 GB for the larger LLMs).
    big = [f"resources.{c}.gpu_mem_gb=1000" for c in ("gpu4", "gpu8", "gpu8-141gb")]
    b = plan_for("+grid=paper", "train.stages.1.parallel=ddp", "train.stages.1.gradient_checkpointing=false",
                 "train.stages.1.micro_batch_size=2", "train.stages.1.loader_workers=0", *big)
    c = plan_for("+grid=paper", "train.stages.1.lr=1e-5")
    assert [j.id for j in a] == [j.id for j in b]
    assert next(j for j in b if j.role == "train" and j.spec.stage_index == 1).spec.stage.parallel == "ddp"
    assert [j.id for j in a if j.role == "train" and j.spec.stage_index == 1] != \
           [j.id for j in c if j.role == "train" and j.spec.stage_index == 1]


def test_measured_mfu_from_bench_gpu_replaces_the_assumed_one(tmp_path):
    import json

    bench = tmp_path / "bench_gpu.json"
    bench.write_text(json.dumps({"device": "H100", "rows": [{"llm": "qwen15-0p5b", "V": v, "mfu": m}
                                                            for v, m in ((1, 0.1), (16, 0.175), (144, 0.3))]}))
    assumed, measured = plan_for("+grid=paper"), plan_for("+grid=paper", f"cost.measured={bench}")
    for a, m in zip(assumed, measured):
        hit = a.role == "train" and a.cell.llm == "qwen15-0p5b"
        assert m.mfu_measured == hit
        # median MFU 0.175 = half the assumed 0.35: twice the GPU-hours
        assert m.gpu_hours == pytest.approx(a.gpu_hours * (2.0 if hit else 1.0))


def test_unreadable_bench_file_names_the_field(tmp_path):
    with pytest.raises(SweepError) as err:
        plan_for("+grid=paper", f"cost.measured={tmp_path / 'missing.json'}")
    assert err.value.field == "cost.measured" and "make bench-gpu" in err.value.fix


PRETRAIN = "train.llm_pretrain={steps: 50, batch_size: 16, lr: 1e-3}"


def test_llm_pretraining_is_one_shared_job_per_llm_and_seed():
    grid = ("grid.llm=[xs,s]", "grid.visual_tokens=[1,16]", "grid.compressor=[avgpool,tokenpacker]", "grid.seeds=[0,1]")
    plain, pre = plan_for(*grid), plan_for(*grid, PRETRAIN)
    readers = [j for j in pre if j.stage and j.stage.startswith("llm_pretrain")]
    assert sorted(j.stage for j in readers) == [f"llm_pretrain-{m}-s{s}" for m in ("s", "xs") for s in (0, 1)]
    assert all(j.cell is None and j.upstream.keys() == {"features"} for j in readers)  # shared, like features
    by_id = {j.id: j for j in readers}
    for job in pre:
        if job.role == "train" and job.cell is not None:  # a cell's (only) stage starts from its LLM and seed's pretraining
            reader = by_id[job.upstream["llm"]]
            assert (reader.spec.cell.llm, reader.spec.cell.seed) == (job.cell.llm, job.cell.seed)
            assert reader.spec.cell.compressor == "avgpool" and reader.spec.cell.visual_tokens == 16  # the defaults
            assert [j.id for j in pre].index(reader.id) < [j.id for j in pre].index(job.id)
    # Every cell's training and eval get new ids (they start elsewhere); without it nothing changes.
    assert not {j.id for j in pre if j.cell is not None} & {j.id for j in plain}
    assert [j.id for j in plan_for(*grid, "train.llm_pretrain=null")] == [j.id for j in plain]


@pytest.mark.parametrize("override,field", [
    ("train.llm_pretrain={steps: 50, batch_size: 16, lr: 1e-3, compressor: avgpol}", "train.llm_pretrain.compressor"),
    ("train.llm_pretrain={steps: 50, batch_size: 16, lr: 1e-3, visual_tokens: 5}", "train.llm_pretrain.visual_tokens"),
    ("train.llm_pretrain={steps: 0, batch_size: 16, lr: 1e-3}", "train.llm_pretrain.steps"),
    ("train.llm_pretrain={batch_size: 16, lr: 1e-3}", "train.llm_pretrain.steps"),
])
def test_bad_llm_pretraining_names_the_field(override: str, field: str):
    with pytest.raises(SweepError) as err:
        plan_for(override)
    assert err.value.field == field and err.value.fix
