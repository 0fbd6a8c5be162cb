"""Job bodies (features, train, eval) and the context the runner hands them.

Each job kind is a function ``run(ctx: JobContext) -> dict[str, float]`` registered
by a lazy ``"module:function"`` string in ``JOB_KINDS``; the heavy imports
(torch, transformers) happen inside the body, in the worker.
"""

JOB_KINDS: dict[str, str] = {
    "features": "sweep.jobs.features:run",
    "train": "sweep.jobs.train:run",
    "eval": "sweep.jobs.evaluate:run",
    "probe": "sweep.jobs.probe:run",
}

# Bump a kind's version when its code changes what it computes: every id of that
# kind (and everything downstream) changes, so old results are not reused.
JOB_VERSIONS: dict[str, int] = {"features": 1, "train": 1, "eval": 1, "probe": 1}
