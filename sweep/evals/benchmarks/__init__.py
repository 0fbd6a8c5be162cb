"""One module per benchmark: a loader for the benchmark's own files, its published prompt and
the rules of the reference scorer it follows.

Use them through ``sweep.evals.registry`` (``build_benchmark(name, root)``); the
shared item type and base class live in ``base.py``, rules used by several
benchmarks in ``sweep.evals.scoring``.
"""
