"""Typed data and evaluation config: what the jobs read and how they are scored.

Data: the synthetic generator (mini study) or LLaVA-format JSON plus images (the paper
grid). Eval: exact match on the synthetic test split, or real benchmarks read from
local folders and scored by their official rules. Benchmark names are checked
against the benchmark registry and each benchmark's options against its class's
constructor when the config is parsed, so a typo fails the plan, not the job.
Roots and paths are incidental: moving the data never changes an id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sweep.errors import SweepError
from sweep.specs.schema import Spec, at_least, incidental, join, non_empty, parse_value, positive, semantic


@dataclass(frozen=True, kw_only=True)
class SyntheticData(Spec):
    """Deterministic synthetic VQA (sweep/data/synthetic.py): a reasoning family and an OCR-like family."""

    kind: Literal["synthetic"] = semantic("synthetic")
    seed: int = semantic(0)
    train_images: int = semantic(check=positive)
    test_images: int = semantic(check=positive)
    # Must equal vision.image_size.
    image_size: int = semantic(check=positive)


@dataclass(frozen=True, kw_only=True)
class LlavaFiles(Spec):
    """One split of LLaVA-format data, relative to ``data.root``."""

    json: str = semantic(check=non_empty)
    images: str = semantic(check=non_empty)
    # Samples in the split, for the plan's cost estimate (the job counts them itself).
    samples: int = incidental(check=positive)


@dataclass(frozen=True, kw_only=True)
class LlavaData(Spec):
    """LLaVA-format JSON plus an image folder per training stage (README, "Data layout")."""

    kind: Literal["llava"] = semantic("llava")
    root: str = incidental()
    stage1: LlavaFiles = semantic()
    stage2: LlavaFiles = semantic()


Data = SyntheticData | LlavaData


@dataclass(frozen=True, kw_only=True)
class SyntheticEval(Spec):
    """Greedy exact match per question type on the synthetic test split."""

    kind: Literal["synthetic"] = semantic("synthetic")
    # Questions per cell, spread evenly over the question types; 0 = the whole split.
    max_questions: int = semantic(2000, check=at_least(0))
    batch_size: int = incidental(250, check=positive)


@dataclass(frozen=True, kw_only=True)
class BenchOptions(Spec):
    """One benchmark's settings: where its files are, its generation length, its class's own options."""

    # Folder of its files; null = <eval.root>/<name>.
    root: str | None = incidental(None)
    # Tokens generated per answer; null = the benchmark's published setting.
    max_new_tokens: int | None = semantic(None, check=positive)
    # The benchmark class's constructor options, with its defaults filled in.
    options: dict[str, Any] = semantic(factory=dict)

    @classmethod
    def parse(cls, data: Any, where: str) -> BenchOptions:
        from sweep.evals.registry import BENCHMARKS
        from sweep.specs.models import bound_options

        name = where.rsplit(".", 1)[-1]
        klass = BENCHMARKS.load(name, where)
        if not isinstance(data, dict):
            raise SweepError(where, f"must be a mapping of options, got {data!r}", f"write {where}={{max_new_tokens: 16}}")
        root = data.get("root")
        new = data.get("max_new_tokens")
        given = {k: v for k, v in data.items() if k not in ("root", "max_new_tokens")}
        return cls(root=None if root is None else parse_value(str, root, join(where, "root")),
                   max_new_tokens=None if new is None else parse_value(int, new, join(where, "max_new_tokens")),
                   options=bound_options(klass, given, where, ("self", "root")))


@dataclass(frozen=True, kw_only=True)
class BenchmarkEval(Spec):
    """Real benchmarks per family; error of a family = 1 - mean headline score of its benchmarks."""

    kind: Literal["benchmarks"] = semantic("benchmarks")
    # Folder holding one folder per benchmark.
    root: str = incidental()
    families: dict[str, tuple[str, ...]] = semantic(check=non_empty)
    # Per-benchmark settings (root, max_new_tokens, class options), by benchmark name.
    benchmarks: dict[str, BenchOptions] = semantic(factory=dict)
    # Tokens generated per answer for every benchmark; null = each benchmark's published setting.
    max_new_tokens: int | None = semantic(None, check=positive)
    # Items per benchmark; 0 = all.
    max_items: int = semantic(0, check=at_least(0))
    batch_size: int = incidental(8, check=positive)
    # For the plan's cost estimate: questions per cell and text tokens per question.
    samples_per_cell: int = incidental(50000, check=positive)
    text_tokens_per_sample: float = incidental(50.0, check=positive)

    def check(self, where: str) -> None:
        from sweep.evals.registry import BENCHMARKS

        for family, names in self.families.items():
            here = join(where, f"families.{family}")
            if not names:
                raise SweepError(here, "lists no benchmark", f"list some of {', '.join(BENCHMARKS.names())}, or drop the family")
            for i, name in enumerate(names):
                BENCHMARKS.target(name, join(here, i))
        used = {n for names in self.families.values() for n in names}
        for name in self.benchmarks:
            if name not in used:
                raise SweepError(join(where, f"benchmarks.{name}"), "has settings but is in no family",
                                 f"add it to a family under {join(where, 'families')}, or drop its settings")

    def options_for(self, name: str) -> BenchOptions:
        return self.benchmarks.get(name) or BenchOptions()


Eval = SyntheticEval | BenchmarkEval
