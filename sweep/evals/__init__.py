"""Evaluation: benchmark loaders, official scorers and the family averages.

- ``registry``: ``build_benchmark(name, root, **options)`` -> a ``Benchmark`` whose
  ``load()`` gives ``EvalItem``s and whose ``score(items, predictions)`` gives
  ``{"score": headline in [0, 1], "n": ..., sub-scores}``.
- ``scoring``: the per-answer rules (VQA accuracy, relaxed accuracy, option and
  yes/no parsing, ...), pure functions.
- ``families``: error of a benchmark family = 1 - mean headline score.

Nothing here downloads data: every benchmark reads the files of its official
release from a local folder (layouts in each module's docstring).
"""

from sweep.evals.benchmarks.base import Benchmark, EvalItem
from sweep.evals.families import family_errors
from sweep.evals.registry import BENCHMARKS, benchmark_class, benchmark_names, build_benchmark

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "EvalItem",
    "benchmark_class",
    "benchmark_names",
    "build_benchmark",
    "family_errors",
]
