"""``python -m sweep --help``: the usage, then the config groups and their choices, as a Hydra app prints them.

The groups and options come from Hydra's own config loader over ``conf/`` (or
``$SWEEP_CONFIG_DIR``) with the launcher schemas registered in its ConfigStore, so a
YAML added under ``conf/<group>/`` or a launcher added to ``launchers/config.py``
shows up here without editing any text. The defaults are read from the primary
config's defaults list.
"""

from __future__ import annotations

from typing import Any

# How each group is used where that differs from Hydra's plain `group=option`.
CATALOGUES = ("llm", "compressor")  # every option is loaded; the grid picks by name
USAGE = {
    "llm": "catalogue: every entry is loaded; pick with grid.llm=[...]; override with llm.<name>.<field>=...",
    "compressor": "catalogue: pick with grid.compressor=[...]; override with compressor.<name>.<field>=...",
    "grid": "+grid=NAME (mini when none is named)",
}


def group_options() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(group -> its options, group -> the option the primary config selects) from Hydra's config loader."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from launchers.config import register_schemas
    from sweep.config import config_dir

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = {g: sorted(loader.get_group_options(g)) for g in sorted(loader.list_groups("")) if g != "hydra"}
    return groups, _defaults()


def _defaults() -> dict[str, str]:
    from omegaconf import OmegaConf

    from sweep.config import DEFAULT_GRID, config_dir

    chosen: dict[str, str] = {"grid": DEFAULT_GRID}
    for item in OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml")).get("defaults", []):  # type: ignore[union-attr]
        if isinstance(item, dict):
            for group, option in item.items():
                chosen[str(group)] = ", ".join(option) if isinstance(option, list) else str(option)
    return chosen


def groups_text(groups: dict[str, list[str]], defaults: dict[str, Any]) -> str:
    width = max(len(g) for g in groups) + 1
    lines = ["== Configuration groups ==", "Compose your configuration from those groups (group=option)", ""]
    for group, options in groups.items():
        default = "" if group in CATALOGUES or group not in defaults else f"  (default: {defaults[group]})"
        lines.append(f"{group + ':':<{width}} {', '.join(options)}{default}")
        if group in USAGE:
            lines.append(f"{'':<{width}}   {USAGE[group]}")
    lines += ["", "== Config ==", "Override anything in the config (foo.bar=value); `python -m sweep --cfg` prints it all,",
              "`python -m sweep --cfg +grid=paper` the paper grid's. Every key is typed and checked before anything starts."]
    return "\n".join(lines)


def help_text(usage: str) -> str:
    """The CLI's usage followed by the groups; the groups part degrades to a note if conf/ cannot be read."""
    try:
        groups, defaults = group_options()
    except Exception as e:  # a broken conf/ must not hide the usage
        return f"{usage}\n(config groups unavailable: {type(e).__name__}: {e})\n"
    return f"{usage.rstrip()}\n\n{groups_text(groups, defaults)}\n"
