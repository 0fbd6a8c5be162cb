"""The study's figures as PNG files, drawn without pyplot (no global state, no display).

- ``figure1``: like the paper's Figure 1. Error against inference FLOPs
  ``2 N (Q + V)``, one colour per LLM size, marker area growing with V, the
  chosen form's curve for each N (V running from 1 to v_max), and the
  inference-optimal frontier (black). One row per family, one column per Q.
  Held-out cells are hollow markers.
- ``latency``: the same against measured prefill latency (ms), the cells at
  their measured latency and the curves through the fitted latency model.
- ``heatmap``: an N x V grid per family of observed error, fitted error and
  their difference.

::

    figure1(study, observations, "out/figure1.png")
    latency(study, observations, "out/latency.png")
    heatmap(study, observations, "out/heatmap.png")

Figures are built on ``matplotlib.figure.Figure``, whose ``savefig`` renders
with Agg, so this works on headless nodes and inside threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from sweep.scaling.frontier import CostModel, frontier_curve
from sweep.scaling.laws import BILLION
from sweep.scaling.study import FamilyFit, Frontier, StudyFit
from sweep.scaling.table import Observation, group_by_family

_CMAP = "viridis"
_CURVE_BUDGETS = 60


def figure1(study: StudyFit, observations: Sequence[Observation], path: str | Path) -> Path:
    """Error against inference FLOPs with fitted curves and the frontier; returns the path."""
    groups = group_by_family(observations)
    fams = [f for f in study.families.values() if f.family in groups]
    ncols = max(len(f.frontiers) for f in fams)
    fig = Figure(figsize=(5.2 * ncols, 4.2 * len(fams)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(fams), ncols, squeeze=False))
    for row, fam in enumerate(fams):
        for col, q in enumerate(sorted(fam.frontiers)):
            cost = CostModel.flops(q)
            _panel(axes[row, col], fam, groups[fam.family], cost, fam.frontiers[q], lambda o, c=cost: float(c.of(o.N, o.V)))
            axes[row, col].set_xlabel(f"inference FLOPs = 2N(Q+V), Q = {q:g}")
        for col in range(len(fam.frontiers), ncols):
            axes[row, col].set_visible(False)
    return _save(fig, path)


def latency(study: StudyFit, observations: Sequence[Observation], path: str | Path) -> Path:
    """Error against measured prefill latency, per family with a latency frontier; returns the path."""
    groups = group_by_family(observations)
    fams = [f for f in study.families.values() if f.family in groups and f.latency is not None and f.latency_model is not None]
    fig = Figure(figsize=(5.6, 4.2 * max(len(fams), 1)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(len(fams), 1), 1, squeeze=False)[:, 0])
    for ax, fam in zip(axes, fams):
        model = fam.latency_model
        assert model is not None and fam.latency is not None
        _panel(ax, fam, groups[fam.family], model.cost(), fam.latency, lambda o, m=model: float(o.latency_ms if o.latency_ms else m(o.N, o.V)))
        ax.set_xlabel("measured prefill latency (ms), batch 1")
    return _save(fig, path)


def _panel(ax, fam: FamilyFit, obs: list[Observation], cost: CostModel, frontier: Frontier, x_of) -> None:
    n_all = sorted({o.N for o in obs})
    colours = {n: _colour(i, len(n_all)) for i, n in enumerate(n_all)}
    v_top = max(o.V for o in obs)
    xs = []
    for o in obs:
        size = 18 + 120 * np.log(o.V) / np.log(max(v_top, 2.0))
        x = x_of(o)
        xs.append(x)
        style = {"facecolors": "none", "edgecolors": colours[o.N], "linewidths": 1.5} if o.heldout else {"color": colours[o.N], "edgecolors": "white", "linewidths": 0.5}
        ax.scatter(x, o.error, s=size, zorder=3, **style)
    best = fam.best
    if frontier.rows and all(best.params.get(k) is not None for k in ("alpha", "D")):
        v_line = np.geomspace(1.0, fam.v_max, 120)
        for n in n_all:
            ax.plot(cost.of(n, v_line), fam.predict(np.full_like(v_line, n), v_line), color=colours[n], lw=1.2, alpha=0.8, label=f"N = {n / BILLION:.3g}B")
        c_line = np.geomspace(min(xs) * 0.8, max(xs) * 1.25, _CURVE_BUDGETS)
        law, design = best.problem.law, best.problem.design
        curve, n_opt = frontier_curve(law, best.theta, design, cost, c_line, fam.v_max)
        # Solid where the optimal N lies within the LLM sizes measured, dotted
        # where the frontier is an extrapolation of the law.
        inside = (n_opt >= min(n_all) / 1.001) & (n_opt <= max(n_all) * 1.001)
        vs = frontier.v_star.value
        span = frontier.v_range
        moves = not frontier.budget_free and span is not None and span[1] > span[0] * (1 + 1e-6)
        shown = f"V* {span[0]:.3g}-{span[1]:.3g}" if moves and span is not None else f"V* = {vs:.3g}"
        ax.plot(c_line, np.where(inside, curve, np.nan), color="black", lw=2.2, ls="--", label=f"optimal frontier ({best.form}, {shown})")
        ax.plot(c_line, np.where(inside, np.nan, curve), color="black", lw=1.0, ls=":", label="frontier, extrapolated N")
    if any(o.heldout for o in obs):
        ax.scatter([], [], s=40, facecolors="none", edgecolors="grey", label="held out (hollow)")
    ax.set_xscale("log")
    # Narrow panels (Q = 50 spans under a decade) would print colliding minor-tick labels.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"{fam.family} error")
    ax.set_title(_title(fam))
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.text(0.5, 0.95, "law not identifiable: no curves", transform=ax.transAxes, ha="center", va="top", fontsize=8)


def heatmap(study: StudyFit, observations: Sequence[Observation], path: str | Path) -> Path:
    """Observed, fitted and observed-minus-fitted error on the N x V grid; returns the path."""
    groups = group_by_family(observations)
    fams = [f for f in study.families.values() if f.family in groups]
    fig = Figure(figsize=(15, 3.6 * len(fams)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(fams), 3, squeeze=False))
    for row, fam in enumerate(fams):
        obs = groups[fam.family]
        ns, vs = sorted({o.N for o in obs}), sorted({o.V for o in obs})
        observed = np.full((len(ns), len(vs)), np.nan)
        sums: dict[tuple[int, int], list[float]] = {}
        for o in obs:
            sums.setdefault((ns.index(o.N), vs.index(o.V)), []).append(o.error)
        for (i, j), errs in sums.items():
            observed[i, j] = np.mean(errs)
        nn, vv = np.meshgrid(np.array(ns), np.array(vs), indexing="ij")
        fitted = fam.predict(nn.ravel(), vv.ravel()).reshape(nn.shape)
        resid = observed - fitted
        lo, hi = np.nanmin([observed, fitted]), np.nanmax([observed, fitted])
        span = max(float(np.nanmax(np.abs(resid))), 1e-6)
        panels = (
            (observed, "observed error", {"cmap": "magma_r", "vmin": lo, "vmax": hi}),
            (fitted, f"fitted error ({fam.best_form} form)", {"cmap": "magma_r", "vmin": lo, "vmax": hi}),
            (resid, "observed - fitted", {"cmap": "RdBu_r", "norm": TwoSlopeNorm(0.0, -span, span)}),
        )
        held = {(ns.index(o.N), vs.index(o.V)) for o in obs if o.heldout}
        for col, (grid, title, style) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(grid, aspect="auto", origin="lower", **style)
            for (i, j), val in np.ndenumerate(grid):
                if np.isfinite(val):
                    mark = "*" if (i, j) in held else ""
                    # Dark text on light cells and the reverse, whatever the colour map.
                    level = float(im.norm(val))
                    dark = level > 0.55 if col < 2 else abs(level - 0.5) > 0.35
                    ax.text(j, i, f"{val:.3f}{mark}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
            ax.set_xticks(range(len(vs)), [f"{v:g}" for v in vs])
            ax.set_yticks(range(len(ns)), [f"{n / BILLION:.3g}B" for n in ns])
            ax.set_xlabel("visual tokens V")
            ax.set_ylabel("LLM size N")
            ax.set_title(f"{fam.family}: {title}" + (" (* held out)" if held and col == 0 else ""))
            fig.colorbar(im, ax=ax, shrink=0.85)
    return _save(fig, path)


def _title(fam: FamilyFit) -> str:
    p = fam.best.params
    parts = [f"{k}={p[k]:.3g}" for k in ("alpha", "beta", "gamma", "V_t", "D") if p.get(k) is not None]
    return f"{fam.family} ({fam.best_form}): " + ", ".join(parts)


def _colour(i: int, n: int) -> tuple[float, float, float, float]:
    return colormaps[_CMAP](0.1 + 0.8 * i / max(n - 1, 1))


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
