"""Benchmark registry: name -> lazy ``"module:Class"`` string, built on demand.

    from sweep.evals.registry import build_benchmark, benchmark_names
    bench = build_benchmark("gqa", "/data/eval/gqa")        # a Benchmark
    bench = build_benchmark("pope", root, headline="f1")    # options go to the class

A benchmark module is imported only when it is asked for, so listing names costs
nothing. An unknown name is a ``SweepError`` that suggests the close names. Add a
benchmark by writing a ``Benchmark`` subclass and adding it to ``BENCHMARKS``.
The plan checks every name and option against this registry
(``sweep.specs.data``), so a typo fails there, not inside an eval job.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import Benchmark
from sweep.registry import Registry

BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark", {
    "ai2d": "sweep.evals.benchmarks.ai2d:AI2D",
    "chartqa": "sweep.evals.benchmarks.chartqa:ChartQA",
    "docvqa": "sweep.evals.benchmarks.docvqa:DocVQA",
    "gqa": "sweep.evals.benchmarks.gqa:GQA",
    "mathvista": "sweep.evals.benchmarks.mathvista:MathVista",
    "mmbench": "sweep.evals.benchmarks.mmbench:MMBench",
    "mme": "sweep.evals.benchmarks.mme:MME",
    "mmmu": "sweep.evals.benchmarks.mmmu:MMMU",
    "ocrbench": "sweep.evals.benchmarks.ocrbench:OCRBench",
    "pope": "sweep.evals.benchmarks.pope:POPE",
    "scienceqa_img": "sweep.evals.benchmarks.scienceqa:ScienceQAImg",
    "textvqa": "sweep.evals.benchmarks.textvqa:TextVQA",
}, field="eval.families", base=Benchmark)


def benchmark_names() -> list[str]:
    """The registered benchmark names, sorted."""
    return BENCHMARKS.names()


def benchmark_class(name: str) -> type[Benchmark]:
    """The class registered under ``name``, imported now."""
    return BENCHMARKS.load(name)


def build_benchmark(name: str, root: str | Path, **options: Any) -> Benchmark:
    """An instance of benchmark ``name`` reading from ``root``, with its options."""
    cls = benchmark_class(name)
    try:
        inspect.signature(cls).bind(root, **options)
    except TypeError as err:
        raise SweepError(
            f"eval.{name}", f"bad options {sorted(options)} ({err})", f"see {cls.__module__} for the options"
        ) from err
    return cls(root, **options)
