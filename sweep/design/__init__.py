"""Adaptive study design: propose the cells that narrow the answer's interval most per GPU-hour, and run them in rounds.

::

    python -m sweep suggest [overrides] [--k K] [--budget GPU_HOURS|P%] [--target vstar|frontier|alpha-beta] [--csv FILE] [--json]
    python -m sweep run --adaptive [overrides] [--budget GPU_HOURS|P%] [--until-ci WIDTH] [--k K]

Modules: ``settings`` (DesignSettings: the config's ``design`` section),
``pool`` (the grid's cells, their cost, the start design), ``sources`` (results
from MLflow or a CSV), ``targets`` (V*, alpha - beta, the frontier's error as
functions of the paper form's parameter draws), ``criterion`` (the expected
narrowing of each target by a cell, the greedy batch), ``state`` (results ->
fit -> the design's models), ``propose`` (the next cells and the stop rule),
``adaptive`` (the loop and its MLflow rounds).
"""
