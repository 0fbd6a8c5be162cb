"""The memory model (sweep/memory.py) against real modules, and its use in the plan: shown per job, a class too small refused.

The counts the estimate rests on are checked against the real thing: parameter counts against
transformers' Qwen2 built on the meta device at the paper's shapes, the bytes autograd saves per
decoder layer and token against saved-tensor hooks on a real (small) Qwen2, the connector against
the built compressors; the probe that measures a job's peak against a known allocation.
Run: ``.venv/bin/pytest tests/test_memory.py -q``
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import pytest
import torch
from helpers import sweep_cli

from sweep import memory
from sweep.cli import load
from sweep.errors import SweepError
from sweep.specs.models import LLMShape

REPO = Path(__file__).resolve().parent.parent
PAPER_LLMS = ("qwen15-0p5b", "qwen15-1p8b", "qwen15-4b", "qwen15-7b", "qwen15-14b")


def _qwen(shape: LLMShape, device: str = "meta") -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                      num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads, num_key_value_heads=shape.kv_heads,
                      tie_word_embeddings=shape.tie_word_embeddings, use_cache=False)
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        return Qwen2ForCausalLM(cfg)


@pytest.mark.parametrize("name", PAPER_LLMS)
def test_catalogue_shapes_count_the_real_models_parameters(name: str) -> None:
    cfg, _ = load(["+grid=paper"])
    entry = cfg.llm[name]
    model = _qwen(entry.shape)  # on the meta device: shapes, no memory
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())  # a tied weight once
    non_embedding = total - embed.numel() - (0 if head is embed else head.numel())
    assert (head is embed) == entry.shape.tie_word_embeddings
    assert entry.shape.params() == total
    assert entry.shape.params() - entry.shape.embedding_params() == non_embedding
    assert entry.params_b == pytest.approx(total / 1e9, abs=1e-3)
    assert entry.non_embedding_params_b == pytest.approx(non_embedding / 1e9, abs=1e-3)


def _saved_bytes_per_token_and_layer(shape: LLMShape, trained: bool, bf16: bool) -> float:
    """What autograd saves per token in one decoder layer: (2 layers - 1 layer) at (128 - 64 tokens), by saved-tensor hooks."""
    def saved(layers: int, tokens: int) -> int:
        torch.manual_seed(0)
        model = _qwen(dataclasses.replace(shape, num_layers=layers), "cpu").train().requires_grad_(trained)
        own = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            s = t.untyped_storage()
            if s.data_ptr() not in own:
                seen[s.data_ptr()] = s.nbytes()
            return t

        x = torch.randn(1, tokens, shape.hidden_size, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            model(inputs_embeds=x, labels=torch.randint(0, shape.vocab_size, (1, tokens)))
        return sum(seen.values())

    return ((saved(2, 128) - saved(2, 64)) - (saved(1, 128) - saved(1, 64))) / 64


@pytest.mark.parametrize("trained", [True, False])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_layer_activation_bytes_are_what_autograd_saves(trained: bool, kv_heads: int) -> None:
    """fp32 (what a CPU job runs) exactly; under bf16 autocast (CPU's, standing in for CUDA's) within 1%."""
    shape = LLMShape(hidden_size=128, num_layers=1, num_heads=4, num_kv_heads=kv_heads, intermediate_size=352, vocab_size=256)
    assert _saved_bytes_per_token_and_layer(shape, trained, bf16=False) == memory.layer_bytes_per_token(shape, False, trained)
    counted = _saved_bytes_per_token_and_layer(shape, trained, bf16=True)
    assert counted == pytest.approx(memory.layer_bytes_per_token(shape, True, trained), rel=0.01)


@pytest.mark.parametrize("name", ["avgpool", "tokenpacker", "quecc", "resampler", "pixelshuffle"])
def test_connector_size_is_the_built_modules(name: str) -> None:
    from sweep.models.compressors import build_compressor

    cfg, _ = load(["+grid=paper", f"grid.compressor=[{name}]", "grid.visual_tokens=[36]"])
    entry, vision = cfg.compressor[name], cfg.vision
    conn = memory.connector_size(entry, vision, 896, 36)
    comp = build_compressor(entry, 1024, 1024, 24, 36, level_dim=1024 * 4, question_dim=896)
    assert conn.params == sum(p.numel() for p in comp.parameters()) + (1024 * 896 + 896) + (896 * 896 + 896)
    assert conn.saved_per_image > 0  # the projector saves its input at least


def _plan(*overrides: str):
    return load(["+grid=paper", *overrides])[1]


def test_the_paper_plan_shows_memory_per_job_and_fits_its_classes() -> None:
    plan = _plan()
    assert all(j.memory is not None and j.memory.device == "cuda" for j in plan)
    for job in plan:
        assert job.memory.needs_gb <= job.resources["gpu_mem_gb"], (job.label, job.memory.summary())
    by = {(j.cell.llm, j.role, j.stage): j.memory for j in plan if j.cell.visual_tokens == 576}
    # Larger LLMs need more; stage 2 of the 7B is sharded (FSDP) yet holds whole fp32 gradients while it accumulates.
    assert by[("qwen15-0p5b", "train", "stage2")].gb < by[("qwen15-7b", "train", "stage2")].gb
    seven = by[("qwen15-7b", "train", "stage2")]
    assert seven.mode == "fsdp" and seven.parts["grads"] == pytest.approx(4 * 7.7213e9, rel=5e-3)  # + the connector
    assert seven.parts["weights"] == pytest.approx(seven.parts["grads"] / 8, rel=0.1)  # the fp32 weights, sharded 8 ways


def test_the_estimate_follows_micro_batch_checkpointing_and_ranks() -> None:
    def stage2(*overrides: str) -> memory.Estimate:
        big = [f"resources.{c}.gpu_mem_gb=1e6" for c in ("gpu4", "gpu8", "gpu8-141gb")]
        plan = _plan("grid.llm=[qwen15-4b]", "grid.heldout_llm=[]", "grid.visual_tokens=[144]", *big, *overrides)
        return next(j.memory for j in plan if j.stage == "stage2")

    base = stage2()
    assert stage2("train.stages.1.micro_batch_size=4").gb > base.gb
    assert stage2("train.stages.1.gradient_checkpointing=false").parts["activations"] > 5 * base.parts["activations"]
    # 16 GPUs halve the sharded state; the gathered layers and whole gradients stay.
    wide = stage2("resources.gpu8.nodes=2")
    assert wide.parts["optimizer"] == pytest.approx(base.parts["optimizer"] / 2) and wide.parts["grads"] == base.parts["grads"]
    # On a CPU class the same job counts fp32 tensors per process: no autocast copies.
    cpu = stage2("resources.gpu8.gpus=0", "+resources.gpu8.tasks_per_node=8")
    assert cpu.device == "cpu" and "autocast copies" not in cpu.parts


def test_a_class_too_small_is_refused_with_fixes_that_fit() -> None:
    with pytest.raises(SweepError) as err:
        _plan("resources.gpu8.gpu_mem_gb=40")
    e = err.value
    assert e.field == "resources.gpu8.gpu_mem_gb" and "more than the 40 GB" in e.problem
    assert "qwen15-7b" in e.problem and "other jobs do not fit either" in e.problem and "gpu_mem_gb" in e.fix
    # 70 GB GPUs: the 7B's stage 1 (DDP, micro batch 2) is the largest job; each fix offered was re-estimated.
    seven = ("grid.llm=[qwen15-7b]", "grid.heldout_llm=[]")
    with pytest.raises(SweepError) as err:
        _plan(*seven, "resources.gpu8.gpu_mem_gb=70")
    assert "train:stage1 qwen15-7b" in err.value.problem
    fixes = dict(f.split(" (", 1) for f in err.value.fix.removeprefix("any of: ").split("; "))
    assert {"train.stages.0.micro_batch_size=1", "train.stages.0.parallel=fsdp", "llm.qwen15-7b.resource_class=gpu8-141gb"} <= set(fixes)
    roomy = [f"resources.{c}.gpu_mem_gb=1e6" for c in ("gpu4", "gpu8", "gpu8-141gb")]
    for fix in ("train.stages.0.micro_batch_size=1", "train.stages.0.parallel=fsdp"):
        stage1 = next(j for j in _plan(*seven, fix, *roomy) if j.stage == "stage1")
        assert stage1.memory.needs_gb <= 70 and f"{stage1.memory.needs_gb:.0f} GB" in fixes[fix]


def test_the_cli_refuses_before_anything_runs_and_plan_shows_the_column(tmp_path: Path) -> None:
    env = {"SWEEP_ROOT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = sweep_cli("+grid=paper", "resources.gpu4.gpu_mem_gb=8", cwd=REPO, env=env, inherit=False)
    assert run.returncode == 2 and "error: resources.gpu4.gpu_mem_gb:" in run.stderr and "fix: any of:" in run.stderr
    assert not (tmp_path / "out" / "jobs").exists()
    shown = sweep_cli("plan", "+grid=paper", "grid.llm=[qwen15-0p5b]", "grid.heldout_llm=[]", cwd=REPO, env=env, inherit=False)
    assert shown.returncode == 0 and "GB/GPU need/has" in shown.stdout and "/80" in shown.stdout


def test_bad_memory_settings_are_refused() -> None:
    with pytest.raises(SweepError, match="gpu_mem_gb: must be > 0"):
        _plan("resources.gpu8.gpu_mem_gb=0")
    with pytest.raises(SweepError, match=r"llm.qwen15-7b.params_b: is 9.0 but its shape has 7.721 billion"):
        _plan("llm.qwen15-7b.params_b=9.0")
    with pytest.raises(SweepError, match="num_kv_heads: 5 does not divide num_heads 32"):
        _plan("llm.qwen15-7b.shape.num_kv_heads=5")
    with pytest.raises(SweepError, match=r"vision.feature_layers: \[30\] outside 1..24"):
        _plan("vision.feature_layers=[30]")
    # Without a shape there is no estimate, and nothing is refused for memory.
    assert all(j.memory is None for j in _plan("llm.qwen15-7b.shape=null", "grid.llm=[qwen15-7b]", "grid.heldout_llm=[]"))


def test_the_probe_sees_an_allocation_inside_its_window_and_not_a_paused_one() -> None:
    from sweep.jobs.peakmem import PeakMemory

    probe = PeakMemory("cpu")
    probe.start()
    with probe.paused():
        big = torch.ones(512 * 2**20 // 4)  # 512 MiB, not counted
        del big
    block = torch.ones(256 * 2**20 // 4)  # 256 MiB, counted (ones: the pages are touched)
    peak = probe.peak_bytes()
    del block
    assert peak is not None and 240 * 2**20 < peak < 480 * 2**20


@pytest.mark.parametrize("checkpointing", [False, True])
def test_autocast_keeps_a_bf16_copy_of_every_weight_through_the_forward(checkpointing: bool) -> None:
    """Why the estimate counts ``autocast copies`` (2 B per LLM weight) whatever the sharding: torch.autocast
    caches the bf16 cast of each trained weight until the autocast region ends, gradient checkpointing or not
    (CPU autocast shares the cache logic with CUDA's). Measured as the RSS the forward adds."""
    from torch.utils.checkpoint import checkpoint

    from sweep.jobs.peakmem import _status_bytes

    torch.manual_seed(0)
    # 64 MiB bf16 casts, above glibc's largest mmap threshold (32 MiB), so each is mostly fresh pages (RSS).
    # RSS is the whole process's: in the full suite one cast once landed on pages already resident (the
    # forward added 224 of 256 MiB), so the bound allows three of eight casts to do that. With
    # checkpointing and autocast's cache off (cache_enabled=False) the same forward adds nothing (measured);
    # without checkpointing, autograd's saved tensors would hold the casts as well.
    layers = torch.nn.ModuleList(torch.nn.Linear(4096, 8192, bias=False) for _ in range(8))  # 8 x 128 MiB fp32
    copies = 8 * 8192 * 4096 * 2  # their bf16 casts: 512 MiB
    x = torch.randn(2, 4096, requires_grad=True)
    gc.collect()
    before = _status_bytes("VmRSS")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = x
        for layer in layers:
            # each layer maps 4096 -> 8192; keep the first 4096 outputs for the next one
            h = (checkpoint(layer, h, use_reentrant=False) if checkpointing else layer(h))[:, :4096]
        inside = _status_bytes("VmRSS")
    assert inside - before > 0.6 * copies, f"the forward added {(inside - before) / 2**20:.0f} MiB"
    h.float().sum().backward()
