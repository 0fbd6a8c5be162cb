"""The VLM of one cell: token compressor -> MLP projector -> decoder LLM (LLaVA-style).

Input sequence: ``[V visual tokens][question, left-padded][answer + EOS]``. Left
padding puts every answer at the same position in a batch, which keeps teacher
forcing and greedy decoding simple; padded keys are masked and position ids skip
them, so a question's encoding does not depend on its batch. The loss covers the
answer tokens (and EOS) only.

The LLM is ``transformers.Qwen2ForCausalLM`` built from a small ``Qwen2Config``
(tied embeddings, the synthetic word-level vocabulary) for ``kind: tiny_qwen2``
catalogue entries. Compressors that set ``needs_question`` receive the LLM's
last-token hidden state of the question, computed without gradient (QueCC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from sweep.models.compressors import build_compressor
from sweep.models.compressors.base import Compressor

if TYPE_CHECKING:
    from sweep.specs.models import CompressorEntry, MiniLLM


def build_llm(entry: MiniLLM, vocab_size: int, pad_id: int = 0, eos_id: int = 1) -> nn.Module:
    """A randomly initialised Qwen2ForCausalLM for a ``tiny_qwen2`` catalogue entry."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=entry.hidden_size,
        intermediate_size=entry.intermediate_size,
        num_hidden_layers=entry.num_layers,
        num_attention_heads=entry.num_heads,
        num_key_value_heads=entry.kv_heads,
        max_position_embeddings=entry.max_positions,
        tie_word_embeddings=True,
        use_cache=False,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    return Qwen2ForCausalLM(config)


def non_embedding_params(llm: nn.Module) -> int:
    """The scaling law's N: LLM parameters minus the (tied) token embedding."""
    total = sum(p.numel() for p in llm.parameters())
    return total - llm.get_input_embeddings().weight.numel()


def llm_forward_flops(llm: nn.Module, tokens: float) -> float:
    """FLOPs of one forward pass over ``tokens`` positions: 2 N per token plus causal attention scores."""
    cfg = llm.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    attention = 2.0 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * tokens * (tokens + 1)
    return 2.0 * non_embedding_params(llm) * tokens + attention


class VLM(nn.Module):
    """compressor -> projector -> LLM, trained on (features, question, answer) triples."""

    def __init__(self, compressor: Compressor, projector: nn.Module, llm: nn.Module) -> None:
        super().__init__()
        self.compressor, self.projector, self.llm = compressor, projector, llm

    @property
    def visual_tokens(self) -> int:
        """V: tokens the compressor hands to the LLM per image."""
        return self.compressor.visual_tokens

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ids (B, T) -> (B, T, H)."""
        return self.llm.get_input_embeddings()(ids)

    @torch.no_grad()
    def question_embedding(self, q_ids: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        """The LLM's last-token final hidden state of the (left-padded) question, (B, H)."""
        positions = (q_mask.cumsum(1) - 1).clamp(min=0)
        out = self.llm.model(inputs_embeds=self.embed(q_ids), attention_mask=q_mask, position_ids=positions)
        return out.last_hidden_state[:, -1]

    def visual(
        self, feats: torch.Tensor, levels: torch.Tensor | None, q_ids: torch.Tensor, q_mask: torch.Tensor
    ) -> torch.Tensor:
        """Compress and project the cached vision features into V LLM-width tokens (B, V, H)."""
        kwargs: dict[str, torch.Tensor] = {}
        if self.compressor.needs_levels:
            if levels is None:
                raise ValueError(f"{type(self.compressor).__name__} needs multi-level features; none were given")
            kwargs["levels"] = levels.float()
        if self.compressor.needs_question:
            kwargs["question"] = self.question_embedding(q_ids, q_mask)
        return self.projector(self.compressor(feats.float(), **kwargs))

    def _run(self, vis: torch.Tensor, q_ids: torch.Tensor, q_mask: torch.Tensor, tail: torch.Tensor, n_logits: int):
        """LLM over [vis][question][tail]; logits of the last ``n_logits`` positions."""
        b, v = vis.shape[:2]
        ones = q_mask.new_ones
        embeds = torch.cat([vis, self.embed(q_ids), self.embed(tail)], dim=1)
        mask = torch.cat([ones(b, v), q_mask, ones(b, tail.shape[1])], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        return self.llm.lm_head(hidden[:, -n_logits:])

    def forward(
        self,
        feats: torch.Tensor,
        levels: torch.Tensor | None,
        q_ids: torch.Tensor,
        q_mask: torch.Tensor,
        a_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, A, vocab) predicting each answer token ``a_ids[:, j]``."""
        vis = self.visual(feats, levels, q_ids, q_mask)
        return self._run(vis, q_ids, q_mask, a_ids[:, :-1], a_ids.shape[1])

    def loss(self, feats, levels, q_ids, q_mask, a_ids, pad_id: int) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (EOS included, padding excluded)."""
        logits = self(feats, levels, q_ids, q_mask, a_ids)
        return F.cross_entropy(logits.flatten(0, 1), a_ids.flatten(), ignore_index=pad_id)

    @torch.no_grad()
    def generate(self, feats, levels, q_ids, q_mask, max_tokens: int, eos_id: int) -> torch.Tensor:
        """Greedy decoding of up to ``max_tokens`` tokens (B, max_tokens); after EOS everything is EOS."""
        vis = self.visual(feats, levels, q_ids, q_mask)
        b = q_ids.shape[0]
        out = q_ids.new_empty(b, 0)
        done = torch.zeros(b, dtype=torch.bool)
        for _ in range(max_tokens):
            nxt = self._run(vis, q_ids, q_mask, out, 1)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        pad = torch.full((b, max_tokens - out.shape[1]), eos_id, dtype=out.dtype)
        return torch.cat([out, pad], dim=1)


def build_vlm(
    llm_entry: MiniLLM,
    compressor_entry: CompressorEntry,
    *,
    vision_dim: int,
    level_dim: int,
    grid: int,
    visual_tokens: int,
    vocab_size: int,
    pad_id: int = 0,
    eos_id: int = 1,
) -> VLM:
    """The VLM of one cell, randomly initialised (seed the RNG first for a deterministic init).

    The compressor keeps the vision width (so avg-pooling stays parameter-free) and
    the two-layer GELU projector (LLaVA-1.5's ``mlp2x_gelu``) maps it to the LLM width.
    """
    llm = build_llm(llm_entry, vocab_size, pad_id, eos_id)
    hidden = llm.config.hidden_size
    compressor = build_compressor(
        compressor_entry, vision_dim, vision_dim, grid, visual_tokens, level_dim=level_dim, question_dim=hidden
    )
    projector = nn.Sequential(nn.Linear(vision_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
    return VLM(compressor, projector, llm)
