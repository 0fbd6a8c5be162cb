"""Benchmark families: error = 1 - mean headline score over the family's benchmarks.

    family_errors({"gqa": 0.62, "pope": 0.86, "textvqa": 0.58},
                  {"reasoning": ["gqa", "pope"], "ocr": ["textvqa"]})
    -> {"reasoning": 0.26, "ocr": 0.42}

This is the quantity the scaling law is fitted to (Li et al. 2024 average the
benchmark accuracies of a family with equal weights). Scores must be headline
scores in [0, 1] (``Benchmark.score(...)["score"]``); a family that names a
benchmark with no score, an empty family, or a score outside [0, 1] (a
percentage, say) is a ``SweepError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sweep.errors import SweepError, close_names


def family_errors(scores: Mapping[str, float], families: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``{family: 1 - mean(scores[b] for b in family)}`` for every family."""
    for bench, value in scores.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise SweepError(
                f"scores.{bench}",
                f"is {value!r}, not a score in [0, 1]",
                "pass headline scores as fractions, not percentages",
            )
    errors = {}
    for family, members in families.items():
        if isinstance(members, str) or not members:
            raise SweepError(
                f"eval.families.{family}", f"is {members!r}, not a non-empty list of benchmarks", "list its benchmarks"
            )
        for bench in members:
            if bench not in scores:
                raise SweepError(
                    f"eval.families.{family}",
                    f"names benchmark {bench!r}, which has no score.{close_names(bench, scores)}",
                    f"use benchmarks that were evaluated: {sorted(scores)}",
                )
        errors[family] = 1.0 - sum(scores[b] for b in members) / len(members)
    return errors


def family_questions(counts: Mapping[str, float], families: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``{family: effective number of questions}`` behind each family's error.

    A family's error is an equal-weight mean of K member scores, member k
    averaging ``n_k`` questions; if every member had the same accuracy p its
    binomial variance would be ``p (1 - p) / n`` with ``n = K^2 / sum(1 / n_k)``.
    The scaling fitter reads this as the family's sampling noise. Families
    with a member of unknown count are left out.
    """
    out = {}
    for family, members in families.items():
        sizes = [counts.get(b) for b in members]
        if members and all(s is not None and s > 0 for s in sizes):
            out[family] = len(sizes) ** 2 / sum(1.0 / float(s) for s in sizes)  # type: ignore[arg-type]
    return out
