"""Benchmark: the scaling-law fit plus 1000 bootstrap resamples on the paper's 4 x 7 table.

Run it as ``.venv/bin/python bench/bench_fit.py [--repeats 3] [--n-boot 1000]``.

The table is the paper grid (N = 0.5, 1.8, 4, 7 B; V = 1, 4, 16, 36, 64, 144,
576) with errors drawn from the law plus noise. Two figures are timed, each
the median (and worst) of a few repeats, in wall-clock seconds:

- ``paper form``: multi-start fit of ``Y = A N^-alpha V^-beta + D`` and 1000
  refits on cell resamples (the intervals);
- ``full family``: what ``fit_study`` does per family by default: both forms
  with 1000 resamples each, the held-out refit without the largest N, V* and
  the frontier tables for Q = 0 and 50.

The target is at most 10 s on 2 cores. It prints; it does not fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from sweep.scaling import Observation, fit_study

N_BILLIONS = (0.5, 1.8, 4.0, 7.0)
V_TOKENS = (1, 4, 16, 36, 64, 144, 576)
TRUTH = {"A": 0.25, "alpha": 0.35, "beta": 0.07, "D": 0.2}
TARGET_S = 10.0


def table(seed: int = 0, noise: float = 0.005) -> list[Observation]:
    rng = np.random.default_rng(seed)
    t = TRUTH
    return [
        Observation("bench", n * 1e9, float(v), float(t["A"] * n ** -t["alpha"] * v ** -t["beta"] + t["D"] + rng.normal(0, noise)))
        for n in N_BILLIONS
        for v in V_TOKENS
    ]


def timed(obs: list[Observation], repeats: int, **kw: object) -> list[float]:
    out = []
    for r in range(repeats):
        start = time.perf_counter()
        fit_study(obs, seed=r, **kw)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    obs = table()
    fit_study(obs, n_boot=5)  # import and first-call costs, not part of the figure

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"4 x 7 table ({len(obs)} cells), {args.n_boot} bootstrap resamples, {args.repeats} repeats, {cores} cores visible")
    rows = [
        ("paper form", timed(obs, args.repeats, n_boot=args.n_boot, forms=("multiplicative",), heldout="none")),
        ("full family", timed(obs, args.repeats, n_boot=args.n_boot)),
    ]
    for name, times in rows:
        med, worst = statistics.median(times), max(times)
        verdict = "within" if worst <= TARGET_S else "OVER"
        print(f"{name:12s} median {med:6.2f} s   worst {worst:6.2f} s   ({verdict} the {TARGET_S:g} s target)   runs: {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
