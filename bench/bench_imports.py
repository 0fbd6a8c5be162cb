"""Benchmark: seconds a fresh process spends importing what a sweep's processes import, with and without bytecode.

Run it as ``.venv/bin/python bench/bench_imports.py [--repeats 3]``.

Every process of a run (the CLI, each local worker, each Slurm or Ray task) and of the
test suite imports torch, transformers and mlflow. Where ``PYTHONDONTWRITEBYTECODE``
is set (this machine's environment sets it), no ``.pyc`` is ever written, so each of
them compiles those packages from source again; the Makefile clears it for its
commands. This script times ``import torch, transformers, mlflow, sweep.cli`` (and
the Qwen2 model class) in fresh interpreters, two ways, each with its own empty
``PYTHONPYCACHEPREFIX`` so the venv's own caches do not count:

- ``no bytecode``: ``PYTHONDONTWRITEBYTECODE=1``: every process compiles;
- ``bytecode``: the first process compiles and writes, the later ones read it.

It prints; it does not fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTS = "import torch, transformers, mlflow, sweep.cli; from transformers import Qwen2ForCausalLM"


def timed(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], env=env, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| bytecode | first process s | later processes s (median) |")
    print("| --- | --- | --- |")
    for label, dont_write in (("no bytecode", "1"), ("bytecode", "")):
        with tempfile.TemporaryDirectory(prefix="bench-pyc-") as prefix:
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": dont_write, "PYTHONPYCACHEPREFIX": prefix}
            first = timed(env)
            later = [timed(env) for _ in range(args.repeats)]
        print(f"| {label} | {first:.1f} | {statistics.median(later):.1f} |", flush=True)


if __name__ == "__main__":
    main()
