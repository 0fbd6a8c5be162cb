"""Peak memory per GPU of a paper-path job, from its shapes alone (arithmetic; nothing is allocated).

Why: a 7B stage 2 that does not fit its GPUs would fail on the cluster hours after
submission, one queued job at a time. The plan adds up what the job's code keeps
alive at its peak, per rank, and refuses a resource class too small for it
(``sweep.plan``). Terms, in bytes per rank, for what ``sweep.jobs.hf_train`` does:

* weights: every parameter in fp32 (the job loads fp32 master weights; bf16 is autocast),
  the frozen CLIP tower included; FSDP shards them over the ranks;
* grads 4 B and AdamW state 8 B per trained parameter (sharded by FSDP). FSDP2
  accumulating micro batches without a reduce-scatter (``set_requires_gradient_sync(False)``)
  keeps the *unsharded* fp32 gradients of every layer until the step's last micro batch,
  so with gradient accumulation the gradients are not sharded; DDP adds its buckets (4 B);
* FSDP working set: the root group (tower, connector, embeddings, head) stays gathered
  through forward and backward, plus two decoder layers (the current and the prefetched);
* autocast cache (CUDA, bf16): torch.autocast keeps a bf16 copy of each weight it casts
  (trained weights: its cast cache, until the forward ends; frozen ones: saved for the
  backward) - the whole LLM in bf16 per rank, FSDP or not;
* activations at the stage's ``micro_batch_size`` x ``max_length`` tokens (the longest a
  sample can be, visual tokens included: a job fails at its longest batch): per decoder layer
  and token the bytes autograd saves in transformers' Qwen2 with sdpa attention (counted
  with saved-tensor hooks; ``tests/test_memory.py`` recounts them), or only each layer's
  input with gradient checkpointing plus one layer recomputed; the loss over the whole
  vocabulary (fp32 logits, log-softmax and their gradients: 12 B per token per vocabulary
  entry, 1.8 MB per token for Qwen's 152k vocabulary); the connector's saved tensors
  (``connector_size``, traced on the meta device);
* the peak is the largest phase: forward/backward (all of the above), the optimizer step
  (state plus AdamW's temporaries), loading (the full model on the device before FSDP
  shards it), the vision tower's forward (its hidden states); on CPU ranks (gloo) also FSDP's
  first all-gather, for which gloo allocates a second copy of the gathered root group.

An eval job (``bench_eval``) holds the whole VLM in bf16 (fp32 on CPU) on every rank, the
KV cache of a batch at the mean prompt length plus the longest generation, and one layer's
prefill at a time.

On CUDA the job also needs its context and NCCL buffers (``CUDA_RESERVED_GB``) and the
caching allocator's slack (``ALLOCATOR_SLACK``): ``Estimate.needs_gb`` adds them before the
comparison with ``resources.<class>.gpu_mem_gb``. On CPU (``gpus: 0``) the same arithmetic
counts fp32 tensors per process; ``tests/test_real_shapes.py`` checks it against the peak
RSS of the real-shape run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GB = float(2**30)  # GiB, as mem_gb is everywhere here (an "80 GB" GPU has 80 GiB, of which ~79 usable)
CUDA_RESERVED_GB = 3.0  # CUDA context (~0.5-1 GB) and NCCL's buffers, outside torch's allocator
ALLOCATOR_SLACK = 0.10  # the caching allocator reserves more than it hands out (fragmentation)
FP32, BF16 = 4, 2


@dataclass(frozen=True)
class Tower:
    """The frozen vision tower: parameters, width, depth and tokens per image (patches + CLS)."""

    params: float
    width: int
    layers: int
    tokens: int
    levels: int  # layers concatenated as multi-level features (0: none)


@dataclass(frozen=True)
class Connector:
    """Compressor + projector: parameters, and the bytes autograd saves per image (fp32)."""

    params: float
    saved_per_image: float


@dataclass(frozen=True)
class Estimate:
    """Peak tensor bytes per rank, the phase that holds it and its terms (bytes)."""

    bytes: float
    phase: str
    parts: dict[str, float]
    device: str  # cuda | cpu
    ranks: int
    mode: str  # single | ddp | fsdp (train), replicas (eval)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def gb(self) -> float:
        return self.bytes / GB

    @property
    def needs_gb(self) -> float:
        """What a GPU must have: tensors plus allocator slack plus context; on CPU the tensors."""
        return self.gb * (1 + ALLOCATOR_SLACK) + CUDA_RESERVED_GB if self.device == "cuda" else self.gb

    def summary(self) -> str:
        top = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return f"{self.phase}: " + ", ".join(f"{k} {v / GB:.1f}" for k, v in top if v >= 0.05 * GB)

    def to_dict(self) -> dict[str, Any]:
        return {"gb": round(self.gb, 2), "needs_gb": round(self.needs_gb, 2), "phase": self.phase, "device": self.device,
                "ranks": self.ranks, "mode": self.mode, "parts_gb": {k: round(v / GB, 3) for k, v in self.parts.items()}}


def layer_bytes_per_token(shape: Any, bf16: bool, trained: bool) -> float:
    """Bytes autograd saves per token in one Qwen2 decoder layer (sdpa attention).

    fp32, trained: 8 hidden-wide tensors (the RMSNorms' inputs and outputs, q, the attention
    output, the projections' flattened inputs), k and v, 4 MLP-wide ones (gate, up, SiLU(gate),
    the down projection's input). Frozen weights need no saved inputs for their own gradients:
    4 + 2 + 3. Under bf16 autocast the RMSNorm tensors stay fp32 (4 hidden-wide, 2 if frozen)
    and the rest are bf16. Plus the two RMSNorm scales and the attention's log-sum-exp per
    head, fp32. The weights' bf16 copies are counted apart (``autocast copies``).
    """
    h, kv, i = shape.hidden_size, shape.kv_dim, shape.intermediate_size
    small = FP32 * (2 + shape.num_heads)
    if not bf16:
        return small + (32 * h + 8 * kv + 16 * i if trained else 16 * h + 8 * kv + 12 * i)
    return small + (30 * h + 4 * kv + 8 * i if trained else 12 * h + 4 * kv + 6 * i)


def connector_size(entry: Any, vision: Any, hidden: int, visual_tokens: int) -> Connector:
    """Parameters and saved bytes per image of a cell's compressor + projector, built and run on the meta device.

    Exact for any compressor class (a user's plug-in too) at no cost: meta tensors carry
    shapes, not data. The saved tensors are those autograd keeps for the backward pass.
    """
    import torch
    from torch import nn

    from sweep.models.compressors import build_compressor

    width = int(vision.hidden_size)
    grid = vision.image_size // vision.patch_size
    levels = len(vision.feature_layers) or 1
    with torch.device("meta"):
        comp = build_compressor(entry, width, width, grid, visual_tokens, level_dim=width * levels, question_dim=hidden)
        proj = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        feats = torch.empty(1, grid * grid, width)
        kwargs: dict[str, torch.Tensor] = {}
        if comp.needs_levels:
            kwargs["levels"] = torch.empty(1, grid * grid, width * levels)
        if comp.needs_question:
            kwargs["question"] = torch.empty(1, hidden)
    params = [*comp.parameters(), *proj.parameters()]
    own = {p.untyped_storage()._cdata for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in own:
            saved[storage._cdata] = storage.nbytes()
        return t

    comp.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        proj(comp(feats, **kwargs))
    return Connector(params=float(sum(p.numel() for p in params)), saved_per_image=float(sum(saved.values())))


def tower_of(vision: Any) -> Tower | None:
    """The ``Tower`` of a ``ClipVision`` spec, or None when its width and depth are not stated."""
    if getattr(vision, "hidden_size", None) is None or getattr(vision, "num_layers", None) is None:
        return None
    grid = vision.image_size // vision.patch_size
    return Tower(params=float(vision.params_b) * 1e9, width=int(vision.hidden_size), layers=int(vision.num_layers),
                 tokens=grid * grid + 1, levels=len(vision.feature_layers))


def _tower_forward(tower: Tower, images: int, nbytes: int) -> float:
    """Every hidden state of the tower (output_hidden_states) for a batch of images."""
    return images * (tower.layers + 1) * tower.tokens * tower.width * nbytes


def train_estimate(shape: Any, tower: Tower, conn: Connector, *, trainable: str, micro_batch: int, seq: int,
                   ranks: int, mode: str, device: str, precision: str, checkpointing: bool, accumulation: bool) -> Estimate:
    """Peak bytes per rank of one LLaVA training stage (``sweep.jobs.hf_train``); see the module docstring.

    ``mode``: single | ddp | fsdp (``sweep.jobs.parallel.resolve``); ``accumulation``: more than
    one micro batch per rank per optimizer step; ``checkpointing``: as the job applies it (stage 2 only).
    """
    h, layers, vocab = shape.hidden_size, shape.num_layers, shape.vocab_size
    p_layer, p_llm = shape.layer_params(), shape.params()
    p_all = p_llm + tower.params + conn.params
    trained_llm = trainable == "all"
    p_train = conn.params + (p_llm if trained_llm else 0)
    shards = ranks if mode == "fsdp" else 1
    bf16 = device == "cuda" and precision == "bf16"
    tokens = micro_batch * seq

    weights = FP32 * p_all / shards
    optimizer = 2 * FP32 * p_train / shards
    grads_sharded = FP32 * p_train / shards
    # FSDP's root group: everything outside the decoder layers; it stays gathered through forward and backward.
    llm_root = shape.embedding_params() + h
    root = tower.params + conn.params + llm_root
    extra: dict[str, float] = {}
    if mode == "fsdp":
        # Without a reduce-scatter per micro batch every group keeps its full fp32 gradient; with one,
        # only the root group's gradient is whole until the backward ends.
        root_grads = FP32 * (conn.params + (llm_root if trained_llm else 0))
        grads = FP32 * p_train if accumulation else grads_sharded + root_grads
        extra["fsdp gathered"] = FP32 * (root + 2 * p_layer)
    else:
        grads = FP32 * p_train
        if mode == "ddp":
            extra["ddp buckets"] = FP32 * p_train
    if bf16:
        # A bf16 copy of every weight a matmul uses (the input embedding is looked up, not cast).
        untied_input = 0 if shape.tie_word_embeddings else vocab * h
        extra["autocast copies"] = BF16 * (p_llm - untied_input + conn.params)

    per_layer = layer_bytes_per_token(shape, bf16, trained_llm)
    if checkpointing and trained_llm:
        layer_acts = tokens * (layers * FP32 * h + per_layer)  # each layer's input, and one layer recomputed
    else:
        layer_acts = tokens * layers * per_layer
    acts = {
        "activations": layer_acts + tokens * FP32 * 8 * h,  # + the spliced input embeddings
        "loss": tokens * (3 * FP32 * vocab + FP32 * 4 * h),  # logits, log-softmax, their gradients (fp32)
        "connector": micro_batch * conn.saved_per_image,
    }
    state = {"weights": weights, "grads": grads, "optimizer": optimizer}
    phases = {"forward/backward": {**state, **extra, **acts}}
    # AdamW's temporaries: CUDA's foreach kernels one trained-sized list, CPU's loop the largest tensor.
    largest = max(vocab * h, h * shape.intermediate_size) if trained_llm else conn.params
    step_temp = FP32 * (p_train if device == "cuda" else largest) / shards
    phases["optimizer step"] = {"weights": weights, "grads": grads_sharded, "optimizer": optimizer, "adamw temporaries": step_temp}
    tower_nbytes = FP32
    phases["vision tower"] = {**state, **{k: v for k, v in extra.items() if k != "autocast copies"},
                              "tower hidden states": _tower_forward(tower, micro_batch, tower_nbytes)}
    if mode == "fsdp" and device == "cuda":
        phases["loading"] = {"weights": FP32 * p_all}  # the job moves the whole model to its GPU, then shards it
    if mode == "fsdp" and device == "cpu":
        # gloo's all-gather copies its whole output once more (NCCL writes in place): the root group's, as the forward starts.
        phases["fsdp all-gather"] = {**state, **extra, "gloo copy": FP32 * root}
    return _peak(phases, device, ranks, mode)


def eval_estimate(shape: Any, tower: Tower, conn: Connector, *, batch: int, prompt: float, new_tokens: int,
                  ranks: int, device: str) -> Estimate:
    """Peak bytes per rank of a benchmark eval (``sweep.jobs.hf_eval``): bf16 weights on CUDA, fp32 on CPU."""
    nbytes = BF16 if device == "cuda" else FP32
    h, kv, layers = shape.hidden_size, shape.kv_dim, shape.num_layers
    weights = nbytes * (shape.params() + tower.params + conn.params)
    seq = prompt + new_tokens
    cache = nbytes * batch * seq * 2 * kv * (layers + 1)  # K and V per layer; a layer's cat copies it once
    prefill = nbytes * batch * prompt * (4 * h + 2 * kv + 3 * shape.intermediate_size)
    timing_logits = nbytes * prompt * shape.vocab_size  # the batch-1 prefill timing keeps every position's logits
    phases = {
        "generate": {"weights": weights, "kv cache": cache, "prefill": max(prefill, timing_logits)},
        "vision tower": {"weights": weights, "tower hidden states": _tower_forward(tower, batch, nbytes)},
    }
    return _peak(phases, device, ranks, "replicas")


def _peak(phases: dict[str, dict[str, float]], device: str, ranks: int, mode: str) -> Estimate:
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    phase = max(totals, key=lambda k: totals[k])
    return Estimate(bytes=totals[phase], phase=phase, parts=dict(phases[phase]), device=device, ranks=ranks,
                    mode=mode, phases=totals)


# ---- the plan's view: one job's estimate, and what would make it fit --------------------------------------


def ranks_of(resources: Any) -> int:
    """Processes of a job with these resources: ``tasks_per_node`` (default one per GPU) x ``nodes``."""
    gpus = int(resources.get("gpus") or 0)
    return int(resources.get("tasks_per_node") or max(1, gpus)) * int(resources.get("nodes") or 1)


def estimate_job(kind: str, spec: Any, ranks: int, device: str, eval_text_tokens: float) -> Estimate | None:
    """The estimate for an ``hf_train`` or ``bench_eval`` job on ``ranks`` ranks of ``device``; None for other
    kinds, or when the catalogue does not state the LLM's ``shape`` or the tower's width and depth."""
    if kind not in ("hf_train", "bench_eval"):
        return None
    shape, tower = spec.llm.shape, tower_of(spec.vision)
    if shape is None or tower is None:
        return None
    conn = _connector(spec.compressor, spec.vision, shape.hidden_size, spec.cell.visual_tokens)
    if kind == "bench_eval":
        new_tokens = max((b.max_new_tokens for b in spec.benchmarks), default=0)
        return eval_estimate(shape, tower, conn, batch=spec.batch_size, prompt=spec.cell.visual_tokens + eval_text_tokens,
                             new_tokens=new_tokens, ranks=ranks, device=device)
    from sweep.distributed import World
    from sweep.jobs.parallel import resolve

    stage = spec.stage
    per_rank = max(1, stage.global_batch_size // ranks)
    micro = max(1, min(stage.micro_batch_size, per_rank))
    return train_estimate(shape, tower, conn, trainable=stage.trainable, micro_batch=micro, seq=stage.max_length,
                          ranks=ranks, mode=resolve(stage.parallel, World(world_size=ranks), stage.trainable == "all"),
                          device=device, precision=stage.precision, accumulation=-(-per_rank // micro) > 1,
                          checkpointing=stage.gradient_checkpointing and stage.trainable == "all")


_CONNECTORS: dict[tuple, Connector] = {}


def _connector(entry: Any, vision: Any, hidden: int, visual_tokens: int) -> Connector:
    """``connector_size``, once per (compressor, tower, LLM width, V) in a process."""
    import json

    key = (json.dumps(entry.to_dict(), sort_keys=True, default=str), json.dumps(vision.to_dict(), sort_keys=True), hidden, visual_tokens)
    if key not in _CONNECTORS:
        _CONNECTORS[key] = connector_size(entry, vision, hidden, visual_tokens)
    return _CONNECTORS[key]
