"""Hugging Face models for the paper grid: Qwen-1.5 LLMs and the CLIP ViT-L/14-336 tower, loaded offline.

Compute nodes usually have no internet, so every load here passes
``local_files_only=True`` (what ``HF_HUB_OFFLINE=1`` does globally): a model is
either in the local HF cache (``$HF_HOME`` / ``$HF_HUB_CACHE``) or a local
directory written by ``save_pretrained``. ``python -m sweep prefetch +grid=paper``
fills the cache on a machine with internet; ``missing_models`` is the plan-time
check that says, before anything is submitted, what is not there yet.

    from sweep.models.hf import load_llm, load_vision
    llm = load_llm(cfg.llm["qwen15-0p5b"], dtype=torch.bfloat16)   # .model, .tokenizer, .n_params
    tower = load_vision(cfg.vision); feats, levels = tower.features(pixel_values)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

HF_LLM_KIND = "hf"
HF_VISION_KIND = "hf_clip"
# Any one of these makes the weights present (sharded checkpoints have an index).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# Files each kind needs besides the weights: the model config plus its text or image preprocessor.
NEEDED_FILES = {HF_LLM_KIND: ("config.json", "tokenizer_config.json"), HF_VISION_KIND: ("config.json", "preprocessor_config.json")}


@dataclass
class HFLLM:
    """A loaded causal LM, its tokenizer, and the scaling law's N measured on the loaded weights."""

    model: nn.Module
    tokenizer: Any
    n_params: int  # non-embedding parameters: total minus input embedding minus an untied LM head


def non_embedding_params(model: nn.Module) -> int:
    """N: parameters outside the token embedding and the output head (counted once when they are tied)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != embed.data_ptr()
    return total - embed.numel() - (head.weight.numel() if untied else 0)


def load_llm(entry: Any, dtype: torch.dtype | None = None) -> HFLLM:
    """The ``kind: hf`` catalogue entry's model and tokenizer from the local cache or directory (never the network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = entry.path
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or "auto")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return HFLLM(model=model, tokenizer=tokenizer, n_params=non_embedding_params(model))


class FrozenCLIP(nn.Module):
    """CLIP's vision tower, frozen, with the mini tower's ``features`` contract.

    ``features`` returns, per image, the ``select_layer`` hidden state without the
    CLS token (LLaVA's choice: -2 = penultimate layer) and the multi-level features:
    ``hidden_states[layer]`` for each of ``feature_layers`` concatenated on the
    channel axis. ``hidden_states[0]`` is the embedding output, so layer k is the
    output of block k, counted from 1 as in the mini tower. Features are the raw
    hidden states (LLaVA and TokenPacker normalise nothing further).
    """

    def __init__(self, model: nn.Module, processor: Any, select_layer: int, feature_layers: Sequence[int]) -> None:
        super().__init__()
        self.model, self.processor = model.eval().requires_grad_(False), processor
        self.select_layer, self.feature_layers = int(select_layer), tuple(int(x) for x in feature_layers)
        layers = self.model.config.num_hidden_layers
        bad = [x for x in self.feature_layers if not 1 <= x <= layers]
        if bad:
            raise ValueError(f"vision.feature_layers {list(self.feature_layers)}: {bad} outside 1..{layers}")
        if not -layers <= self.select_layer <= layers:
            raise ValueError(f"vision.select_layer={self.select_layer} outside -{layers}..{layers}")

    @property
    def dim(self) -> int:
        """C: channels per patch token."""
        return int(self.model.config.hidden_size)

    @property
    def num_patches(self) -> int:
        """P = (image_size / patch_size)^2 patch tokens (CLS excluded)."""
        return (self.model.config.image_size // self.model.config.patch_size) ** 2

    @torch.no_grad()
    def features(self, pixel_values: torch.Tensor, feature_layers: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) processed pixels -> feats (B, P, C) and levels (B, P, C * len(feature_layers))."""
        layers = self.feature_layers if feature_layers is None else tuple(feature_layers)
        param = next(self.model.parameters())
        out = self.model(pixel_values=pixel_values.to(param.device, param.dtype), output_hidden_states=True)
        hidden = out.hidden_states  # num_layers + 1 tensors of (B, 1 + P, C)
        feats = hidden[self.select_layer][:, 1:]
        levels = torch.cat([hidden[layer][:, 1:] for layer in layers], dim=-1)
        return feats, levels


def load_vision(vision_cfg: Any, dtype: torch.dtype | None = None) -> FrozenCLIP:
    """The ``kind: hf_clip`` tower (a ``ClipVision`` spec) and its image processor from the local cache or directory, frozen."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    path = vision_cfg.path
    model = CLIPVisionModel.from_pretrained(path, local_files_only=True, dtype=dtype or torch.float32)
    processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
    return FrozenCLIP(model, processor, vision_cfg.select_layer, vision_cfg.feature_layers)


def needed_models(cfg: Any, plan: Any) -> dict[str, str]:
    """{path: kind} of every HF model the plan's cells use (LLMs of kind hf, an hf_clip tower)."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(cell.llm for cell in plan.cells):
        entry = cfg.llm[name]
        if entry.kind == HF_LLM_KIND:
            out[entry.path] = HF_LLM_KIND
    if cfg.vision.kind == HF_VISION_KIND and plan.cells:
        out[cfg.vision.path] = HF_VISION_KIND
    return out


def is_local_path(path: str) -> bool:
    """A filesystem path (absolute, relative with ./ or ~, or deeper than owner/name), not a hub id."""
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or Path(path).expanduser().is_dir()


def is_present(path: str, kind: str) -> bool:
    """Whether a local directory or the HF cache holds the config, preprocessor and weights ``kind`` needs."""
    local = Path(path).expanduser()
    if local.is_dir():
        return all((local / f).is_file() for f in NEEDED_FILES[kind]) and any((local / f).is_file() for f in WEIGHT_FILES)
    if is_local_path(path):
        return False  # a filesystem path that is not there; not a hub id
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        # A str is the cached file; None (never fetched) and a "known missing" marker both mean absent.
        return isinstance(try_to_load_from_cache(path, name), str)

    return all(cached(f) for f in NEEDED_FILES[kind]) and any(cached(f) for f in WEIGHT_FILES)


def missing_models(cfg: Any, plan: Any) -> list[str]:
    """Paths (hub ids or directories) the plan needs that are neither local directories nor in the HF cache."""
    return [path for path, kind in needed_models(cfg, plan).items() if not is_present(path, kind)]
