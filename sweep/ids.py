"""Content ids: a job's id is a hash of what it computes, not of where or how it runs.

The hash covers the job's semantic spec (model, data, hyper-parameters), the
job kind's version (bumped when a kind's code changes what it computes) and
the ids of its upstream jobs. Paths, launcher and resource settings are left
out, so moving the store or switching from local to Slurm reuses every result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: key order never changes an id."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(obj: Any, length: int = 8) -> str:
    """The first ``length`` hex digits of the SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def job_id(kind: str, name: str, spec: Mapping[str, Any], version: int, upstream: Sequence[str]) -> str:
    """``{kind}-{name}-{hash8}``: readable, and unique by content."""
    digest = content_hash({"kind": kind, "version": version, "spec": spec, "upstream": sorted(upstream)})
    return f"{slug(kind)}-{slug(name)}-{digest}" if name else f"{slug(kind)}-{digest}"
