"""The one error type users see: what was wrong, where, and what to do. Exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SweepError(Exception):
    """Bad input or an impossible request, found before anything is submitted."""

    exit_code = 2

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}\n  fix: {fix}")


def close_names(name: str, choices: Iterable[str]) -> str:
    """' Did you mean x?' for a near miss, else the empty string."""
    near = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" Did you mean {', '.join(near)}?" if near else ""
