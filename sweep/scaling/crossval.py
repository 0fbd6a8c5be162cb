"""Does the law predict cells it has not seen? Cross-validated prediction error per form.

In-sample fit favours the form with more parameters; the question a study
asks is whether the law *predicts*. Two schemes, each a set of folds that
leave cells out, refit the form on the rest and predict them:

- ``leave_one_v``: every measured token count in turn (interpolation and
  extrapolation along V);
- ``expanding_n``: fit on the smallest LLMs, predict the next size up, then
  add it and predict the next (as OLMo-core's ladder rollout does); its last
  fold is the classic "predict the largest model" check.

::

    folds = make_folds(cells.n, cells.v, n_params=5)
    cv = cross_validate(problem, starts, folds)    # one batched solve for every fold x start
    cv.score, cv.schemes["leave_one_v"], cv.fold_theta["expanding_n", 7e9]

The error of a scheme is the root mean square, over all its folds' predicted
cells, of predicted minus observed, in the metric's units; ``score`` is the
mean over the schemes that could run. A fold runs only if its training cells
outnumber the form's parameters and still span two N and two V.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sweep.scaling.fit import Problem
from sweep.scaling.laws import BILLION, predict
from sweep.scaling.solver import solve_batch

SCHEMES = ("leave_one_v", "expanding_n")
_MAX_GROUPS = 10


@dataclass(frozen=True)
class Fold:
    scheme: str
    held: float  # the V left out, or the N predicted
    train: np.ndarray  # bool over cells
    test: np.ndarray


@dataclass
class CrossVal:
    """One form's cross-validated prediction error."""

    form: str
    schemes: dict[str, float | None]  # RMSE per scheme (None: no fold could run)
    score: float | None  # mean over the schemes that ran
    folds: list[dict] = field(default_factory=list)  # per fold: scheme, held, n_train, rmse
    fold_theta: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    fold_pred: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"score": self.score, **self.schemes, "folds": self.folds}


def make_folds(n: np.ndarray, v: np.ndarray, n_params: int) -> list[Fold]:
    """Every fold of both schemes that leaves enough cells to fit ``n_params`` parameters.

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
    return [f for f in out if _fits(f, n, v, n_params)]


def _grouped(x: np.ndarray) -> np.ndarray:
    """Each value's group: itself, or the upper edge of its equal-count bin when there are many values."""
    values = np.unique(x)
    if values.size <= _MAX_GROUPS:
        return x
    edges = np.unique(np.quantile(x, np.linspace(0, 1, _MAX_GROUPS + 1)[1:], method="inverted_cdf"))
    return edges[np.searchsorted(edges, x)]


def _fits(fold: Fold, n: np.ndarray, v: np.ndarray, n_params: int) -> bool:
    t = fold.train
    return int(t.sum()) > n_params and np.unique(n[t]).size >= 2 and np.unique(v[t]).size >= 2 and bool(fold.test.any())


def cross_validate(problem: Problem, starts: np.ndarray, folds: list[Fold], n_params: np.ndarray, v: np.ndarray) -> CrossVal:
    """Refit ``problem`` on every fold from each of ``starts`` (rows), keep each fold's best, predict its cells."""
    law = problem.law
    if not folds:
        return CrossVal(law.name, {s: None for s in SCHEMES}, None)
    k = starts.shape[0]
    mask = np.repeat(np.array([f.train for f in folds], dtype=float), k, axis=0)
    weights = problem.weights[None] * mask
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.tile(starts, (len(folds), 1))
    out = solve_batch(problem, problem.target[None], weights, rows)
    value = out.value.reshape(len(folds), k)
    best = out.theta.reshape(len(folds), k, -1)[np.arange(len(folds)), np.argmin(value, axis=1)]
    errors: dict[str, list[np.ndarray]] = {s: [] for s in SCHEMES}
    cv = CrossVal(law.name, {}, None)
    for fold, theta in zip(folds, best):
        pred = predict(law, theta[None], problem.design, n_params[fold.test], v[fold.test])[0]
        err = pred - problem.y[fold.test]
        errors[fold.scheme].append(err)
        cv.fold_theta[fold.scheme, fold.held] = theta
        cv.fold_pred[fold.scheme, fold.held] = pred
        held = f"V={fold.held:g}" if fold.scheme == "leave_one_v" else f"N={fold.held / BILLION:.4g}B"
        cv.folds.append({"scheme": fold.scheme, "held": held, "n_train": int(fold.train.sum()), "rmse": float(np.sqrt(np.mean(err**2)))})
    cv.schemes = {s: float(np.sqrt(np.mean(np.concatenate(e) ** 2))) if e else None for s, e in errors.items()}
    ran = [x for x in cv.schemes.values() if x is not None]
    cv.score = float(np.mean(ran)) if ran else None
    return cv
