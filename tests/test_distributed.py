"""Multi-rank training on the CPU: two gloo ranks train the tiny HF VLM (DDP or FSDP) exactly as one process does.

The job runs through ``run_job`` with ``tasks=2``: the leader claims it, spawns its
follower (``sweep.distributed``), both train with DDP on their halves of each
global batch, and only the leader logs and writes. Text-only samples in the
stage-2 mix leave the connector unused in some micro batches (DDP's
``find_unused_parameters``). Run: ``.venv/bin/pytest tests/test_distributed.py -q``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import bench_eval_spec, make_runtime, tiny_hf_parts
from test_hf_jobs import _stage, tiny  # noqa: F401  (tiny is a fixture)

pytestmark = pytest.mark.usefixtures("hf_offline")


def _job(tiny: dict[str, Path], tasks: int, **stage: Any) -> Any:  # noqa: F811
    from dataclasses import replace

    from sweep.runner import JobPayload
    from sweep.specs.jobs import HFTrainSpec

    spec = HFTrainSpec(stage=replace(_stage("stage2", "all", 1e-3, 3), micro_batch_size=1, **stage), stage_index=0,
                       **tiny_hf_parts(tiny))
    return JobPayload(id="train-ddp", kind="hf_train", spec=spec, upstream={}, tasks=tasks)


def _weights(root: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(root / "jobs" / "train-ddp" / "model.pt", weights_only=True)
    return {**{f"connector.{k}": v for k, v in blob["connector"].items()}, **{f"llm.{k}": v for k, v in blob["llm"].items()}}


def _losses(uri: str, rt: Any) -> list[float]:
    from sweep.tracking import Tracker

    run = Tracker(uri).job_runs(rt.experiment_id, "train", ["train-ddp"])[0]
    from mlflow import MlflowClient

    return [m.value for m in sorted(MlflowClient(uri).get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_train_like_one_process(tiny: dict[str, Path], tmp_path: Path, mlflow_uri: str, parallel: str) -> None:  # noqa: F811
    from sweep.runner import run_job

    one = make_runtime(tmp_path / "one", mlflow_uri, f"{parallel}-one")
    two = make_runtime(tmp_path / "two", mlflow_uri, f"{parallel}-two")
    single = run_job(_job(tiny, 1, parallel=parallel), one)
    double = run_job(_job(tiny, 2, parallel=parallel), two)
    assert single.state == double.state == "done", (single.error, double.error)
    assert single.metrics["train/ranks"] == 1 and double.metrics["train/ranks"] == 2
    assert single.metrics["train/fsdp"] == 0 and double.metrics["train/fsdp"] == float(parallel == "fsdp")
    assert single.metrics["train/steps"] == double.metrics["train/steps"] == 4  # 3 epochs x 5 samples / batch 4
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert set(w1) == set(w2)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs between 1 and 2 ranks")
    l1, l2 = _losses(mlflow_uri, one), _losses(mlflow_uri, two)
    assert len(l1) == len(l2) == 4 and l1 == pytest.approx(l2, rel=1e-4)
    assert l1[-1] < l1[0]  # it trains: the loss goes down over the 3 epochs
    # checkpoint_every is 0: the follower wrote no checkpoint of its own either.
    assert not list((tmp_path / "two" / "jobs" / "train-ddp" / "ckpt").glob("step_*.pt"))


def test_a_stop_reaches_every_rank_and_the_rerun_resumes(tiny: dict[str, Path], tmp_path: Path, mlflow_uri: str) -> None:  # noqa: F811
    """parallel=auto shards the stage-2 model (FSDP): the checkpoint gathers full tensors and the rerun reshards them."""
    from sweep.runner import run_job

    ref_rt = make_runtime(tmp_path / "ref", mlflow_uri, "ddp-ref")
    rt = make_runtime(tmp_path / "cut", mlflow_uri, "ddp-cut")
    assert run_job(_job(tiny, 2), ref_rt).state == "done"
    calls = []

    def stop() -> bool:  # the leader hears the signal after step 2; the follower never does
        calls.append(1)
        return len(calls) >= 2

    first = run_job(_job(tiny, 2), rt, stop_requested=stop)
    assert first.state == "preempted"
    assert [p.name for p in (tmp_path / "cut" / "jobs" / "train-ddp" / "ckpt").glob("step_*.pt")] == ["step_00000002.pt"]
    second = run_job(_job(tiny, 2), rt)
    assert second.state == "done" and second.metrics["train/resumed_from_step"] == 2
    ref, cut = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    for k in ref:
        torch.testing.assert_close(cut[k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{k}: resumed run differs")


def test_gradient_checkpointing_changes_memory_not_results(tiny: dict[str, Path], tmp_path: Path, mlflow_uri: str) -> None:  # noqa: F811
    from sweep.runner import run_job

    plain = make_runtime(tmp_path / "plain", mlflow_uri, "gc-plain")
    ckpt = make_runtime(tmp_path / "gc", mlflow_uri, "gc-on")
    assert run_job(_job(tiny, 1), plain).state == "done"
    assert run_job(_job(tiny, 1, gradient_checkpointing=True), ckpt).state == "done"
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "gc")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="loader workers are capped at the CPUs - 1")
def test_loader_workers_change_speed_not_results(tiny: dict[str, Path], tmp_path: Path, mlflow_uri: str) -> None:  # noqa: F811
    """Images opened and preprocessed in a worker process (``image_transform``) train the very same weights."""
    from sweep.runner import run_job

    inline = make_runtime(tmp_path / "inline", mlflow_uri, "loader-inline")
    workers = make_runtime(tmp_path / "workers", mlflow_uri, "loader-workers")
    a = run_job(_job(tiny, 1), inline)
    b = run_job(_job(tiny, 1, loader_workers=1), workers)
    assert a.state == b.state == "done", (a.error, b.error)
    assert a.metrics["train/loader_workers"] == 0 and b.metrics["train/loader_workers"] == 1
    wa, wb = _weights(tmp_path / "inline"), _weights(tmp_path / "workers")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=0, msg=k)
    assert a.metrics["train/loss_final"] == b.metrics["train/loss_final"]


def test_recompute_activations_turns_checkpointing_on(tiny: dict[str, Path]) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM

    from sweep.jobs.hf_train import _recompute_activations

    llm = AutoModelForCausalLM.from_pretrained(tiny["llm"])
    on = (lambda: llm.is_activation_checkpointing) if hasattr(llm, "is_activation_checkpointing") else (lambda: llm.is_gradient_checkpointing)
    assert not on()
    _recompute_activations(llm)
    assert on() and llm.config.use_cache is False


def test_two_ranks_evaluate_like_one_process(tiny: dict[str, Path], tmp_path: Path, mlflow_uri: str) -> None:  # noqa: F811
    """Batches are dealt out round-robin and gathered: the same answers, scores and Q as one process."""
    from sweep.runner import JobPayload, run_job

    rt = make_runtime(tmp_path / "store", mlflow_uri, "ddp-eval")
    assert run_job(_job(tiny, 1), rt).state == "done"
    conf = {"kind": "benchmarks", "root": str(tiny["eval"]), "families": {"reasoning": ["pope"], "ocr": ["textvqa"]},
            "benchmarks": {"pope": {"categories": ["random"]}}, "batch_size": 1, "max_new_tokens": 4}
    spec = bench_eval_spec(tiny_hf_parts(tiny), conf)
    out = {}
    for tasks in (1, 2):
        job = JobPayload(id=f"eval-{tasks}", kind="bench_eval", spec=spec, upstream={"train": "train-ddp"}, tasks=tasks)
        outcome = run_job(job, rt)
        assert outcome.state == "done", outcome.error
        out[tasks] = outcome.metrics
        for bench in ("pope", "textvqa"):
            assert (tmp_path / "store" / "jobs" / f"eval-{tasks}" / "predictions" / f"{bench}.jsonl").exists()
    assert out[1]["eval/questions"] == out[2]["eval/questions"] == 8
    same = [k for k in out[1] if k.startswith(("bench/", "error/")) or k in ("N", "V", "Q", "flops/inference")]
    assert {k: out[2][k] for k in same} == {k: out[1][k] for k in same}
    for bench in ("pope", "textvqa"):
        one, two = ((tmp_path / "store" / "jobs" / f"eval-{t}" / "predictions" / f"{bench}.jsonl").read_text() for t in (1, 2))
        assert one == two and len(one.splitlines()) == 4


def _listening(pid: int) -> list[str]:
    """The addresses process ``pid`` listens on (Linux /proc), as 'ip:port' strings."""
    import ipaddress
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            # /proc prints the address as host-order 32-bit words
            ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
            out.append(f"{ip}:{int(hexport, 16)}")
    return out


def _report_listening(world: Any, out: str) -> None:
    import json
    import os

    from sweep.distributed import follow

    def report(_world: Any) -> None:
        # write then rename: the test polls for the file and must never read it half-written
        tmp = Path(out + ".part")
        tmp.write_text(json.dumps(_listening(os.getpid())))
        os.replace(tmp, out)

    follow(world, report)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
def test_ranks_on_one_node_listen_on_loopback_only(tmp_path: Path) -> None:
    import ipaddress
    import json
    import os
    import time

    from sweep.distributed import Crew

    out = tmp_path / "follower.json"
    crew = Crew.on_this_node(2, _report_listening, (str(out),))
    try:
        crew.run()
        mine = _listening(os.getpid())
        deadline = time.time() + 60
        while not out.exists() and time.time() < deadline:
            time.sleep(0.1)
        theirs = json.loads(out.read_text())
    finally:
        crew.end()
    assert mine and theirs  # gloo listens for its peers: there is something to check
    for addr in mine + theirs:
        assert ipaddress.ip_address(addr.rsplit(":", 1)[0]).is_loopback, f"a rank listens on {addr}"
    assert not Path(crew.world.store_file).parent.exists()  # the rendezvous folder is gone


def test_loopback_settings_do_not_outlive_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool worker or Ray worker runs many jobs: a one-node job's loopback pinning must not reach the next job."""
    import os

    from sweep.distributed import World, close_group, init_group

    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")
    init_group(World(rank=0, world_size=1, store_file=str(tmp_path / "rdv" / "store")))
    assert os.environ["GLOO_SOCKET_IFNAME"] in ("lo", "lo0") and os.environ["NCCL_SOCKET_IFNAME"] in ("lo", "lo0")
    close_group()
    assert "GLOO_SOCKET_IFNAME" not in os.environ and os.environ["NCCL_SOCKET_IFNAME"] == "ib0"


def _dies_before_joining(world: Any, code: int) -> None:
    os._exit(code)  # a follower rank that ends before it joins the group (an import error, the OOM killer)


def test_ending_a_crew_whose_follower_died_before_joining_does_not_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's ``end`` would otherwise block in the group's rendezvous for ``TIMEOUT_S`` (30 min by default)."""
    import time

    import torch.distributed as dist

    from sweep import distributed
    from sweep.distributed import Crew

    monkeypatch.setattr(distributed, "TIMEOUT_S", 60.0)
    crew = Crew.on_this_node(2, _dies_before_joining, (3,))
    crew.processes[0].join(120)
    t0 = time.monotonic()
    crew.end()
    assert time.monotonic() - t0 < 20
    assert crew.failed() == ["sweep-rank1 exited with 3"] and not dist.is_initialized()


def test_a_follower_that_dies_before_joining_fails_the_leaders_start_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Crew.run`` would otherwise wait in the group's rendezvous for ``TIMEOUT_S`` (30 min by default) with the
    job's GPUs held; it says which rank ended and how, and ``end`` then reaps it without waiting either."""
    import time

    import torch.distributed as dist

    from sweep import distributed
    from sweep.distributed import Crew

    monkeypatch.setattr(distributed, "TIMEOUT_S", 60.0)
    crew = Crew.on_this_node(2, _dies_before_joining, (3,))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="sweep-rank1 exited with 3 before joining the job's process group"):
        crew.run()
    crew.end()
    assert time.monotonic() - t0 < 30
    assert not dist.is_initialized()
