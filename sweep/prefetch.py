"""``python -m sweep prefetch [overrides]``: download the plan's Hugging Face models into the HF cache.

Run it once on a machine with internet (a login node) before submitting a grid
that uses ``kind: hf`` LLMs or an ``hf_clip`` tower:

    HF_HOME=/shared/hf python -m sweep prefetch +grid=paper

``HF_HOME`` (or ``HF_HUB_CACHE``) must be storage the compute nodes also see:
the jobs load models with ``local_files_only=True`` and never touch the network.
Only what is missing is downloaded; only config, tokenizer, preprocessor and
weight files are fetched (one weight format: safetensors when the repo has it).
"""

from __future__ import annotations

import os
from typing import Any

from sweep.errors import SweepError

# Configs, tokenizers (json/txt/sentencepiece), preprocessors; weights are added per repo.
META_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")
SAFETENSORS = ("*.safetensors",)
TORCH_BIN = ("*.bin",)
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def uses_hf(cfg: Any, plan: Any) -> bool:
    """Whether any cell needs a Hugging Face model (cheap: no torch import for the mini grid)."""
    return bool(plan.cells) and cfg.path == "hf"


def missing_for(cfg: Any, plan: Any) -> list[str]:
    """``missing_models`` when the plan uses HF models, else nothing."""
    if not uses_hf(cfg, plan):
        return []
    from sweep.models.hf import missing_models

    return missing_models(cfg, plan)


def weight_patterns(files: list[str]) -> tuple[str, ...]:
    """Safetensors when the repo has them, else PyTorch .bin (never TF/Flax/ONNX copies)."""
    return SAFETENSORS if any(f.endswith(".safetensors") for f in files) else TORCH_BIN


def _download(repo_id: str) -> str:
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(repo_id)
    return snapshot_download(repo_id, allow_patterns=[*META_PATTERNS, *weight_patterns(files)])


def prefetch(cfg: Any, plan: Any) -> int:
    """Download what ``missing_models`` reports; prints progress, raises ``SweepError`` on what it cannot fetch."""
    from sweep.models.hf import is_local_path, missing_models, needed_models

    needed = needed_models(cfg, plan) if uses_hf(cfg, plan) else {}
    absent = missing_models(cfg, plan) if needed else []
    if not absent:
        what = f"all {len(needed)} models the plan needs are present" if needed else "the plan needs no Hugging Face models"
        print(f"nothing to do: {what}")
        return 0
    local = [p for p in absent if is_local_path(p)]
    if local:
        raise SweepError("llm/vision path", f"local model directories not found or incomplete: {', '.join(local)}",
                         "point the path at a directory written by save_pretrained (config.json, tokenizer or "
                         "preprocessor files, weights) or at a hub id")
    offline = [v for v in OFFLINE_VARS if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]
    if offline:
        raise SweepError("prefetch", f"{', '.join(offline)} is set, so nothing can be downloaded; missing: {', '.join(absent)}",
                         f"run `{' '.join(f'{v}=0' for v in offline)} python -m sweep prefetch ...` on a machine with "
                         "internet, with HF_HOME on storage the compute nodes share")
    print(f"downloading {len(absent)} of {len(needed)} models into the HF cache:")
    for repo_id in absent:
        print(f"  {repo_id} ...", flush=True)
        try:
            where = _download(repo_id)
        except Exception as e:  # network, auth (gated repos) and not-found errors come in many types
            raise SweepError("prefetch", f"cannot download {repo_id}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             "check the hub id and the network; for gated models log in with `hf auth login` "
                             "(or set HF_TOKEN); then run prefetch again (it resumes)") from None
        print(f"    -> {where}")
    still = missing_models(cfg, plan)
    if still:
        raise SweepError("prefetch", f"downloaded, but still incomplete: {', '.join(still)}",
                         "the repo lacks a config, tokenizer/preprocessor or weight file that the jobs need")
    print(f"done: all {len(needed)} models are in the HF cache")
    return 0


def missing_error(missing: list[str]) -> SweepError:
    """The plan-time error for models not in the local HF cache."""
    return SweepError("models", f"not in the local Hugging Face cache: {', '.join(missing)}",
                      "run `python -m sweep prefetch +grid=paper` (with the same overrides) on a machine with "
                      "internet, with HF_HOME on storage the compute nodes share; jobs load models offline "
                      "(local_files_only, as with HF_HUB_OFFLINE=1) and never download")
