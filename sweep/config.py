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
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    overrides = with_default_grid(overrides)
    while True:
        try:
            return _compose(overrides)
        except MissingConfigException as e:  # a subclass of ConfigCompositionException: first
            raise _missing(e) from None
        except (ConfigCompositionException, OverrideParseException) as e:
            retry = _as_addition(e, overrides)
            if retry is None:
                raise _override_error(e, overrides) from None
            overrides = retry


def _missing(e: Exception) -> SweepError:
    """A group option that does not exist, with the close names."""
    options = list(getattr(e, "options", None) or [])
    name = str(getattr(e, "missing_cfg_file", "") or "")
    hint = close_names(name.split("/")[-1], options) if options else ""
    return SweepError("overrides", f"{e}".splitlines()[0] + hint,
                      f"choose one of {options} or add the YAML under {config_dir()}" if options else "check the override")


def _as_addition(e: Exception, overrides: list[str]) -> list[str] | None:
    """``eval.batch_size=2`` retried as ``+eval.batch_size=2`` when the YAML leaves that key to its spec default.

    The spec types hold the defaults, so the YAML files need not repeat every key, and
    Hydra refuses to override a key the YAML lacks. When the key it refused is one the
    typed config declares, the override is retried as an addition; anything else keeps
    Hydra's error (made readable by ``_override_error``).
    """
    from sweep.specs.config import Config
    from sweep.specs.schema import declares

    text = str(e.__cause__ or "")
    key = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("full_key:")), "")
    if not key or "not in" not in text.splitlines()[0] or not declares(Config, key):
        return None
    hits = [i for i, o in enumerate(overrides) if o.partition("=")[0] == key]
    if not hits:
        return None
    return [f"+{o}" if i in hits else o for i, o in enumerate(overrides)]


def _compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from launchers.config import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def _override_error(e: Exception, overrides: Sequence[str]) -> SweepError:
    """Hydra's composition error as a SweepError naming the key, with the keys that do exist nearby."""
    cause = e.__cause__ or e
    text = str(cause)
    key = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("full_key:")), "")
    first = text.splitlines()[0] if text else type(cause).__name__
    if not key:
        return SweepError("overrides", first, "fix the override (see `python -m sweep --help`)")
    culprit = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key]
    if "converted to" in first or "Invalid type" in first:
        wanted = first.rsplit("converted to", 1)[-1].strip() if "converted to" in first else ""
        kind = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false"}.get(wanted, "a value of the declared type")
        return SweepError(key, first, f"give {key} {kind}, e.g. {key}={_EXAMPLES.get(wanted, '...')}")
    hint = ""
    try:
        known = _compose([o for o in overrides if o not in culprit])
        hint = _nearby(known, key)
    except Exception:  # another override is broken too: the first error is still the one to fix
        pass
    return SweepError(key, f"no such key ({first}).{hint}",
                      "check the spelling; `python -m sweep --cfg` prints every key (a new key needs a leading +, "
                      "which only the grid and catalogue entries accept)")


_EXAMPLES = {"Integer": "2", "Float": "0.5", "Boolean": "true"}


def _nearby(cfg: DictConfig, key: str) -> str:
    """' Did you mean ...?' from the sibling keys and from keys elsewhere with the same last name."""
    paths: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            path = f"{prefix}{k}"
            paths.append(path)
            walk(v, path + ".")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    parent, _, leaf = key.rpartition(".")
    siblings = {p.rpartition(".")[2]: p for p in paths if p.rpartition(".")[0] == parent}
    near = close_names(leaf, siblings).strip()
    same_leaf = [p for p in paths if p.rpartition(".")[2] == leaf and p != key][:3]
    out = f" {near}" if near else ""
    if same_leaf:
        out += f" Keys with that name: {', '.join(same_leaf)}."
    return out


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """A plain dict with every interpolation resolved."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as e:  # omegaconf raises several interpolation error types
        raise SweepError("config", f"cannot resolve the config: {e}", "fix the interpolation or set the variable it reads") from None
