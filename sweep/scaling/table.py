"""Observations (one cell's error on one benchmark family) and reading them from CSV.

The fitter's input is a flat list of :class:`Observation`; the MLflow reader
builds it from runs, ``read_csv`` from a file with the columns
``family,N,V,error`` (optional ``Q``, ``llm``, ``heldout``, ``n_questions``,
``seed``, ``latency_ms``)::

    obs = read_csv("results.csv", n_unit="auto")   # N in parameters or billions
    validate(obs)                                   # raises SweepError on bad input
    read_csv("losses.csv", metric_range="positive") # any positive metric, e.g. a loss in nats

Several rows of one (family, N, V) with different ``seed`` are the seeds of one
cell; ``n_questions`` is the number of questions behind the score (its
binomial noise) and ``latency_ms`` the measured prefill latency.

Every problem is a :class:`sweep.errors.SweepError` naming the file, the row
(as numbered by a spreadsheet: the header is row 1) and the column, and saying
what to do, so ``python -m sweep fit --csv`` can print it and exit with code 2.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import SweepError, close_names

REQUIRED_COLUMNS = ("family", "N", "V", "error")
OPTIONAL_COLUMNS = ("Q", "llm", "heldout", "n_questions", "seed", "latency_ms")
N_UNITS = ("auto", "params", "billions")
METRIC_RANGES = ("unit", "positive")

# The paper form has four free parameters (A, alpha, beta, D): a family needs at
# least that many fitted points for the fit to be determined at all.
MIN_POINTS = 4

# Auto-detection of the N unit: a language model of 1000 billion parameters is
# beyond any VLM study, and one of under 1000 parameters below even the tiny
# CPU test models, so values under 1000 are billions and the rest are counts.
_BILLIONS_CEILING = 1e3

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True)
class Observation:
    """One cell's result for one benchmark family."""

    family: str
    N: float  # LLM parameters (a count, not billions)
    V: float  # visual tokens per image
    error: float  # 1 - mean accuracy over the family, in [0, 1] (or any positive metric)
    Q: float | None = None  # text tokens per query, where the source says
    llm: str | None = None  # the LLM's name, for labels
    heldout: bool = False  # predicted by the fit, never used to fit it
    n_questions: float | None = None  # effective number of questions behind the error (binomial noise)
    seed: int | None = None  # training seed; rows of one cell with different seeds are its seeds
    latency_ms: float | None = None  # measured prefill latency of the cell


@dataclass(frozen=True)
class CsvTable:
    """What ``load_csv`` read: the observations and the N unit it settled on."""

    observations: list[Observation]
    n_unit: str  # "params" or "billions": how the file's N column was read
    note: str  # one line saying so, for the CLI to print


def read_csv(path: str | Path, n_unit: str = "auto", metric_range: str = "unit") -> list[Observation]:
    """Observations from a CSV file, validated; N is converted to parameters."""
    return load_csv(path, n_unit, metric_range).observations


def load_csv(path: str | Path, n_unit: str = "auto", metric_range: str = "unit") -> CsvTable:
    """Like :func:`read_csv`, and also say which unit the N column was read in."""
    path = Path(path)
    if n_unit not in N_UNITS:
        raise SweepError("n_unit", f"{n_unit!r} is not a unit", f"use one of {', '.join(N_UNITS)}.")
    if not path.is_file():
        raise SweepError(str(path), "no such file", "give the path of a CSV with columns family,N,V,error.")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        _check_header(path, header)
        rows = [({k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}, i) for i, raw in enumerate(reader, start=2)]
    if not rows:
        raise SweepError(str(path), "has a header but no rows", "add one row per (family, N, V) result.")

    raw_n = [_number(path, row, line, "N") for row, line in rows]
    unit = _resolve_unit(path, raw_n, n_unit)
    factor = 1e9 if unit == "billions" else 1.0
    obs = []
    for (row, line), n in zip(rows, raw_n):
        family = row["family"]
        if not family:
            raise SweepError(f"{path}: row {line}, column family", "is empty", "name the benchmark family (e.g. vqa, ocr).")
        _check_positive(path, line, "N", n, "N is the LLM's parameter count (or billions)")
        v = _number(path, row, line, "V")
        _check_positive(path, line, "V", v, "V is the number of visual tokens, at least 1")
        err = _number(path, row, line, "error")
        _check_error(f"{path}: row {line}, column error", err, metric_range)
        q = _optional_number(path, row, line, "Q")
        if q is not None and q < 0:
            raise SweepError(f"{path}: row {line}, column Q", f"Q = {q:g} is negative", "Q counts text tokens: use 0 or more, or leave it empty.")
        n_q = _optional_number(path, row, line, "n_questions")
        if n_q is not None:
            _check_positive(path, line, "n_questions", n_q, "n_questions is how many questions the score averages over")
        latency = _optional_number(path, row, line, "latency_ms")
        if latency is not None:
            _check_positive(path, line, "latency_ms", latency, "latency_ms is the measured prefill time in milliseconds")
        obs.append(
            Observation(
                family=family,
                N=n * factor,
                V=v,
                error=err,
                Q=q,
                llm=row.get("llm") or None,
                heldout=_flag(path, row, line),
                n_questions=n_q,
                seed=_seed(path, row, line),
                latency_ms=latency,
            )
        )
    validate(obs, source=str(path), metric_range=metric_range)
    note = f"{path}: N read in {unit}" + (" (detected from the values)" if n_unit == "auto" else "")
    return CsvTable(obs, unit, note)


def validate(observations: Sequence[Observation], source: str = "observations", metric_range: str = "unit") -> None:
    """Raise SweepError for input the fitter cannot use; return None when it can."""
    if metric_range not in METRIC_RANGES:
        raise SweepError("fit.metric_range", f"{metric_range!r} is not a range", f"use one of {', '.join(METRIC_RANGES)}.")
    if not observations:
        raise SweepError(source, "there are no observations", "run the sweep's eval jobs first, or give a CSV with rows.")
    for i, o in enumerate(observations):
        where = f"{source}: {o.family} N={o.N:g} V={o.V:g}" if _finite(o.N) and _finite(o.V) else f"{source}: item {i}"
        for name, value in (("N", o.N), ("V", o.V)):
            if not _finite(value) or value <= 0:
                raise SweepError(f"{where} ({name})", f"{name} = {value} is not a positive number", f"{name} must be > 0; drop or fix this result.")
        _check_error(f"{where} (error)", o.error, metric_range)
    for family, members in group_by_family(observations).items():
        fitted = {(o.N, o.V) for o in members if not o.heldout}
        if len(fitted) < MIN_POINTS:
            one_n = len({n for n, _ in fitted}) == 1
            raise SweepError(
                f"{source}: family {family}",
                f"has {len(fitted)} fitted cell(s), fewer than the {MIN_POINTS} parameters of the law (A, alpha, beta, D)"
                + (f"; they all have one LLM size (N = {next(iter(fitted))[0]:g}), so alpha could not be fitted either" if one_n else ""),
                "a one-LLM study (such as +grid=compressors) is read from its error tables; to fit the law, add LLM sizes (grid.llm=[...])."
                if one_n else f"add results for more (N, V) cells of {family}, at least {MIN_POINTS} not marked held-out, or drop the family.",
            )


def group_by_family(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    """Observations per family, families in first-seen order."""
    out: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        out[o.family].append(o)
    return dict(out)


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise SweepError(str(path), "is empty", "write a header line: family,N,V,error (optional Q, llm, heldout).")
    for col in REQUIRED_COLUMNS:
        if col not in header:
            raise SweepError(
                f"{path}: column {col}",
                f"is missing (found: {', '.join(header)})",
                f"add a column named exactly {col!r}; required: {', '.join(REQUIRED_COLUMNS)}." + close_names(col, header),
            )


def _number(path: Path, row: dict[str, str], line: int, col: str) -> float:
    text = row.get(col, "")
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"{path}: row {line}, column {col}", f"{text!r} is not a number", f"write {col} as a plain number (e.g. 0.5 or 5e8).") from None
    if not math.isfinite(value):
        raise SweepError(f"{path}: row {line}, column {col}", f"{text!r} is not finite", f"write {col} as a finite number.")
    return value


def _optional_number(path: Path, row: dict[str, str], line: int, col: str) -> float | None:
    return _number(path, row, line, col) if row.get(col) else None


def _seed(path: Path, row: dict[str, str], line: int) -> int | None:
    text = row.get("seed", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise SweepError(f"{path}: row {line}, column seed", f"{text!r} is not a whole number", "write the training seed as an integer (0, 1, 2), or leave it empty.") from None


def _flag(path: Path, row: dict[str, str], line: int) -> bool:
    text = row.get("heldout", "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SweepError(f"{path}: row {line}, column heldout", f"{text!r} is not true or false", "write heldout as true/false (or 1/0), or leave it empty.")


def _check_positive(path: Path, line: int, col: str, value: float, meaning: str) -> None:
    if value <= 0:
        raise SweepError(f"{path}: row {line}, column {col}", f"{col} = {value:g} is not positive", f"{meaning}; fix or drop this row.")


def _check_error(where: str, value: float, metric_range: str = "unit") -> None:
    if metric_range == "positive":
        if not _finite(value) or value <= 0.0:
            raise SweepError(where, f"value = {value} is not a positive number", "with fit.metric_range=positive every value must be > 0 (the laws are sums of positive terms).")
        return
    if not _finite(value) or not 0.0 <= value <= 1.0:
        raise SweepError(
            where,
            f"error = {value} is outside [0, 1] (fit.metric_range=unit)",
            "error is 1 - accuracy as a fraction (0.25 for 75% accuracy): if these are percentages, divide by 100; "
            "if the column is another positive metric (a loss in nats, a perplexity), fit it with fit.metric_range=positive.",
        )


def _resolve_unit(path: Path, values: list[float], n_unit: str) -> str:
    if n_unit != "auto":
        return n_unit
    positive = [v for v in values if v > 0]
    if not positive:
        return "params"  # every N is bad anyway; the row check names the first one
    small = [v for v in positive if v < _BILLIONS_CEILING]
    if len(small) == len(positive):
        return "billions"
    if not small:
        return "params"
    raise SweepError(
        f"{path}: column N",
        f"mixes billions (e.g. {small[0]:g}) and parameter counts (e.g. {max(positive):g})",
        "write every N in one unit, or pass n_unit='params' / 'billions' (--n-unit) to say which.",
    )


def _finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False
