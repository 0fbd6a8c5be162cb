"""``make gpu-check``: the paper path's GPU figures in one unattended run, in at most ~8 minutes.

    TORCH_SPEC= make gpu-check          # on a CUDA node, from a fresh clone, keeping the cluster's torch
    .venv/bin/python bench/gpu_check.py [--out bench_gpu.json] [--markdown bench_gpu.md] [--budget-s 420]

1. ``bench/bench_gpu.py`` at the real shapes (Qwen-1.5 0.5B, 1.8B, 4B, 7B x V in {1, 144, 576}):
   training tokens/s and MFU in bf16, prefill latency at batch 1, on one GPU.
2. One bf16 stage-2 step of the 7B cell as the plan would run it on this machine's GPUs: the
   plan's own job spec (``conf/train/paper.yaml``'s stage 2: FSDP, gradient checkpointing, its
   micro batch, max_length tokens per sample), the job's own code (``sweep.jobs.parallel.Parallel``,
   ``sweep.jobs.loop.TrainLoop``, ``sweep.jobs.hf_train.micro_steps``) on random weights built
   on the GPUs and synthetic batches of exactly max_length tokens, two micro batches per rank.
   Each rank's peak allocated memory (``sweep.jobs.peakmem``) is set against the plan's
   estimate for the same spec and rank count (``sweep.memory``). When the estimate says it
   cannot fit this machine's GPUs, the step is skipped and the JSON says why.
3. Writes ``bench_gpu.json`` (the bench rows that ``cost.measured`` reads, plus ``fsdp``) and a
   markdown table.

Without CUDA it says so and exits 0. ``--device cpu --tiny`` is a dry run of all of it at toy
shapes on the CPU (gloo ranks), which the tests use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_gpu  # noqa: E402

FSDP_LLM = "qwen15-7b"


def parser() -> argparse.ArgumentParser:
    p = bench_gpu.parser()
    p.description = __doc__.splitlines()[0]
    p.set_defaults(budget_s=300.0)  # the bench stops starting cells here, leaving the FSDP step its minutes
    p.add_argument("--markdown", default="bench_gpu.md")
    p.add_argument("--fsdp-llm", default=FSDP_LLM, help="the cell whose stage-2 step runs under FSDP")
    p.add_argument("--fsdp-v", type=int, default=576, help="its visual tokens")
    p.add_argument("--ranks", type=int, default=0, help="ranks of the FSDP step (0: one per GPU; 2 on the CPU)")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--skip-fsdp", action="store_true")
    return p


def stage2_job(llm: str, v: int, ranks: int, tiny: bool) -> Any:
    """The plan's stage-2 spec of the (llm, V) cell, with two micro batches per rank; toy shapes with ``tiny``."""
    from sweep.cli import load
    from sweep.specs.models import LLMShape

    _, plan = load(["+grid=paper", f"grid.llm=[{llm}]", "grid.heldout_llm=[]", f"grid.visual_tokens=[{v}]",
                    *[f"resources.{c}.gpu_mem_gb=1e6" for c in ("gpu4", "gpu8", "gpu8-141gb")]])
    spec = next(j.spec for j in plan if j.kind == "hf_train" and j.spec.stage.trainable == "all")
    stage = dataclasses.replace(spec.stage, global_batch_size=2 * ranks * spec.stage.micro_batch_size)
    if tiny:
        spec = dataclasses.replace(spec, llm=dataclasses.replace(spec.llm, shape=LLMShape(**bench_gpu.TINY_LLM)),
                                   vision=dataclasses.replace(spec.vision, hidden_size=bench_gpu.TINY_CLIP["hidden_size"],
                                                              num_layers=4, feature_layers=(1, 2, 3, 4), params_b=1e-4))
        stage = dataclasses.replace(stage, max_length=v + 32)
    return dataclasses.replace(spec, stage=stage)


def random_vlm(spec: Any, device: torch.device, tiny: bool) -> Any:
    """The cell's ``HFVLM`` with random weights, built on ``device`` in fp32 (as the job holds it before sharding)."""
    from transformers import CLIPVisionModel, Qwen2ForCausalLM

    from sweep.models.compressors import build_compressor
    from sweep.models.hf import FrozenCLIP, non_embedding_params
    from sweep.models.hf_vlm import HFVLM

    with device:
        tower = FrozenCLIP(CLIPVisionModel(bench_gpu.clip_config(spec.vision, tiny)), None, spec.vision.select_layer,
                           spec.vision.feature_layers)
        llm = Qwen2ForCausalLM(bench_gpu.qwen_config(spec.llm.shape))
        width, hidden = tower.dim, llm.config.hidden_size
        comp = build_compressor(spec.compressor, width, width, int(tower.num_patches ** 0.5), spec.cell.visual_tokens,
                                level_dim=width * max(1, len(tower.feature_layers)), question_dim=hidden)
        proj = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden))
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=1)  # forward passes only: nothing is decoded
    return HFVLM(tower, comp, proj, llm, tokenizer, non_embedding_params(llm))


def synthetic_batches(spec: Any, micro: int, device: torch.device, vocab: int, image_size: int) -> Any:
    """Endless micro batches as ``LlavaCollator`` makes them, each exactly ``max_length`` tokens once spliced."""
    from sweep.data.llava import IMAGE_TOKEN_ID

    v, length = spec.cell.visual_tokens, spec.stage.max_length
    g = torch.Generator().manual_seed(0)
    while True:
        ids = torch.randint(3, vocab, (micro, length - v + 1), generator=g)
        ids[:, 2] = IMAGE_TOKEN_ID
        labels = ids.clone()
        labels[:, :3] = -100
        yield {"ids": [f"s{i}" for i in range(micro)], "input_ids": ids, "labels": labels,
               "attention_mask": torch.ones_like(ids), "images": list(torch.randn(micro, 3, image_size, image_size, generator=g))}


def fsdp_rank(rank: int, ranks: int, spec: Any, store: str, out: str, device_type: str, tiny: bool) -> None:
    """One rank of the stage-2 step (spawned); rank 0 writes the peaks of every rank to ``out``."""
    from sweep import distributed
    from sweep.distributed import World, close_group, init_group
    from sweep.jobs.context import JobContext
    from sweep.jobs.hf_train import _recompute_activations, micro_steps
    from sweep.jobs.loop import TrainLoop
    from sweep.jobs.parallel import Parallel, resolve
    from sweep.jobs.peakmem import PeakMemory

    world = World(rank=rank, world_size=ranks, local_rank=rank, store_file=store)
    init_group(world)
    device = torch.device(f"cuda:{rank}" if device_type == "cuda" else "cpu")
    stage = spec.stage
    probe = PeakMemory(device)
    torch.manual_seed(0)
    vlm = random_vlm(spec, device, tiny)
    vlm.set_trainable(stage.trainable)
    if stage.gradient_checkpointing:
        _recompute_activations(vlm.llm)
    par = Parallel(vlm, world, device, resolve(stage.parallel, world, True))
    params = [p for p in vlm.parameters() if p.requires_grad]
    per_rank = stage.global_batch_size // ranks
    micro = min(stage.micro_batch_size, per_rank)
    with tempfile.TemporaryDirectory() as work:
        ctx = JobContext(job_id="gpu-check", kind="hf_train", spec=spec, workdir=Path(work), world=world, device=str(device))
        loop = TrainLoop(ctx, stage, 1, params, par, probe=probe)
        batches = synthetic_batches(spec, micro, device, vlm.llm.config.vocab_size, spec.vision.image_size)
        vlm.train()
        vlm.tower.eval()
        t0 = time.perf_counter()
        result = loop.run(lambda _: micro_steps(par, batches, -(-per_rank // micro), per_rank, device,
                                                device.type == "cuda" and stage.precision == "bf16"))
        seconds = time.perf_counter() - t0
    reserved = float(torch.cuda.max_memory_reserved(device)) if device.type == "cuda" else None
    peaks = distributed.merged({rank: {"allocated": probe.peak_bytes(), "reserved": reserved}})
    if world.leader:
        Path(out).write_text(json.dumps({"peaks": {str(k): v for k, v in peaks.items()}, "loss": result.loss,
                                         "seconds": seconds, "mode": par.mode}))
    # Both ranks leave the group together: without this barrier, one rank tearing gloo down while the
    # other still finished its last collective aborted a rank ("terminate called without an active
    # exception") in 4 of 12 CPU dry runs; with it, 0 of 12.
    torch.distributed.barrier()
    close_group()
    # Its work is done and written; skip the interpreter's teardown, where gloo objects still held by the FSDP
    # mesh are destroyed in arbitrary order: a rank still aborted there (SIGABRT, "terminate called without
    # an active exception") once in the whole suite at 1fac6a3, with the barrier above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def fsdp_check(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Step 2 of the module docstring: the 7B stage-2 step on this machine's GPUs against the plan's estimate."""
    from sweep import memory
    from sweep.distributed import new_store_file

    cuda = args.device == "cuda"
    ranks = args.ranks or (torch.cuda.device_count() if cuda else 2)
    spec = stage2_job(args.fsdp_llm, args.fsdp_v, ranks, args.tiny)
    est = memory.estimate_job("hf_train", spec, ranks, args.device, 0.0)
    have = torch.cuda.get_device_properties(0).total_memory / memory.GB if cuda else None
    info: dict[str, Any] = {"llm": args.fsdp_llm, "V": args.fsdp_v, "ranks": ranks, "micro_batch": spec.stage.micro_batch_size,
                            "max_length": spec.stage.max_length, "gpu_mem_gb": have, "estimate": est.to_dict()}
    if ranks < 2:
        return {**info, "skipped": "FSDP needs at least 2 GPUs; this machine has 1"}
    if have is not None and est.needs_gb > have:
        return {**info, "skipped": f"the plan's estimate is {est.needs_gb:.0f} GiB per GPU on {ranks} GPUs, more than the "
                                   f"{have:.0f} GiB each has: it would not fit (the plan refuses it too)"}
    out = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "fsdp.json"
    log(f"FSDP stage-2 step of {args.fsdp_llm} V={args.fsdp_v} on {ranks} {'GPUs' if cuda else 'CPU ranks'}: "
        f"the plan estimates {est.gb:.1f} GiB of tensors per rank ({est.summary()})")
    torch.multiprocessing.spawn(fsdp_rank, args=(ranks, spec, new_store_file(), str(out), args.device, args.tiny),
                                nprocs=ranks, join=True)
    got = json.loads(out.read_text())
    worst = max(float(p["allocated"] or 0.0) for p in got["peaks"].values()) / memory.GB
    reserved = [p["reserved"] for p in got["peaks"].values() if p["reserved"] is not None]
    info.update(measured_gb=worst, measured_over_estimate=worst / est.gb, loss=got["loss"], seconds=got["seconds"],
                mode=got["mode"], peaks_gb={r: {k: (v / memory.GB if v is not None else None) for k, v in p.items()}
                                            for r, p in got["peaks"].items()},
                reserved_gb=max(reserved) / memory.GB if reserved else None)
    log(f"  measured peak {worst:.1f} GiB per rank (allocated), estimate {est.gb:.1f} GiB: "
        f"{worst / est.gb - 1:+.0%}" + (f"; reserved {info['reserved_gb']:.1f} GiB" if reserved else ""))
    return info


def markdown(bench: dict[str, Any] | None, fsdp: dict[str, Any] | None) -> str:
    """The README's table: one row per (LLM, V), then the FSDP step against the plan."""
    lines = []
    if bench:
        lines += [f"Device: {bench['device']} (bf16 dense peak {bench['peak_bf16_tflops'] or '?'} TFLOP/s), torch {bench['torch']}.", "",
                  "| LLM | N | V | batch | tokens/s | TFLOP/s | MFU | prefill ms (batch 1) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in bench["rows"]:
            mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
            lines.append(f"| {r['llm']} | {r['N'] / 1e9:.2f}B | {r['V']} | {r['batch']} | {r['tokens_per_s']:,.0f} | "
                         f"{r['tflops']:.1f} | {mfu} | {r['prefill_ms']:.1f} |")
        lines += [f"| {s['llm']} | | {s['V']} | skipped: {s['reason']} | | | | |" for s in bench.get("skipped", [])]
    if fsdp:
        est = fsdp["estimate"]
        lines += ["", f"Stage-2 step of {fsdp['llm']} at V={fsdp['V']} under FSDP over {fsdp['ranks']} ranks "
                  f"(micro batch {fsdp['micro_batch']}, {fsdp['max_length']} tokens):", "",
                  "| plan's estimate (tensors) | plan's need per GPU | measured peak (allocated) | measured / estimate | reserved |",
                  "| --- | --- | --- | --- | --- |"]
        if "skipped" in fsdp:
            lines.append(f"| {est['gb']:.1f} GiB | {est['needs_gb']:.1f} GiB | skipped: {fsdp['skipped']} | | |")
        else:
            res = "-" if fsdp.get("reserved_gb") is None else f"{fsdp['reserved_gb']:.1f} GiB"
            lines.append(f"| {est['gb']:.1f} GiB | {est['needs_gb']:.1f} GiB | {fsdp['measured_gb']:.1f} GiB | "
                         f"{fsdp['measured_over_estimate']:.2f} | {res} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    checked = bench_gpu.check_args(args)
    if isinstance(checked, str) or args.fsdp_llm not in bench_gpu.LLMS or args.ranks < 0:
        problem = checked if isinstance(checked, str) else f"--fsdp-llm {args.fsdp_llm!r} / --ranks {args.ranks}: use one of {', '.join(bench_gpu.LLMS)}, ranks >= 0"
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check skipped: CUDA is not available on this machine (run `TORCH_SPEC= make gpu-check` on a GPU node)")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    bench = None if args.skip_bench else bench_gpu.run(args)
    fsdp = None if args.skip_fsdp else fsdp_check(args)
    result = {**(bench or {"device": args.device, "rows": []}), "fsdp": fsdp, "seconds_total": time.perf_counter() - t0}
    Path(args.out).write_text(json.dumps(result, indent=2))
    Path(args.markdown).write_text(markdown(bench, fsdp))
    print(f"\nwrote {args.out} and {args.markdown} in {result['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
