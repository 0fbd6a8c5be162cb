"""``python -m sweep suggest``: the next cells of a study, each with its cost and expected narrowing per unit of cost.

::

    python -m sweep suggest                                    # the mini grid, results from MLflow
    python -m sweep suggest +grid=paper --csv results.csv --k 3 --budget 40
    python -m sweep suggest +grid=paper 'grid.visual_tokens=[1,4,9,16,36,64,144,576]' --target alpha-beta --json

The candidates are the composed grid's cells (held-out LLMs excluded); results
come from the sweep's finished eval runs in MLflow, or from ``--csv`` (the ``fit
--csv`` format, optional ``n_questions`` and ``seed`` columns). Nothing is run
or written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_K = 5  # suggestions listed when design.k is unset


def suggest(cfg: Any, plan: Any, csv: Path | None, n_unit: str, as_json: bool) -> int:
    """Print the proposal for this config's grid and results; 0 (a stop is an answer, not an error)."""
    from sweep.lifecycle import store_of
    from sweep.design.pool import Pool
    from sweep.design.propose import propose, render, to_json
    from sweep.design.sources import results_from_csv, results_from_mlflow
    from sweep.design.state import assess

    settings = cfg.design
    pool = Pool.build(plan, store_of(cfg).is_done, settings)
    obs = results_from_csv(csv, n_unit, pool, cfg.fit) if csv else results_from_mlflow(cfg, plan)
    proposal = propose(assess(pool, obs, cfg.fit, settings), settings, settings.k or DEFAULT_K)
    print(json.dumps(to_json(proposal), indent=1, default=float) if as_json else render(proposal))
    return 0
