"""The ``eval`` job: greedy exact-match accuracy of a trained cell on the synthetic test split.

Spec: ``SyntheticEvalSpec`` (cell, llm, compressor, eval). Upstream: ``train`` (the
final stage's folder) and ``features``. Metric names are read by the scaling
fitter, keep them (the shared ones come from ``sweep.jobs.eval_flow``):

* ``acc/<family>/<qtype>``  accuracy per question type
* ``error/<family>``        1 - mean accuracy over the family's question types
* ``N`` (non-embedding LLM params), ``N_total`` (LLM params with embeddings),
  ``V`` (visual tokens), ``Q`` (mean question length in tokens)
* ``flops/inference`` = 2 N (Q + V), the paper's figure; beside it the measured
  parts ``flops/vision``, ``flops/compressor``, ``flops/projector``,
  ``flops/llm_prefill`` (attention included), ``flops/question_pass`` (the LLM pass
  over the question that question-aware compressors need, else 0), ``flops/total``
* ``eval/questions``, ``eval/questions_per_s``, ``eval/seconds``
* ``questions/<family>`` the effective number of questions behind ``error/<family>`` (its noise)
* ``latency/prefill_ms`` median wall time of a batch-1 prefill (compressor, projector,
  LLM; the vision features are cached, so the vision tower is not in it)
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from sweep.jobs.context import JobContext

if TYPE_CHECKING:
    import torch

    from sweep.specs.jobs import SyntheticEvalSpec


def select_questions(qtype: torch.Tensor, n_types: int, max_questions: int) -> torch.Tensor:
    """Up to ``max_questions`` test questions, the same number of each type, in split order."""
    import torch

    if max_questions <= 0:
        return torch.arange(len(qtype))
    per_type = max(1, max_questions // n_types)
    picked = [torch.nonzero(qtype == t).flatten()[:per_type] for t in range(n_types)]
    return torch.sort(torch.cat(picked)).values


def run(ctx: JobContext) -> dict[str, float]:
    """Evaluate on the synthetic test split; returns accuracy, error, size, token and FLOP metrics."""
    import torch

    from sweep.jobs import common
    from sweep.jobs.eval_flow import cell_metrics
    from sweep.jobs.train import build_cell_model, make_batch, model_path
    from sweep.models.vlm import llm_forward_flops, non_embedding_params

    if not ctx.world.leader:  # one process evaluates
        return {}
    t0 = time.perf_counter()
    spec: SyntheticEvalSpec = ctx.spec
    cache, meta = common.load_cache(ctx.upstream_dir("features"), "test")
    pad_id, eos_id = int(meta["pad"]), int(meta["eos"])

    model = build_cell_model(spec, meta)
    model.load_state_dict(torch.load(model_path(ctx.upstream_dir("train")), weights_only=True)["state_dict"])
    model.eval()

    qtypes: list[str] = list(meta["qtypes"])
    chosen = select_questions(cache.qtype, len(qtypes), spec.eval.max_questions)
    batch_size = spec.eval.batch_size
    correct = torch.zeros(len(chosen), dtype=torch.bool)
    q_tokens = 0
    levels = model.compressor.needs_levels  # gather the multi-level features only for a compressor that reads them
    t1 = time.perf_counter()
    for i in range(0, len(chosen), batch_size):
        idx = chosen[i : i + batch_size]
        batch = make_batch(cache, idx, pad_id, levels)
        target = batch.pop("a_ids")
        pred = model.generate(**batch, max_tokens=target.shape[1], eos_id=eos_id)
        # Exact match up to and including EOS; padding after EOS is ignored.
        ok = (pred == target) | (target == pad_id)
        correct[i : i + len(idx)] = ok.all(1)
        q_tokens += int(batch["q_mask"].sum())
        ctx.progress(i + len(idx), len(chosen), phase="eval")
    seconds = time.perf_counter() - t1

    types = cache.qtype[chosen]
    scores = {name: float(correct[types == k].float().mean()) for k, name in enumerate(qtypes) if bool((types == k).any())}
    families = {family: [t for t in members if t in scores] for family, members in meta["families"].items()}
    n, v = non_embedding_params(model.llm), model.visual_tokens
    q = q_tokens / max(1, len(chosen))
    metrics = {f"acc/{family}/{t}": scores[t] for family, members in families.items() for t in members}
    counts = {name: float((types == k).sum()) for k, name in enumerate(qtypes) if name in scores}
    metrics.update(cell_metrics(scores, {f: m for f, m in families.items() if m}, n=n, v=v, q=q,
                                questions=len(chosen), t0=t0, counts=counts))
    prefill = llm_forward_flops(model.llm, q + v)
    question_pass = llm_forward_flops(model.llm, q) if model.compressor.needs_question else 0.0
    projector = 2.0 * sum(p.numel() for p in model.projector.parameters()) * v
    vision = float(meta["flops_vision"])
    compressor = float(model.compressor.flops())
    metrics.update({
        "N_total": float(sum(p.numel() for p in model.llm.parameters())),
        "flops/vision": vision,
        "flops/compressor": compressor,
        "flops/projector": projector,
        "flops/llm_prefill": prefill,
        "flops/question_pass": question_pass,
        "flops/total": vision + compressor + projector + prefill + question_pass,
        "eval/questions_per_s": len(chosen) / seconds if seconds > 0 else 0.0,
        "latency/prefill_ms": _prefill_ms(model, make_batch(cache, chosen[:1], pad_id, levels), eos_id),
    })
    return metrics


def _prefill_ms(model: Any, batch: dict[str, Any], eos_id: int, repeats: int = 5) -> float:
    """Median ms of one question's prefill (after a warm-up): compress, project, one LLM pass to the first token."""
    inputs = {k: v for k, v in batch.items() if k != "a_ids"}

    def once() -> float:
        t = time.perf_counter()
        model.generate(**inputs, max_tokens=1, eos_id=eos_id)
        return (time.perf_counter() - t) * 1000.0

    once()
    return statistics.median(once() for _ in range(repeats))
