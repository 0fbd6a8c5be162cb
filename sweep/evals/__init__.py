"""Evaluation: benchmark loaders, official scorers and the family averages.

- ``registry``: ``build_benchmark(name, root, **options)`` -> a ``Benchmark`` whose
  ``load()`` gives ``EvalItem``s and whose ``score(items, predictions)`` gives
  ``{"score": headline in [0, 1], "n": ..., "unparsed": ..., sub-scores}``; the
  class states its published prompt, ``max_new_tokens`` and reference scorer, and
  ``identity(**options)`` what of that changes results.
- ``benchmarks/<name>.py``: one benchmark each, its loader and the answer-reading
  rules of the reference it follows; ``scoring``: the rules several share
  (VLMEvalKit's ``can_infer``, edit distance); ``normalize``: TextVQA's answer
  normalisation.
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
