"""FLOPs and GPU-hour estimates for the plan (pure arithmetic, no models built).

Training a dense decoder costs about 6*N FLOPs per token (2N forward, 4N
backward); with the LLM frozen (stage 1) the backward pass still flows through
it for the activations, so 4*N. Inference prefill costs 2*N per token, which is
the paper's 2*N*(Q+V). A frozen vision tower costs 2*N_vision per patch token.
"""

from __future__ import annotations

from typing import Any

ANSWER_TOKENS = 8  # rough generated/answer length per question, for estimates only


def vision_flops_per_image(vision: Any) -> float:
    """Forward FLOPs of the frozen tower for one image (a ``ClipVision`` or ``MiniVision`` spec)."""
    return 2.0 * vision.params() * (vision.grid ** 2 + 1)


def train_flops(llm: Any, stage: Any, visual_tokens: int, text_tokens: float, samples: float, vision: Any | None) -> float:
    """FLOPs of one training stage: LLM forward+backward on V+Q tokens, plus the vision tower if not cached."""
    n = llm.params()
    per_token = 6.0 * n if stage.trainable == "all" else 4.0 * n
    total = per_token * (visual_tokens + text_tokens) * samples
    if vision is not None:
        total += vision_flops_per_image(vision) * samples
    return total


def eval_flops(llm: Any, visual_tokens: int, text_tokens: float, samples: float, vision: Any | None) -> float:
    """FLOPs of evaluating one cell: prefill plus a short answer, plus the tower if not cached."""
    total = 2.0 * llm.params() * (visual_tokens + text_tokens + ANSWER_TOKENS) * samples
    if vision is not None:
        total += vision_flops_per_image(vision) * samples
    return total


def measured_mfu(cost: Any) -> dict[str, float]:
    """Training MFU per LLM (median over V) from the ``bench/bench_gpu.py`` JSON at ``cost.measured``; {} if unset."""
    import json
    import statistics
    from pathlib import Path

    from sweep.errors import SweepError

    path = cost.measured
    if not path:
        return {}
    try:
        rows = json.loads(Path(str(path)).expanduser().read_text())["rows"]
        by_llm: dict[str, list[float]] = {}
        for r in rows:
            if r.get("mfu"):
                by_llm.setdefault(str(r["llm"]), []).append(float(r["mfu"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError("cost.measured", f"cannot read GPU benchmark figures from {path}: {e}",
                         "point it at the JSON `make bench-gpu` wrote (bench_gpu.json), or set cost.measured=null") from None
    return {llm: statistics.median(v) for llm, v in by_llm.items()}


def gpu_hours(flops: float, gpus: int, cost: Any, mfu: float | None = None) -> float:
    """Wall-clock GPU-hours at ``mfu`` (default: the assumed model-FLOPs utilisation); 0 for CPU jobs."""
    if gpus <= 0:
        return 0.0
    return flops / (cost.gpu_peak_tflops * 1e12 * float(mfu or cost.assumed_mfu) * 3600.0)
