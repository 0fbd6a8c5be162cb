"""Typed specs: the composed config and every job's spec as frozen dataclasses.

    from sweep.specs.config import Config
    cfg = Config.parse(resolved_dict, "")       # every field checked; SweepError names the first problem
    job.spec.identity()                         # the semantic fields: what the job's id hashes

``schema`` is the machinery (``semantic``/``incidental`` fields, strict parsing),
``models``, ``train`` and ``data`` type the config groups, ``config`` the whole
config, ``jobs`` what each job kind receives. Import from the submodules (this
package imports nothing, so ``launchers.config`` can use ``schema`` without a cycle).
"""
