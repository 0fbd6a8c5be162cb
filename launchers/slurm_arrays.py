"""Group the jobs to submit into aligned Slurm job arrays (pure; no Slurm needed).

A *chain* is a run of jobs where each one is the only job still to run that
needs the previous one: features -> (train stage 1 -> train stage 2 -> eval of
one cell) is a chain after its head, and so is (eval) alone when the cell's
train is already done. Chains with the same shape (kinds, resource classes and
the same other upstream jobs at each position) are stacked: position i of all
of them becomes one array, and array i+1 waits for array i task by task
(Slurm's ``aftercorr``: task k starts when task k of the array before it has
succeeded). Upstream jobs outside the chain (the shared features job, a job
still queued from an earlier run) are ``afterok`` dependencies of the whole
array. Arrays are split at Slurm's MaxArraySize with the same split points at
every position, so task k keeps matching task k.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sweep.plan import Job, Plan


@dataclass(frozen=True)
class ArraySpec:
    """One submission: task k runs ``jobs[k]``."""

    key: str
    jobs: tuple[str, ...]
    resource_class: str
    label: str  # kind (and stage) of every job in it, e.g. "train:stage1"
    after_corr: str | None = None  # key of the array this one follows task by task
    after_ok: tuple[str, ...] = ()  # job ids every task waits for (submitted here or earlier)


def kind_label(job: Job) -> str:
    return job.role if not job.stage or job.stage == job.role else f"{job.role}:{job.stage}"


def _chains(jobs: Sequence[Job], todo: Collection[str]) -> list[list[Job]]:
    """Split the jobs to submit (in plan order) into chains."""
    dependents: dict[str, list[str]] = {}
    for job in jobs:
        for dep in job.deps:
            if dep in todo:
                dependents.setdefault(dep, []).append(job.id)
    parent: dict[str, str] = {}
    for job in jobs:
        only_child_of = [d for d in job.deps if d in todo and dependents.get(d) == [job.id]]
        if len(only_child_of) == 1:
            parent[job.id] = only_child_of[0]
    child = {p: c for c, p in parent.items()}
    by_id = {j.id: j for j in jobs}
    chains = []
    for job in jobs:
        if job.id in parent:
            continue  # not a chain head
        chain, cur = [job], job.id
        while cur in child:
            cur = child[cur]
            chain.append(by_id[cur])
        chains.append(chain)
    return chains


def plan_arrays(plan: Plan, submit: Collection[str], waits_for: Collection[str], max_array_size: int) -> list[ArraySpec]:
    """The arrays for the jobs in ``submit``, in an order where every array comes after those it waits for.

    ``waits_for`` are jobs not submitted now that must still finish first (queued
    or running from an earlier ``run``); any other upstream job is assumed done.
    """
    if max_array_size < 1:
        raise ValueError(f"max_array_size must be >= 1, got {max_array_size}")
    todo = set(submit)
    jobs = [j for j in plan if j.id in todo]
    external = set(waits_for)

    def extra(job: Job, parent: Job | None) -> tuple[str, ...]:
        return tuple(sorted(d for d in job.deps if (d in todo or d in external) and (parent is None or d != parent.id)))

    groups: dict[tuple, list[list[Job]]] = {}
    for chain in _chains(jobs, todo):
        shape = tuple((kind_label(j), j.resource_class, extra(j, chain[i - 1] if i else None)) for i, j in enumerate(chain))
        groups.setdefault(shape, []).append(chain)

    arrays: list[ArraySpec] = []
    for g, (shape, chains) in enumerate(groups.items()):
        for c, start in enumerate(range(0, len(chains), max_array_size)):
            chunk = chains[start:start + max_array_size]
            prev: str | None = None
            for i, (label, rclass, after_ok) in enumerate(shape):
                key = f"g{g}c{c}p{i}"
                arrays.append(ArraySpec(key, tuple(chain[i].id for chain in chunk), rclass, label, prev, after_ok))
                prev = key
    return _topological(arrays)


def _topological(arrays: list[ArraySpec]) -> list[ArraySpec]:
    """Arrays ordered so that each comes after the arrays holding the jobs it waits for."""
    home = {job: a.key for a in arrays for job in a.jobs}
    placed: set[str] = set()
    out: list[ArraySpec] = []
    remaining = list(arrays)
    while remaining:
        ready = [a for a in remaining
                 if (a.after_corr is None or a.after_corr in placed) and all(home.get(d, "") in placed or d not in home for d in a.after_ok)]
        if not ready:
            raise AssertionError(f"the arrays wait for each other in a cycle: {[a.key for a in remaining]}")
        for a in ready:
            out.append(a)
            placed.add(a.key)
            remaining.remove(a)
    return out
