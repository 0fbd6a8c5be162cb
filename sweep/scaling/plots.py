"""The study's figures as PNG files, drawn without pyplot (no global state, no display).

- ``figure1``: like the paper's Figure 1. Error against inference FLOPs
  ``2 N (Q + V)``, one colour per LLM size, marker area growing with V, the
  fitted law's curve for each N (V running from 1 to v_max), and the
  inference-optimal frontier (black). One row per family, one column per Q.
  Held-out cells are hollow markers.
- ``heatmap``: an N x V grid per family of observed error, fitted error and
  their difference.

::

    figure1(study, observations, "out/figure1.png")
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

from sweep.scaling.frontier import flops, frontier_curve
from sweep.scaling.laws import BILLION, paper_error
from sweep.scaling.study import FamilyFit, StudyFit
from sweep.scaling.table import Observation, group_by_family

_CMAP = "viridis"


def figure1(study: StudyFit, observations: Sequence[Observation], path: str | Path) -> Path:
    """Error against inference FLOPs with fitted curves and the frontier; returns the path."""
    groups = group_by_family(observations)
    fams = [f for f in study.families.values() if f.family in groups]
    ncols = max(len(f.v_star) for f in fams)
    fig = Figure(figsize=(5.2 * ncols, 4.2 * len(fams)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(fams), ncols, squeeze=False))
    for row, fam in enumerate(fams):
        for col, q in enumerate(sorted(fam.v_star)):
            _figure1_panel(axes[row, col], fam, groups[fam.family], q)
        for col in range(len(fam.v_star), ncols):
            axes[row, col].set_visible(False)
    return _save(fig, path)


def _figure1_panel(ax, fam: FamilyFit, obs: list[Observation], q: float) -> None:
    n_all = sorted({o.N for o in obs})
    colours = {n: _colour(i, len(n_all)) for i, n in enumerate(n_all)}
    v_top = max(o.V for o in obs)
    for o in obs:
        size = 18 + 120 * np.log(o.V) / np.log(max(v_top, 2.0))
        x = float(flops(o.N, o.V, q))
        if o.heldout:
            ax.scatter(x, o.error, s=size, facecolors="none", edgecolors=colours[o.N], linewidths=1.5, zorder=3)
        else:
            ax.scatter(x, o.error, s=size, color=colours[o.N], edgecolors="white", linewidths=0.5, zorder=3)
    params = fam.paper.params
    if all(params[k] is not None for k in ("alpha", "beta", "A", "D")):
        v_line = np.geomspace(1.0, fam.v_max, 120)
        for n in n_all:
            ax.plot(flops(n, v_line, q), paper_error(params, n, v_line), color=colours[n], lw=1.2, alpha=0.8, label=f"N = {n / BILLION:.3g}B")
        xs = np.array([flops(o.N, o.V, q) for o in obs], dtype=float)
        c_line = np.geomspace(xs.min() * 0.8, xs.max() * 1.25, 200)
        vs = fam.v_star[q]
        curve = frontier_curve(params, q, c_line, fam.v_max)
        # Solid where the optimal N lies within the LLM sizes measured, dotted
        # where the frontier is an extrapolation of the law.
        n_opt = c_line / (2.0 * (q + vs.value))
        inside = (n_opt >= min(n_all) / 1.001) & (n_opt <= max(n_all) * 1.001)
        ax.plot(c_line, np.where(inside, curve, np.nan), color="black", lw=2.2, ls="--", label=f"optimal frontier (V* = {vs.value:.3g})")
        ax.plot(c_line, np.where(inside, np.nan, curve), color="black", lw=1.0, ls=":", label="frontier, extrapolated N")
    if any(o.heldout for o in obs):
        ax.scatter([], [], s=40, facecolors="none", edgecolors="grey", label="held out (hollow)")
    ax.set_xscale("log")
    # Narrow panels (Q = 50 spans under a decade) would print colliding minor-tick labels.
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"inference FLOPs = 2N(Q+V), Q = {q:g}")
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
        p = fam.paper.params
        p0 = {k: (0.0 if val is None else val) for k, val in p.items()}
        fitted = paper_error(p0, np.array(ns)[:, None], np.array(vs)[None, :])
        resid = observed - fitted
        lo, hi = np.nanmin([observed, fitted]), np.nanmax([observed, fitted])
        span = max(float(np.nanmax(np.abs(resid))), 1e-6)
        panels = (
            (observed, "observed error", {"cmap": "magma_r", "vmin": lo, "vmax": hi}),
            (fitted, "fitted error (paper form)", {"cmap": "magma_r", "vmin": lo, "vmax": hi}),
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
    p = fam.paper.params
    parts = [f"{k}={p[k]:.3g}" for k in ("alpha", "beta", "D") if p[k] is not None]
    return f"{fam.family}: " + ", ".join(parts)


def _colour(i: int, n: int) -> tuple[float, float, float, float]:
    return colormaps[_CMAP](0.1 + 0.8 * i / max(n - 1, 1))


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
