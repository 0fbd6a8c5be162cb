"""Does the law predict cells it has not seen? Cross-validated prediction error, and model choice.

In-sample fit favours the form with more parameters; the question a study
asks is whether the law *predicts*. Two schemes, each a set of folds that
leave cells out, refit the form on the rest and predict them:

- ``leave_one_v``: every measured token count in turn (interpolation and
  extrapolation along V);
- ``expanding_n``: fit on the smallest LLMs, predict the next size up, then
  add it and predict the next (as OLMo-core's ladder rollout does); its last
  fold is the classic "predict the largest model" check.

::

    folds = make_folds(cells.n, cells.v, law)
    cv = cross_validate(problem, starts, folds, cells.n, cells.v)   # batched over folds x starts
    choice = compare({"multiplicative": cv_m, "threshold": cv_t})   # on the folds they share

A fold runs only where its training cells can identify the form: more cells
than parameters, and as many distinct N and V as the form's shape needs (two
V fix the paper form's beta, but the additive form's ``B V^-beta`` needs
three: with two, B and beta trade off freely and its prediction for the left-out
V is arbitrary). The error of a scheme is the root mean square of predicted
minus observed over its folds' cells, in the metric's units; a score is the
mean over the schemes. Forms are compared on the folds they all ran, and a
form with more parameters replaces the paper's only if its advantage in squared
prediction error exceeds one standard error (the one-standard-error rule):
with a dozen cells, two forms are often too close to tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sweep.scaling.fit import Problem
from sweep.scaling.laws import BILLION, Law, predict
from sweep.scaling.solver import solve_batch

SCHEMES = ("leave_one_v", "expanding_n")
_MAX_GROUPS = 10
_SCOUT_STEPS, _FINALISTS = 12, 3
# Distinct (N, V) levels a training set needs to identify each form's shape.
_LEVELS = {"multiplicative": (2, 2), "additive": (3, 3), "threshold": (2, 3)}


@dataclass(frozen=True)
class Fold:
    scheme: str
    held: float  # the V left out, or the N predicted
    train: np.ndarray  # bool over cells
    test: np.ndarray

    @property
    def key(self) -> tuple[str, float]:
        return self.scheme, self.held


@dataclass
class CrossVal:
    """One form's cross-validated prediction error, on the folds it could run."""

    form: str
    schemes: dict[str, float | None]  # RMSE per scheme (None: no fold could run)
    score: float | None  # mean over the schemes that ran
    folds: list[dict] = field(default_factory=list)  # per fold: scheme, held, n_train, rmse
    fold_theta: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    fold_pred: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    fold_err: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"score": self.score, **self.schemes, "folds": self.folds}


@dataclass
class Choice:
    """Which form predicts best, on which folds, and whether the paper's form was kept as too close to tell."""

    best: str | None
    lowest: str | None  # the form with the lowest score (before the one-standard-error rule)
    scores: dict[str, float]  # on the common folds
    common: list[str]  # the folds compared, as "V=16" / "N=7B"
    excluded: list[str]  # forms without a fold in common
    kept_simpler: bool  # the one-standard-error rule chose the paper form over ``lowest``
    margin: tuple[float, float] | None  # (mean advantage in squared error, its standard error) of ``lowest`` over the paper form


def make_folds(n: np.ndarray, v: np.ndarray, law: Law) -> list[Fold]:
    """Every fold of both schemes whose training cells can identify ``law``.

    A table that is not a grid (every cell its own N and V, as in Chinchilla
    replications) would make a fold per cell: there the values are grouped
    into ``_MAX_GROUPS`` bins of equal count, and a fold leaves out (or
    predicts) a whole bin, named by its largest value.
    """
    v_group, n_group = _grouped(v), _grouped(n)
    out = [Fold("leave_one_v", float(g), v_group != g, v_group == g) for g in np.unique(v_group)]
    levels = np.unique(n_group)
    for k in range(1, levels.size - 1):
        out.append(Fold("expanding_n", float(levels[k + 1]), n_group <= levels[k], n_group == levels[k + 1]))
    need_n, need_v = _LEVELS.get(law.name, (2, 2))
    k = len(law.names)
    return [f for f in out if int(f.train.sum()) > k and np.unique(n[f.train]).size >= need_n and np.unique(v[f.train]).size >= need_v and f.test.any()]


def _grouped(x: np.ndarray) -> np.ndarray:
    """Each value's group: itself, or the upper edge of its equal-count bin when there are many values."""
    values = np.unique(x)
    if values.size <= _MAX_GROUPS:
        return x
    edges = np.unique(np.quantile(x, np.linspace(0, 1, _MAX_GROUPS + 1)[1:], method="inverted_cdf"))
    return edges[np.searchsorted(edges, x)]


def cross_validate(problem: Problem, starts: np.ndarray, folds: list[Fold], n_params: np.ndarray, v: np.ndarray) -> CrossVal:
    """Refit ``problem`` on every fold from each of ``starts`` (rows), keep each fold's best, predict its cells."""
    law = problem.law
    if not folds:
        return CrossVal(law.name, {s: None for s in SCHEMES}, None)
    k = starts.shape[0]
    mask = np.array([f.train for f in folds], dtype=float)
    weights = problem.weights[None] * mask
    weights /= weights.sum(axis=1, keepdims=True)
    # Two stages: every start a few steps, then the fold's best few to convergence; far
    # starts rarely overtake, and this keeps the whole lattice affordable per fold.
    first = solve_batch(problem, problem.target[None], np.repeat(weights, k, axis=0), np.tile(starts, (len(folds), 1)), max_iter=_SCOUT_STEPS)
    keep = min(_FINALISTS, k)
    order = np.argsort(first.value.reshape(len(folds), k), axis=1)[:, :keep]
    rows = first.theta.reshape(len(folds), k, -1)[np.arange(len(folds))[:, None], order].reshape(len(folds) * keep, -1)
    out = solve_batch(problem, problem.target[None], np.repeat(weights, keep, axis=0), rows)
    value = out.value.reshape(len(folds), keep)
    best = out.theta.reshape(len(folds), keep, -1)[np.arange(len(folds)), np.argmin(value, axis=1)]
    cv = CrossVal(law.name, {}, None)
    for fold, theta in zip(folds, best):
        pred = predict(law, theta[None], problem.design, n_params[fold.test], v[fold.test])[0]
        err = pred - problem.y[fold.test]
        cv.fold_theta[fold.key] = theta
        cv.fold_pred[fold.key] = pred
        cv.fold_err[fold.key] = err
        cv.folds.append({"scheme": fold.scheme, "held": fold_label(fold.key), "n_train": int(fold.train.sum()), "rmse": float(np.sqrt(np.mean(err**2)))})
    cv.schemes, cv.score = _score(cv, list(cv.fold_err))
    return cv


def compare(cvs: dict[str, CrossVal]) -> Choice:
    """Choose among forms by prediction error on the folds they share (the paper's form first, as the simplest)."""
    order = sorted((n for n, c in cvs.items() if c.fold_err), key=lambda n: (n != "multiplicative", -len(cvs[n].fold_err)))
    common: set[tuple[str, float]] | None = None
    chosen, excluded = [], [n for n in cvs if n not in order]
    for name in order:
        keys = set(cvs[name].fold_err)
        shared = keys if common is None else common & keys
        if shared:
            common, chosen = shared, [*chosen, name]
        else:
            excluded.append(name)
    if not chosen or common is None:
        return Choice(None, None, {}, [], excluded, False, None)
    keys = sorted(common)
    scores = {name: _score(cvs[name], keys)[1] for name in chosen}
    lowest = min(scores, key=lambda n: scores[n])  # type: ignore[arg-type]
    best, kept, margin = lowest, False, None
    if lowest != "multiplicative" and "multiplicative" in scores:
        paper = np.concatenate([cvs["multiplicative"].fold_err[k] for k in keys]) ** 2
        other = np.concatenate([cvs[lowest].fold_err[k] for k in keys]) ** 2
        d = paper - other
        if d.size >= 3:
            margin = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)))
            if margin[0] <= margin[1]:
                best, kept = "multiplicative", True
    return Choice(best, lowest, {n: float(s) for n, s in scores.items() if s is not None}, [fold_label(k) for k in keys], excluded, kept, margin)


def fold_label(key: tuple[str, float]) -> str:
    scheme, held = key
    return f"V={held:g}" if scheme == "leave_one_v" else f"N={held / BILLION:.4g}B"


def _score(cv: CrossVal, keys: list[tuple[str, float]]) -> tuple[dict[str, float | None], float | None]:
    per = {}
    for scheme in SCHEMES:
        errs = [cv.fold_err[k] for k in keys if k[0] == scheme]
        per[scheme] = float(np.sqrt(np.mean(np.concatenate(errs) ** 2))) if errs else None
    ran = [x for x in per.values() if x is not None]
    return per, (float(np.mean(ran)) if ran else None)
