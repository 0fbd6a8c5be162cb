"""Compose the Hydra config once, from ``conf/`` plus command-line overrides.

We use Hydra's compose API rather than ``@hydra.main`` so the CLI can have
subcommands (``plan``, ``run``, ``status``, ``fit``) and flags, and so the
grid can be selected with ``+grid=NAME`` even though ``python -m sweep`` alone
runs the mini grid: ``grid`` is not in the defaults list, and when no override
selects it we add ``+grid=mini`` ourselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.errors import SweepError, close_names

DEFAULT_GRID = "mini"


def config_dir() -> Path:
    """``$SWEEP_CONFIG_DIR`` if set, else the repository's ``conf/``."""
    env = os.environ.get("SWEEP_CONFIG_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent / "conf"


def with_default_grid(overrides: Sequence[str]) -> list[str]:
    """Add ``+grid=mini`` unless an override already selects a grid."""
    out = list(overrides)
    selects_grid = any(o.lstrip("+~").split("=", 1)[0] == "grid" for o in out)
    if not selects_grid:
        out.insert(0, f"+grid={DEFAULT_GRID}")
    return out


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The fully composed (not yet resolved) config for these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    overrides = with_default_grid(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except MissingConfigException as e:
        options = list(getattr(e, "options", None) or [])
        name = str(getattr(e, "missing_cfg_file", "") or "")
        hint = close_names(name.split("/")[-1], options) if options else ""
        raise SweepError(
            "overrides",
            f"{e}".splitlines()[0] + hint,
            f"choose one of {options} or add the YAML under {config_dir()}" if options else "check the override",
        ) from None
    except (ConfigCompositionException, OverrideParseException) as e:
        cause = e.__cause__ or e
        raise SweepError("overrides", str(cause).splitlines()[0], "fix the override (see `python -m sweep --help`)") from None


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """A plain dict with every interpolation resolved."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as e:  # omegaconf raises several interpolation error types
        raise SweepError("config", f"cannot resolve the config: {e}", "fix the interpolation or set the variable it reads") from None
