"""Vision tower and VLM wiring: shapes, masking, the compressor interface, parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.models.compressors.base import Compressor
from sweep.models.vision import MiniViT
from sweep.models.vlm import VLM, build_llm, build_vlm, llm_forward_flops, non_embedding_params
from sweep.specs.models import CompressorEntry, MiniLLM

LLM = MiniLLM(name="t", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
AVGPOOL = CompressorEntry.parse({"name": "avgpool", "_target_": "avgpool"}, "compressor.avgpool")
VOCAB = 20


def test_vit_features_shapes_and_final_layer_is_a_level_slice() -> None:
    torch.manual_seed(0)
    vit = MiniViT(image_size=32, patch_size=4, dim=16, layers=2, heads=2, head_sizes=(5, 5, 17))
    images = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    assert vit(images).shape == (3, 64, 27)
    feats, levels = vit.features(images, [1, 2])
    assert feats.shape == (3, 64, 16) and levels.shape == (3, 64, 32)
    assert torch.allclose(feats, levels[..., 16:])
    assert vit.flops() > 0
    with pytest.raises(ValueError, match="feature_layers"):
        vit.features(images, [3])


def _vlm(visual_tokens: int = 4) -> VLM:
    torch.manual_seed(0)
    return build_vlm(LLM, AVGPOOL, vision_dim=16, level_dim=32, grid=8, visual_tokens=visual_tokens, vocab_size=VOCAB)


def test_left_padding_does_not_change_a_questions_logits() -> None:
    model = _vlm().eval()
    feats = torch.randn(1, 64, 16)
    short = torch.tensor([[5, 6, 7]])
    answer = torch.tensor([[8, 1]])
    alone = model(feats, None, short, torch.ones_like(short), answer)
    # Batched beside a longer question, the short one is left-padded with 0 and masked.
    padded = torch.tensor([[0, 0, 5, 6, 7], [9, 9, 9, 9, 9]])
    mask = (padded != 0).long()
    both = model(feats.expand(2, -1, -1), None, padded, mask, answer.expand(2, -1))
    assert torch.allclose(alone[0], both[0], atol=1e-5)


def test_loss_counts_answer_tokens_only_and_generate_stops_at_eos() -> None:
    model = _vlm()
    feats, q = torch.randn(2, 64, 16), torch.tensor([[3, 4], [5, 6]])
    a = torch.tensor([[7, 1, 0], [8, 9, 1]])
    loss = model.loss(feats, None, q, torch.ones_like(q), a, pad_id=0)
    assert loss.ndim == 0 and loss.item() > 0
    out = model.eval().generate(feats, None, q, torch.ones_like(q), max_tokens=4, eos_id=1)
    assert out.shape == (2, 4)
    for row in out.tolist():
        if 1 in row:
            assert all(t == 1 for t in row[row.index(1) :])


class _Spy(Compressor):
    """Records what the VLM passes to a compressor that needs levels and the question."""

    needs_levels = True
    needs_question = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.proj = nn.Linear(self.level_dim + self.question_dim, self.out_dim)
        self.seen: dict[str, tuple] = {}

    def forward(self, feats, levels=None, question=None):
        self.seen = {"levels": tuple(levels.shape), "question": tuple(question.shape), "grad": question.requires_grad}
        pooled = levels.mean(1)
        return self.proj(torch.cat([pooled, question], -1))[:, None].expand(-1, self.visual_tokens, -1)


def test_levels_and_question_embedding_reach_compressors_that_ask() -> None:
    torch.manual_seed(0)
    llm = build_llm(LLM, VOCAB)
    spy = _Spy(in_dim=16, out_dim=16, grid=8, visual_tokens=1, level_dim=32, question_dim=32)
    model = VLM(spy, nn.Linear(16, 32), llm)
    q = torch.tensor([[0, 3, 4], [5, 6, 7]])
    model.loss(torch.randn(2, 64, 16), torch.randn(2, 64, 32), q, (q != 0).long(), torch.tensor([[8, 1], [9, 1]]), 0)
    assert spy.seen == {"levels": (2, 64, 32), "question": (2, 32), "grad": False}
    with pytest.raises(ValueError, match="multi-level"):
        model(torch.randn(2, 64, 16), None, q, (q != 0).long(), torch.tensor([[8, 1], [9, 1]]))


def test_parameter_counts_and_flops() -> None:
    llm = build_llm(LLM, VOCAB)
    total = sum(p.numel() for p in llm.parameters())
    assert non_embedding_params(llm) == total - VOCAB * 32  # tied embeddings counted once
    n = non_embedding_params(llm)
    assert llm_forward_flops(llm, 10) > 2 * n * 10  # attention comes on top of 2 N T
    assert LLM.params() == n  # the plan's cost estimate counts what the job builds
    gqa = MiniLLM(name="g", hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=48)
    assert gqa.params() == non_embedding_params(build_llm(gqa, VOCAB))
