"""The part both eval bodies share: from per-task scores to the metrics the fitter reads.

A family's error is 1 - the mean score of its members (``evals.family_errors``):
the synthetic question types for the mini study, the benchmarks for the paper
grid. Every eval run also logs the cell's size and token counts and the paper's
inference FLOPs ``2 N (Q + V)``, under the same names on both paths:

* ``error/<family>``, ``N`` (non-embedding LLM params), ``V``, ``Q`` (mean text tokens per prompt)
* ``flops/inference``, ``eval/questions``, ``eval/seconds``
* ``questions/<family>``: the effective number of questions behind ``error/<family>``
  (``evals.families.family_questions``), its binomial noise for the fitter, where
  ``counts`` gives each member's question count
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence


def cell_metrics(scores: Mapping[str, float], families: Mapping[str, Sequence[str]], *, n: float, v: float,
                 q: float, questions: int, t0: float, counts: Mapping[str, float] | None = None) -> dict[str, float]:
    """Family errors plus the size, token, FLOP and count metrics of one evaluated cell."""
    from sweep.evals import family_errors
    from sweep.evals.families import family_questions

    metrics = {f"error/{family}": err for family, err in family_errors(scores, families).items()}
    metrics.update({f"questions/{family}": k for family, k in family_questions(counts or {}, families).items()})
    metrics.update({
        "N": float(n),
        "V": float(v),
        "Q": float(q),
        "flops/inference": 2.0 * n * (q + v),
        "eval/questions": float(questions),
        "eval/seconds": time.perf_counter() - t0,
    })
    return metrics
