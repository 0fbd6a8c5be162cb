"""One module per benchmark: a loader for the benchmark's own files and its official metric.

Use them through ``sweep.evals.registry`` (``build_benchmark(name, root)``); the
shared item type and base class live in ``base.py``, the per-answer rules in
``sweep.evals.scoring``.
"""
