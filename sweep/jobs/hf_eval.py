"""The ``bench_eval`` job: real benchmarks, greedy answers, official scorers.

Spec: ``BenchEvalSpec``: the families and, per benchmark, a ``BenchRun`` the plan
resolved (its folder, its options, its generation length, its prompt and scorer
method), plus ``max_items`` (cap per benchmark, 0 = all) and ``batch_size``.

Metrics (the scaling fitter reads ``error/<family>``, ``N``, ``V``, ``Q``,
``flops/inference``; the shared ones come from ``sweep.jobs.eval_flow``):

* ``bench/<name>/score`` (headline in [0, 1]) and ``bench/<name>/<sub-score>``, among them
  ``bench/<name>/unparsed`` and the headline conventions (``pope/f1_mean``,
  ``mme/perception_total``, ``mme/cognition_total``, ``ocrbench/final_score``, ``mmbench/circular``)
* ``error/<family>`` = 1 - mean headline score (``families.family_errors``)
* ``N`` (non-embedding LLM params), ``V``, ``Q`` (mean prompt tokens, image marker excluded)
* ``flops/inference`` = 2 N (Q + V)
* ``latency/prefill_ms``: median wall time of one batch-1 prefill (vision + connector + LLM)
* ``questions/<family>``: effective number of questions behind ``error/<family>`` (from each
  benchmark's ``n``), its binomial noise for the scaling fitter
* ``eval/peak_mem_gb``: the largest rank's peak memory once the model is loaded (``sweep.jobs.peakmem``)

Each benchmark's answers are written to ``predictions/<name>.jsonl`` ({id, prediction})
and logged as an artifact, so a score can be recomputed from them.

With several ranks (``ctx.world``) the batches are dealt out round-robin, the
answers gathered on the leader, and the leader scores, writes and times the prefill.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.jobs.context import JobContext

if TYPE_CHECKING:
    from sweep.specs.jobs import BenchEvalSpec


def _prefill_ms(vlm: Any, ids: Any, image: Any, repeats: int = 3) -> float:
    """Median ms of a batch-1 prefill (after one warm-up), synchronising CUDA around it."""
    import torch

    def once() -> float:
        if vlm.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        embeds, mask = vlm.left_padded([ids], [image])
        vlm.llm(inputs_embeds=embeds, attention_mask=mask)
        if vlm.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1000.0

    with torch.no_grad():
        once()
        return statistics.median(once() for _ in range(repeats))


def run(ctx: JobContext) -> dict[str, float]:
    """Evaluate every benchmark of the eval families; returns score, error, size, FLOP and latency metrics."""
    import torch

    from sweep import distributed
    from sweep.evals import build_benchmark
    from sweep.jobs import common
    from sweep.jobs.eval_flow import cell_metrics
    from sweep.jobs.peakmem import PeakMemory, peak_metrics
    from sweep.models.hf_vlm import build_hf_vlm, prompt_ids

    t0 = time.perf_counter()
    world = ctx.world
    spec: BenchEvalSpec = ctx.spec
    device = torch.device(ctx.device if ctx.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    probe = PeakMemory(device)
    common.set_seed(spec.cell.seed)
    vlm = build_hf_vlm(spec.llm, spec.compressor, spec.vision, spec.cell.visual_tokens)
    vlm.load_weights(torch.load(ctx.upstream_dir("train") / common.MODEL_FILE, weights_only=True))
    vlm.to(device=device, dtype=dtype).eval()
    probe.start()

    out_dir = ctx.workdir / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    scores: dict[str, float] = {}
    prompt_tokens, n_prompts, sample = 0, 0, None
    batch_size = spec.batch_size
    for run_spec in spec.benchmarks:
        name = run_spec.name
        bench = build_benchmark(name, Path(run_spec.root).expanduser(), **run_spec.options)
        items = bench.load()
        items = items[: spec.max_items] if spec.max_items > 0 else items
        preds: dict[str, str] = {}
        # Batch b goes to rank b % world_size: the batches (and so the answers) are those of one process.
        for i in range(world.rank * batch_size, len(items), batch_size * world.world_size):
            chunk = items[i : i + batch_size]
            images = [it.load_image() for it in chunk]
            ids = [prompt_ids(vlm.tokenizer, it.prompt, img is not None) for it, img in zip(chunk, images)]
            prompt_tokens += sum(int((x >= 0).sum()) for x in ids)
            n_prompts += len(ids)
            if sample is None:
                sample = (ids[0], images[0])
            for it, text in zip(chunk, vlm.generate(ids, images, run_spec.max_new_tokens)):
                preds[it.id] = text
            ctx.progress(min(len(items), i + batch_size * world.world_size), len(items), phase=f"eval {name}")
        preds = distributed.merged(preds)
        if not world.leader:
            continue
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": it.id, "prediction": preds[it.id]}) + "\n" for it in items)
        ctx.log_artifact(out_dir / f"{name}.jsonl")
        result = bench.score(items, preds)
        scores[name] = float(result["score"])
        metrics.update({f"bench/{name}/{k}": float(v) for k, v in result.items()})

    prompt_tokens, n_prompts = int(distributed.total(prompt_tokens)), int(distributed.total(n_prompts))
    peaks = distributed.merged({world.rank: probe.peak_bytes()})
    if not world.leader:
        return {}
    counts = {b: metrics[f"bench/{b}/n"] for b in scores if f"bench/{b}/n" in metrics}
    metrics.update(peak_metrics("eval", peaks))
    metrics.update(cell_metrics(scores, spec.families, n=vlm.n_params, v=vlm.visual_tokens,
                                q=prompt_tokens / max(1, n_prompts), questions=n_prompts, t0=t0, counts=counts))
    metrics["latency/prefill_ms"] = _prefill_ms(vlm, *sample) if sample is not None else 0.0
    return metrics
