"""Typed specs: every config composes and plans, mistakes are refused before anything starts, identity is declared.

    .venv/bin/pytest tests/test_specs.py -q
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from helpers import sweep_cli
from launchers.base import make_launcher
from launchers.config import NAMES as LAUNCHER_NAMES
from sweep.cli import load, main
from sweep.jobs import KINDS
from sweep.plan import make_id
from sweep.specs.jobs import ProbeSpec
from sweep.specs.schema import IDENTITY, Spec, spec_types, type_hints

REPO = Path(__file__).resolve().parent.parent
GRIDS = sorted(p.stem for p in (REPO / "conf" / "grid").glob("*.yaml"))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("launcher", LAUNCHER_NAMES)
def test_every_grid_composes_and_plans_with_every_launcher(grid: str, launcher: str) -> None:
    cfg, plan = load([f"+grid={grid}", f"launcher={launcher}"])
    assert cfg.launcher.name == launcher and len(plan) > 0 and plan.cells
    assert type(make_launcher(cfg.launcher)).__name__.lower().startswith(launcher)
    for job in plan:
        assert isinstance(job.spec, KINDS[job.kind].spec), job.id
        assert set(job.deps) <= {j.id for j in plan}


# Each: the override(s), the field the error must name. At least 20 distinct fields, across every group.
REFUSALS = [
    (["+grid=paper", "eval.families.reasoning=[gqa,popee]"], "eval.families.reasoning.1"),
    (["train.stages.0.trainable=connectr"], "train.stages.0.trainable"),
    (["train.stages.0.schedule=cosin"], "train.stages.0.schedule"),
    (["launcher.workers=two"], "launcher.workers"),
    (["+launcher.wrkers=3"], "launcher.wrkers"),
    (["train.stages.0.steps=1.5"], "train.stages.0.steps"),
    (["train.stages.0.lr=inf"], "train.stages.0.lr"),
    (["train.stages.0.checkpoint_every=-5"], "train.stages.0.checkpoint_every"),
    (["+train.stages.0.stepz=5"], "train.stages.0.stepz"),
    (["+foo=1"], "foo"),
    (["launcher.threads_per_worker=1.5"], "launcher.threads_per_worker"),
    (["train.lr=abc"], "train.lr"),
    (["train.stages.0.betas=[0.9,1.5]"], "train.stages.0.betas.1"),
    (["train.stages.0.warmup=-1"], "train.stages.0.warmup"),
    (["launcher.workers=0"], "launcher.workers"),
    (["launcher=ray", "launcher.placement=SPREAD"], "launcher.placement"),
    (["launcher=ray", "launcher.object_store_mb=10"], "launcher.object_store_mb"),
    (["launcher=slurm", "launcher.array_parallelism=0"], "launcher.array_parallelism"),
    (["launcher=slurm", "+launcher.classes.gpu8.partiton=h100"], "launcher.classes.gpu8.partiton"),
    (["llm.xs.hidden_size=31"], "llm.xs.num_heads"),
    (["llm.xs.resource_class=gpu2"], "llm.xs.resource_class"),
    (["+compressor.tokenpacker.head_dimm=64"], "compressor.tokenpacker.head_dimm"),
    (["compressor.tokenpacker.head_dim=abc"], "compressor.tokenpacker.head_dim"),
    (["vision.feature_layers=[1,7]"], "vision.feature_layers"),
    (["vision.patch_size=8"], "vision.patch_size"),
    (["vision.pretrain.steps=0"], "vision.pretrain.steps"),
    (["data.image_size=32"], "data.image_size"),
    (["data.image_size=48", "vision.image_size=48"], "data.image_size"),
    (["data.train_images=-1"], "data.train_images"),
    (["eval.max_questions=-3"], "eval.max_questions"),
    (["eval=paper"], "eval.kind"),
    (["+grid=paper", "train.stages.1.parallel=zero3"], "train.stages.1.parallel"),
    (["+grid=paper", "train.stages.1.precision=fp8"], "train.stages.1.precision"),
    (["+grid=paper", "train.stages.0.data=stage3"], "train.stages.0.data"),
    (["+grid=paper", "+eval.benchmarks.pope.headlin=f1"], "eval.benchmarks.pope.headlin"),
    (["+grid=paper", "+eval.benchmarks.textvq.root=/x"], "eval.benchmarks.textvq"),
    (["+grid=paper", "eval.max_new_tokens=0"], "eval.max_new_tokens"),
    (["+grid=paper", "grid.llm=[qwen15-0p5b,xs]"], "grid.llm"),
    (["+grid=paper", "train=mini"], "train.kind"),
    (["cost.assumed_mfu=1.5"], "cost.assumed_mfu"),
    (["resources.cpu.cpus=0"], "resources.cpu.cpus"),
    (["sweep.name="], "sweep.name"),
    (["sweep.lease_s=0"], "sweep.lease_s"),
    (["fit.loss=l1"], "fit.loss"),
    (["tracking.uri="], "tracking.uri"),
    (["grid.seeds=[0,0]"], "grid.seeds"),
]


def test_refusals_cover_twenty_fields() -> None:
    assert len({field for _, field in REFUSALS}) >= 20


@pytest.mark.parametrize(("overrides", "field"), REFUSALS, ids=[f for _, f in REFUSALS])
def test_a_mistake_is_refused_at_plan_time(overrides: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"error: {field}: "), err
    assert "\n  fix: " in err


def test_the_issue_commands_exit_2_from_the_shell(tmp_path: Path) -> None:
    """As a user types them: a real process, exit code 2, the field and a fix on stderr, no traceback, nothing written."""
    commands = [["+grid=paper", "eval.families.reasoning=[gqa,popee]"], ["train.stages.0.trainable=connectr"],
                ["launcher.workers=two"], ["+launcher.wrkers=3"]]
    for args in commands:
        run = sweep_cli(*args, cwd=tmp_path, env={"SWEEP_ROOT": str(tmp_path / "out")}, timeout=120)
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and "fix:" in run.stderr and args[-1].lstrip("+").split("=")[0] in run.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_ids_ignore_cadence_batching_and_cost_inputs() -> None:
    def ids(*overrides: str) -> list[str]:
        return [j.id for j in load(list(overrides))[1]]

    mini = ids()
    assert ids("train.stages.0.log_every=10", "train.stages.0.checkpoint_every=7", "eval.batch_size=50",
               "vision.pretrain.log_every=5", "llm.xs.resource_class=cpu") == mini
    paper = ids("+grid=paper")
    assert ids("+grid=paper", "train.stages.0.checkpoint_every=1000", "eval.samples_per_cell=7", "eval.batch_size=2",
               "train.text_tokens_per_sample=9", "llm.qwen15-4b.params_b=5.0", "llm.qwen15-4b.shape=null",
               "data.stage1.samples=10", "resources.gpu8.gpu_mem_gb=141") == paper
    assert ids("train.stages.0.betas=[0.9,0.999]") != mini  # a value that changes the result does change the ids


# ---- identity: every field of every spec type declares it, and the declaration is what the id does ----------------

def _sample_specs() -> dict[str, Any]:
    """One real spec per job kind, from the mini and the paper plans."""
    out: dict[str, Any] = {"probe": ProbeSpec(name="p", trace="/tmp/t")}
    for grid in ("mini", "paper"):
        for job in load([f"+grid={grid}", "grid.compressor=[tokenpacker]", "grid.visual_tokens=[4]"])[1]:
            out.setdefault(job.kind, job.spec)
    assert set(out) == set(KINDS)
    return out


def _other(tp: Any, value: Any) -> Any:
    """A different value of the same type."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return next(a for a in args if a != value) if len(args) > 1 else value
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        return _other(inner[0], 1 if value is None and inner[0] is int else value) if value is not None else _fresh(inner[0])
    if tp is bool:
        return not value
    if tp is int:
        return value + 1
    if tp is float:
        return value * 2 + 1
    if tp is str:
        return value + "x"
    if origin is tuple:
        return (*value, value[0]) if args and args[-1] is Ellipsis and value else tuple(_other(args[0], v) for v in value) or (1,)
    if origin is dict or tp is dict:
        return {**value, "added": 1}
    if tp is Any:
        return {"changed": value}
    raise TypeError(tp)


def _fresh(tp: Any) -> Any:
    return {int: 1, float: 1.0, str: "x", bool: True}.get(tp, "x")


def _walk(spec: Spec, path: tuple[str, ...] = ()) -> typing.Iterator[tuple[tuple[str, ...], bool, Any]]:
    """(path, semantic along the whole path, spec with that one field changed) for every leaf field."""
    hints = type_hints(type(spec))
    for f in dataclasses.fields(spec):  # type: ignore[arg-type]
        value, here = getattr(spec, f.name), (*path, f.name)
        semantic = f.metadata[IDENTITY]
        if isinstance(value, Spec):
            for sub, sem, changed in _walk(value, here):
                yield sub, semantic and sem, dataclasses.replace(spec, **{f.name: changed})
        elif isinstance(value, tuple) and value and isinstance(value[0], Spec):
            for sub, sem, changed in _walk(value[0], (*here, "0")):
                yield sub, semantic and sem, dataclasses.replace(spec, **{f.name: (changed, *value[1:])})
        elif _other(hints[f.name], value) != value:  # a one-value Literal (a union's tag) cannot change
            yield here, semantic, dataclasses.replace(spec, **{f.name: _other(hints[f.name], value)})


def test_every_spec_field_declares_whether_it_is_identity() -> None:
    from sweep.specs.config import Config

    types = spec_types(Config) + [t for k in KINDS.values() for t in spec_types(k.spec)]
    assert len(set(types)) > 20
    for cls in set(types):
        for f in dataclasses.fields(cls):
            assert IDENTITY in f.metadata, f"{cls.__name__}.{f.name}: declare semantic() or incidental()"


def test_the_declared_identity_is_what_changes_the_id(capsys: pytest.CaptureFixture[str]) -> None:
    """Change each leaf field of each job kind's spec once: the id changes exactly for the semantic ones."""
    table = []
    for kind, spec in _sample_specs().items():
        base = make_id(kind, "x", spec, {"u": "up"})
        for path, semantic, changed in _walk(spec):
            moved = make_id(kind, "x", changed, {"u": "up"}) != base
            table.append((kind, ".".join(path), moved))
            assert moved == semantic, f"{kind}: {'.'.join(path)} declared {'semantic' if semantic else 'incidental'}"
    with capsys.disabled():  # the map of what makes an id, for a reader running with -s
        ignored = sorted({p for k, p, moved in table if not moved})
        print(f"\n{len(table)} spec fields walked; never in an id: {', '.join(ignored)}")
    assert any(not moved for *_, moved in table) and sum(moved for *_, moved in table) > 50
