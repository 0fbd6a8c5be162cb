"""Typed catalogue entries: LLMs (mini or Hugging Face), vision towers, token compressors.

The LLM and compressor groups of ``conf/`` are catalogues (every entry loaded under
its name; the grid picks names); vision is a single choice. Each entry type is a
union variant told apart by its ``kind``. A compressor entry's own options are
bound to its class's constructor at parse time, with the class's defaults filled
in, so a default that changes the model is part of the job's id.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

from sweep.errors import SweepError, close_names
from sweep.specs.schema import Spec, incidental, join, non_empty, parse_value, positive, semantic, type_hints
from sweep.specs.train import Pretrain

# Keyword arguments the model builder passes to every compressor; not config options.
COMPRESSOR_BUILD_ARGS = ("self", "in_dim", "out_dim", "grid", "visual_tokens", "level_dim", "question_dim", "valid_params")


@dataclass(frozen=True, kw_only=True)
class MiniLLM(Spec):
    """A tiny ``Qwen2ForCausalLM`` built from its shape (no weights): the mini study's LLM sizes."""

    kind: Literal["tiny_qwen2"] = semantic("tiny_qwen2")
    name: str = semantic()
    hidden_size: int = semantic(check=positive)
    num_layers: int = semantic(check=positive)
    num_heads: int = semantic(check=positive)
    intermediate_size: int = semantic(check=positive)
    # Key/value heads (grouped-query attention); null = num_heads.
    num_kv_heads: int | None = semantic(None, check=positive)
    max_positions: int = semantic(512, check=positive)
    # The `resources` class its jobs ask for.
    resource_class: str = incidental("cpu")

    def check(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise SweepError(join(where, "num_heads"), f"{self.num_heads} does not divide hidden_size {self.hidden_size}",
                             "pick a head count that divides the hidden size")
        if self.num_heads % self.kv_heads:
            raise SweepError(join(where, "num_kv_heads"), f"{self.kv_heads} does not divide num_heads {self.num_heads}",
                             "pick a divisor of num_heads, or null")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    def params(self) -> float:
        """Non-embedding parameters N (what the law calls N), from the shape."""
        h, kv = self.hidden_size, (self.hidden_size // self.num_heads) * self.kv_heads
        # q and o projections, k and v (grouped), q/k/v biases (Qwen2 has them), the MLP, two RMSNorms.
        per_layer = 2 * h * h + 2 * h * kv + (h + 2 * kv) + 3 * h * self.intermediate_size + 2 * h
        return float(self.num_layers * per_layer + h)


@dataclass(frozen=True, kw_only=True)
class LLMShape(Spec):
    """A decoder LLM's architecture (its ``config.json``), for the plan's memory estimate (``sweep.memory``)."""

    hidden_size: int = incidental(check=positive)
    num_layers: int = incidental(check=positive)
    num_heads: int = incidental(check=positive)
    # Key/value heads (grouped-query attention); null = num_heads.
    num_kv_heads: int | None = incidental(None, check=positive)
    intermediate_size: int = incidental(check=positive)
    vocab_size: int = incidental(check=positive)
    # The output head reuses the input embedding (Qwen-1.5 0.5B does; the larger ones do not).
    tie_word_embeddings: bool = incidental(False)

    def check(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise SweepError(join(where, "num_heads"), f"{self.num_heads} does not divide hidden_size {self.hidden_size}",
                             "copy num_attention_heads from the model's config.json")
        if self.num_heads % self.kv_heads:
            raise SweepError(join(where, "num_kv_heads"), f"{self.kv_heads} does not divide num_heads {self.num_heads}",
                             "copy num_key_value_heads from the model's config.json, or null")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.hidden_size // self.num_heads * self.kv_heads

    def layer_params(self) -> int:
        """One Qwen2 decoder layer: q/k/v (with biases) and o projections, the SwiGLU MLP, two RMSNorms."""
        h, kv, i = self.hidden_size, self.kv_dim, self.intermediate_size
        return 2 * h * h + 2 * h * kv + (h + 2 * kv) + 3 * h * i + 2 * h

    def embedding_params(self) -> int:
        """Input embedding plus an untied output head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def params(self) -> int:
        """Every parameter; ``params() - embedding_params()`` is the law's N."""
        return self.num_layers * self.layer_params() + self.hidden_size + self.embedding_params()


@dataclass(frozen=True, kw_only=True)
class HFLLM(Spec):
    """A Hugging Face causal LM (Qwen-1.5 in the paper grid), loaded offline from the cache or a folder."""

    kind: Literal["hf"] = semantic("hf")
    name: str = semantic()
    # Hub id (prefetched into the HF cache) or a folder written by save_pretrained.
    path: str = semantic(check=non_empty)
    # Parameter counts in billions, for the plan's cost and memory estimates (the job measures N itself).
    params_b: float = incidental(check=positive)
    non_embedding_params_b: float = incidental(check=positive)
    resource_class: str = incidental()
    # The architecture, for the plan's memory estimate per GPU; null = no estimate (and no memory check).
    shape: LLMShape | None = incidental(None)

    def check(self, where: str) -> None:
        if self.shape is None:
            return
        for name, stated, counted in (("params_b", self.params_b, self.shape.params()),
                                      ("non_embedding_params_b", self.non_embedding_params_b,
                                       self.shape.params() - self.shape.embedding_params())):
            if abs(stated * 1e9 - counted) > 0.01 * counted:
                raise SweepError(join(where, name), f"is {stated} but its shape has {counted / 1e9:.3f} billion",
                                 f"set {join(where, name)}={counted / 1e9:.3f}, or correct {join(where, 'shape')}")

    def params(self) -> float:
        return self.non_embedding_params_b * 1e9


LLM = MiniLLM | HFLLM


@dataclass(frozen=True, kw_only=True)
class MiniVision(Spec):
    """A small ViT pretrained once on the synthetic images, then frozen; its features are cached."""

    kind: Literal["mini_vit"] = semantic("mini_vit")
    image_size: int = semantic(check=positive)
    patch_size: int = semantic(check=positive)
    dim: int = semantic(check=positive)
    layers: int = semantic(check=positive)
    heads: int = semantic(check=positive)
    # Encoder layers (counted from 1) concatenated as the multi-level features.
    feature_layers: tuple[int, ...] = semantic(check=non_empty)
    pretrain: Pretrain = semantic()

    def check(self, where: str) -> None:
        _check_patches(self.image_size, self.patch_size, where)
        bad = [x for x in self.feature_layers if not 1 <= x <= self.layers]
        if bad:
            raise SweepError(join(where, "feature_layers"), f"{bad} outside 1..{self.layers}", f"use layers in 1..{self.layers}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def params(self) -> float:
        """Parameters of the encoder blocks (attention 4 d^2 + MLP 8 d^2 each), for cost estimates."""
        return 12.0 * self.dim ** 2 * self.layers


@dataclass(frozen=True, kw_only=True)
class ClipVision(Spec):
    """CLIP's vision tower from Hugging Face (ViT-L/14-336 in the paper), frozen."""

    kind: Literal["hf_clip"] = semantic("hf_clip")
    path: str = semantic(check=non_empty)
    image_size: int = semantic(check=positive)
    patch_size: int = semantic(check=positive)
    # Hidden state used as the main features (LLaVA: -2, the penultimate layer).
    select_layer: int = semantic(-2)
    # Layers (counted from 1) concatenated as multi-level features (TokenPacker, QueCC).
    feature_layers: tuple[int, ...] = semantic(())
    # Parameters in billions, for cost and memory estimates.
    params_b: float = incidental(check=positive)
    # Width and depth (config.json: hidden_size, num_hidden_layers), for the memory estimate; null = no estimate.
    hidden_size: int | None = incidental(None, check=positive)
    num_layers: int | None = incidental(None, check=positive)

    def check(self, where: str) -> None:
        _check_patches(self.image_size, self.patch_size, where)
        if self.num_layers is not None:
            bad = [x for x in self.feature_layers if not 1 <= x <= self.num_layers]
            if bad:
                raise SweepError(join(where, "feature_layers"), f"{bad} outside 1..{self.num_layers}",
                                 f"use layers in 1..{self.num_layers}")
            if not -self.num_layers <= self.select_layer <= self.num_layers:
                raise SweepError(join(where, "select_layer"), f"{self.select_layer} is outside -{self.num_layers}..{self.num_layers}",
                                 "use -2 (the penultimate layer, as LLaVA does)")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def params(self) -> float:
        return self.params_b * 1e9


Vision = MiniVision | ClipVision


def _check_patches(size: int, patch: int, where: str) -> None:
    if size % patch:
        raise SweepError(join(where, "image_size"), f"{size} is not a multiple of patch_size {patch}",
                         "pick an image size divisible by the patch size")


@dataclass(frozen=True, kw_only=True)
class CompressorEntry(Spec):
    """A token compressor: ``_target_`` names the class (a registered name or ``module:Class``); the rest are its options."""

    name: str = semantic()
    _target_: str = semantic()
    # The class's keyword options, with its defaults filled in.
    params: dict[str, Any] = semantic(factory=dict)

    @classmethod
    def parse(cls, data: Any, where: str) -> CompressorEntry:
        from sweep.models.compressors import COMPRESSORS

        if not isinstance(data, dict) or "_target_" not in data:
            raise SweepError(join(where, "_target_"), "is missing: it names the compressor class",
                             f"set it to one of {', '.join(COMPRESSORS.names())} or 'package.module:Class'")
        name = parse_value(str, data.get("name", where.rsplit(".", 1)[-1]), join(where, "name"))
        target = parse_value(str, data["_target_"], join(where, "_target_"))
        klass = COMPRESSORS.load_target(COMPRESSORS.target(target) if target in COMPRESSORS else target,
                                        join(where, "_target_"), name)
        given = {k: v for k, v in data.items() if k not in ("name", "_target_")}
        return cls(name=name, _target_=target, params=bound_options(klass, given, where, COMPRESSOR_BUILD_ARGS))

    @property
    def target(self) -> str:
        return self._target_


def bound_options(klass: type, given: dict[str, Any], where: str, skip: tuple[str, ...]) -> dict[str, Any]:
    """``given`` checked against ``klass``'s constructor (names and simple types), with its defaults filled in."""
    sig = inspect.signature(klass.__init__)
    hints = type_hints(klass.__init__) if hasattr(klass.__init__, "__annotations__") else {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    options = {n: p for n, p in sig.parameters.items() if n not in skip and p.kind in named}
    for key in given:
        if key not in options:
            raise SweepError(join(where, key), f"{klass.__name__} has no option {key!r}.{close_names(key, options)}",
                             f"use one of its options: {', '.join(options) or 'none'}")
    out: dict[str, Any] = {}
    for name, p in options.items():
        if name in given:
            tp = hints.get(name, Any)
            out[name] = parse_value(tp, given[name], join(where, name)) if _simple(tp) else given[name]
        elif p.default is inspect.Parameter.empty:
            raise SweepError(join(where, name), f"{klass.__name__} needs this option", f"set {join(where, name)}=...")
        else:
            out[name] = p.default
    return out


def _simple(tp: Any) -> bool:
    """Annotations ``parse_value`` can check exactly (scalars, optional scalars)."""
    import types
    import typing

    scalars = (bool, int, float, str)
    if tp in scalars:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return all(a in scalars or a is type(None) for a in typing.get_args(tp))
    return False
