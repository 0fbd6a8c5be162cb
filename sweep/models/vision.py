"""The mini vision tower: a small ViT pretrained on a dense per-patch label task, then frozen.

It plays CLIP's part in the miniature study. Training it jointly with the LLM from
scratch does not learn on a CPU budget (see the mini-study notes), so the
``features`` job pretrains it once to predict each patch's shape, colour and letter
(one head per factor, 0 = none) and caches its features for every cell.

Features are LayerNorm-ed (without affine) block outputs, so the final-layer
features and each multi-level slice share one scale; when the last block is one of
``feature_layers`` the final features are exactly a slice of the multi-level ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class MiniViT(nn.Module):
    """Patchify -> linear embed + learned positions -> pre-norm Transformer blocks -> per-patch heads.

    ``head_sizes`` gives one classification head per label factor (e.g. shape,
    colour, letter); ``forward`` returns their logits concatenated.
    """

    def __init__(
        self, image_size: int, patch_size: int, dim: int, layers: int, heads: int, head_sizes: Sequence[int]
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"vision.image_size={image_size} is not a multiple of vision.patch_size={patch_size}")
        self.image_size, self.patch_size, self.dim = image_size, patch_size, dim
        self.grid = image_size // patch_size
        self.embed = nn.Linear(3 * patch_size * patch_size, dim)
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )
        self.head_sizes = tuple(int(n) for n in head_sizes)
        self.head = nn.Linear(dim, sum(self.head_sizes))

    @property
    def num_patches(self) -> int:
        """P = grid * grid patch tokens per image."""
        return self.grid * self.grid

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, P, 3 * patch^2) floats in [-0.5, 0.5], row-major grid."""
        b, p, g = images.shape[0], self.patch_size, self.grid
        x = images.float().div(255.0).sub(0.5)
        x = x.reshape(b, g, p, g, p, 3).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, g * g, p * p * 3)

    def block_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output of every block (index 0 = block 1), each (B, P, dim)."""
        x = self.embed(self.patchify(images)) + self.pos
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch label logits (B, P, sum(head_sizes)) for pretraining."""
        return self.head(_norm(self.block_outputs(images)[-1]))

    def features(self, images: torch.Tensor, feature_layers: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Final-layer features (B, P, dim) and multi-level features (B, P, dim * len(feature_layers)).

        ``feature_layers`` counts blocks from 1, as CLIP layer numbers do.
        """
        outputs = self.block_outputs(images)
        bad = [layer for layer in feature_layers if not 1 <= layer <= len(outputs)]
        if bad:
            raise ValueError(f"vision.feature_layers {list(feature_layers)}: {bad} outside 1..{len(outputs)}")
        levels = torch.cat([_norm(outputs[layer - 1]) for layer in feature_layers], dim=-1)
        return _norm(outputs[-1]), levels

    def flops(self) -> float:
        """Forward FLOPs for one image (multiply-add = 2), head excluded."""
        p, d = self.num_patches, self.dim
        per_block = 2 * p * (4 * d * d + 8 * d * d) + 2 * 2 * p * p * d
        return 2.0 * p * self.embed.in_features * d + len(self.blocks) * per_block


def _norm(x: torch.Tensor) -> torch.Tensor:
    # Without affine: the cached features carry no pretraining head-specific scale.
    return F.layer_norm(x, x.shape[-1:])


def build_vision(conf: Any, head_sizes: Sequence[int]) -> MiniViT:
    """The tower a ``MiniVision`` spec describes (``conf/vision/mini.yaml``)."""
    return MiniViT(conf.image_size, conf.patch_size, conf.dim, conf.layers, conf.heads, head_sizes)


def factored_loss(logits: torch.Tensor, labels: torch.Tensor, head_sizes: Sequence[int]) -> torch.Tensor:
    """Sum over factors of the per-patch cross-entropy; labels (B, P, n_factors)."""
    parts = torch.split(logits, list(head_sizes), dim=-1)
    return sum(F.cross_entropy(part.flatten(0, 1), labels[..., k].flatten()) for k, part in enumerate(parts))


def factored_predictions(logits: torch.Tensor, head_sizes: Sequence[int]) -> torch.Tensor:
    """Argmax per factor: (B, P, n_factors)."""
    return torch.stack([part.argmax(-1) for part in torch.split(logits, list(head_sizes), dim=-1)], dim=-1)
