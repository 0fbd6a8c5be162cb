"""What every benchmark is: a loader of local files and an official scorer.

A benchmark is built from the folder that holds its files (``root``) and options::

    bench = GQA("/data/eval/gqa")
    items = bench.load()                      # list[EvalItem], validated
    preds = {it.id: model_answer(it.load_image(), it.prompt) for it in items}
    scores = bench.score(items, preds)        # {"score": headline in [0, 1], ...}

``predictions`` is a mapping from item id to the model's raw text, or a sequence
aligned with ``items``. ``score`` always returns the headline under ``"score"``
(in [0, 1]) next to the benchmark's sub-scores and ``"n"`` (the number of items
scored); scoring a subset of the items is fine, a missing prediction is an error.
Every benchmark also reports ``"unparsed"``: the share of replies that no rule of
its scorer could read (a model that ignores the answer format shows up there).

Each class states how it is asked and scored, as class attributes: the prompt
template and where it comes from, the reference scorer it follows (and a version
bumped whenever its rules change), and the published ``max_new_tokens``.
``Benchmark.identity(**options)`` gathers what of this changes results, for the
eval job's id.
"""

from __future__ import annotations

import base64
import binascii
import io
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from sweep.errors import SweepError

# Appended to short-answer questions, as LLaVA-1.5 and lmms-eval prompt them.
SHORT_ANSWER = "Answer the question using a single word or phrase."
# Appended to multiple-choice questions.
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."


@dataclass
class EvalItem:
    """One question: what the model sees and what the scorer needs.

    ``prompt`` is the full user text (question, options, answer-format hint) with no
    image placeholder; the caller puts the image where its chat format wants it.
    The image is a file (``image_path``) or inline base64 (``image_b64``, MMBench);
    ``load_image`` opens either. ``target`` is the gold answer in whatever form the
    benchmark's scorer reads; ``meta`` holds grouping keys (category, split, ...).
    """

    id: str
    prompt: str
    target: Any
    image_path: Path | None = None
    image_b64: str | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def load_image(self) -> Image.Image | None:
        """The image as RGB, or None for a text-only item."""
        if self.image_path is not None:
            if not self.image_path.is_file():
                raise SweepError(
                    f"eval item {self.id}: image",
                    f"{self.image_path} does not exist",
                    "check the benchmark's image folder (see the README, 'Benchmark data layout')",
                )
            with Image.open(self.image_path) as img:
                return img.convert("RGB")
        if self.image_b64 is not None:
            try:
                raw = base64.b64decode(self.image_b64, validate=False)
                with Image.open(io.BytesIO(raw)) as img:
                    return img.convert("RGB")
            except (binascii.Error, OSError) as err:
                raise SweepError(
                    f"eval item {self.id}: image", f"the base64 image does not decode ({err})", "re-download the file"
                ) from err
        return None


class Benchmark(ABC):
    """A benchmark read from local files; subclasses set the class attributes and implement both methods."""

    name: ClassVar[str]
    #: The user text the model sees: ``{field}`` stands for a record's field, ``{choices}`` for the
    #: lettered option lines (``A. first\nB. second``), ``[...]`` for a part present only when its
    #: field is. The image goes in front of it, where the chat template puts it.
    prompt_template: ClassVar[str]
    #: Where the template and ``max_new_tokens`` come from (a file of the published setup).
    prompt_source: ClassVar[str]
    #: The reference scorer whose rules ``score`` follows.
    reference: ClassVar[str]
    #: Bumped whenever a change to the rules can change a score.
    scorer_version: ClassVar[int] = 1
    #: The published generation budget (greedy decoding).
    max_new_tokens: ClassVar[int]
    #: Constructor options that only locate files; they are not part of the identity.
    path_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SweepError(
                f"eval.{self.name}.root",
                f"{self.root} is not a folder",
                f"put the {self.name} files there (see the README, 'Benchmark data layout') or point root elsewhere",
            )

    @classmethod
    def identity(cls, **options: Any) -> dict[str, Any]:
        """What changes this benchmark's results, as JSON-able data for the eval job's id.

        ``options`` are the benchmark's config options (``eval.benchmarks.<name>``),
        ``max_new_tokens`` included; pass the value the job will use. The result
        holds the prompt template, the scorer (reference and version), the
        generation settings and every constructor option, defaults filled in,
        except ``root`` and the ``path_options`` that only name files. An
        unknown option is a ``SweepError``.
        """
        opts = dict(options)
        opts.pop("root", None)
        max_new = opts.pop("max_new_tokens", None)
        max_new = cls.max_new_tokens if max_new is None else max_new
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise SweepError(
                f"eval.benchmarks.{cls.name}.max_new_tokens",
                f"is {max_new!r}, not a positive integer",
                f"give a positive integer, or leave it out for the published {cls.max_new_tokens}",
            )
        try:
            bound = inspect.signature(cls).bind(".", **opts)
        except TypeError as err:
            raise SweepError(
                f"eval.benchmarks.{cls.name}", f"bad options {sorted(opts)} ({err})", f"see {cls.__module__} for the options"
            ) from err
        bound.apply_defaults()
        chosen = {k: _jsonable(v) for k, v in bound.arguments.items() if k != "root" and k not in cls.path_options}
        return {
            "benchmark": cls.name,
            "prompt": cls.prompt_template,
            "scorer": {"reference": cls.reference, "version": cls.scorer_version},
            "generation": {"max_new_tokens": max_new, "do_sample": False},
            "options": chosen,
        }

    @abstractmethod
    def load(self) -> list[EvalItem]:
        """Read and validate the benchmark's files."""

    @abstractmethod
    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        """The official metric: ``{"score": headline, "n": count, ...sub-scores}``."""

    # ---- helpers for subclasses ----------------------------------------------------

    def _file(self, relative: str | Path) -> Path:
        """A required file under root, or a SweepError naming it."""
        path = self.root / relative
        if not path.is_file():
            raise SweepError(
                f"eval.{self.name}.root",
                f"{path} is missing",
                f"download the {self.name} files into {self.root} (see the README, 'Benchmark data layout')",
            )
        return path

    def _read_json(self, relative: str | Path) -> Any:
        path = self._file(relative)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SweepError(f"eval.{self.name}: {path}", f"is not valid JSON ({err})", "re-download the file") from err

    def _read_jsonl(self, relative: str | Path) -> list[Any]:
        path = self._file(relative)
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SweepError(
                    f"eval.{self.name}: {path}:{lineno}", f"is not a JSON line ({err})", "re-download the file"
                ) from err
        return rows

    def _get(self, record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        """``record[key]``, checked to exist and to be of ``kind``."""
        if not isinstance(record, Mapping) or key not in record:
            raise self._bad(where, f"has no '{key}' field")
        value = record[key]
        if not isinstance(value, kind):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self._bad(f"{where}.{key}", f"is {type(value).__name__}, expected {expected}")
        return value

    def _scored_pairs(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str],
                      source: Path | str, split: str) -> list[tuple[EvalItem, str]]:
        """``aligned`` pairs, refusing items without answers (a test split only the official server scores)."""
        pairs = aligned(items, predictions)
        if any(it.target is None for it, _ in pairs):
            raise SweepError(f"eval.{self.name}", f"{source} has no answers (a test split)",
                             f"score the {split} split here; test predictions go to the official server")
        return pairs

    def _bad(self, where: str, problem: str) -> SweepError:
        """An error about one record of the benchmark's files."""
        return SweepError(f"eval.{self.name}: {where}", problem, "the file is not in the expected format; re-download it")


def aligned(items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> list[tuple[EvalItem, str]]:
    """Pair each item with its prediction; every item must have one."""
    if not items:
        raise SweepError("eval.score", "no items to score", "load the benchmark and pass (a subset of) its items")
    if isinstance(predictions, Mapping):
        missing = [it.id for it in items if it.id not in predictions]
        if missing:
            raise SweepError(
                "eval.score",
                f"{len(missing)} of {len(items)} items have no prediction (first: {missing[:3]})",
                "pass a prediction for every item, keyed by item.id",
            )
        return [(it, str(predictions[it.id])) for it in items]
    if isinstance(predictions, str) or len(predictions) != len(items):
        raise SweepError(
            "eval.score",
            f"{len(items)} items but {1 if isinstance(predictions, str) else len(predictions)} predictions",
            "pass one prediction per item, in item order, or a dict keyed by item.id",
        )
    return [(it, str(p)) for it, p in zip(items, predictions)]


def _jsonable(value: Any) -> Any:
    """Tuples and other sequences as lists, paths as strings, mappings with string keys."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def grouped_accuracy(hits: Sequence[tuple[str, float]], prefix: str) -> dict[str, float]:
    """``{f"{prefix}/{group}": mean}`` for (group, value) pairs: accuracy for (group,
    correct) pairs, the mean score for per-question scores such as ANLS."""
    groups: dict[str, list[float]] = {}
    for group, hit in hits:
        groups.setdefault(group, []).append(hit)
    return {f"{prefix}/{g}": mean(v) for g, v in sorted(groups.items())}


def lettered(options: Sequence[str]) -> str:
    """``"A. first\\nB. second"`` for a list of option texts."""
    return "\n".join(f"{chr(ord('A') + i)}. {opt}" for i, opt in enumerate(options))
