"""The paper grid's VLM on Hugging Face weights: frozen CLIP -> compressor -> MLP projector -> Qwen LLM.

    vlm = build_hf_vlm(spec.llm, spec.compressor, spec.vision, spec.cell.visual_tokens)   # an hf_train / bench_eval spec
    out = vlm(batch)                               # a LlavaCollator batch -> HF CausalLMOutput with .loss
    texts = vlm.generate(prompts, images, max_new_tokens=16)

The LLM reads ``inputs_embeds``: in each row the image marker (``IMAGE_TOKEN_ID``,
-200, from ``sweep.data.llava``) is replaced by the V projected visual tokens,
whose labels are -100; text-only rows keep their tokens. Training rows are
right-padded (the loss ignores the tail); generation rows are left-padded so
that every row's next token sits at the last position.

Only the connector (compressor + projector) and the LLM are saved: the CLIP
tower is frozen and always reloaded from its pretrained path, so it never
enters a checkpoint. ``connector_state`` / ``llm_state`` are what the train job
writes; ``load_weights`` is what the next stage and the eval job read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from sweep.data.llava import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMAGE_TOKEN_ID
from sweep.models.compressors import build_compressor
from sweep.models.hf import FrozenCLIP, load_llm, load_vision

if TYPE_CHECKING:
    from sweep.specs.models import HFLLM, ClipVision, CompressorEntry


class HFVLM(nn.Module):
    """A cell's VLM; ``tower`` is frozen and excluded from the weights this class saves."""

    def __init__(self, tower: FrozenCLIP, compressor: nn.Module, projector: nn.Module, llm: nn.Module, tokenizer: Any, n_params: int) -> None:
        super().__init__()
        self.tower, self.compressor, self.projector, self.llm = tower, compressor, projector, llm
        self.tokenizer, self.n_params = tokenizer, int(n_params)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad)

    @property
    def visual_tokens(self) -> int:
        return int(self.compressor.visual_tokens)

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    # ---- weights ---------------------------------------------------------------------------

    def connector_state(self) -> dict[str, torch.Tensor]:
        """Compressor and projector weights (what stage 1 trains)."""
        return {f"compressor.{k}": v for k, v in self.compressor.state_dict().items()} | {
            f"projector.{k}": v for k, v in self.projector.state_dict().items()
        }

    def llm_state(self) -> dict[str, torch.Tensor]:
        return self.llm.state_dict()

    def load_weights(self, blob: Mapping[str, Any]) -> None:
        """Load a train job's ``{"connector": ..., "llm": ... or None}``; a missing LLM keeps the pretrained one."""
        connector = blob["connector"]
        self.compressor.load_state_dict({k[len("compressor."):]: v for k, v in connector.items() if k.startswith("compressor.")})
        self.projector.load_state_dict({k[len("projector."):]: v for k, v in connector.items() if k.startswith("projector.")})
        if blob.get("llm") is not None:
            self.llm.load_state_dict(blob["llm"])

    def set_trainable(self, trainable: str) -> list[nn.Parameter]:
        """``connector`` freezes the LLM (stage 1); ``all`` trains connector and LLM (stage 2)."""
        if trainable not in ("connector", "all"):
            raise ValueError(f"train stage trainable={trainable!r}: the HF path trains 'connector' or 'all'")
        self.tower.requires_grad_(False)
        self.llm.requires_grad_(trainable == "all")
        self.compressor.requires_grad_(True)
        self.projector.requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]

    # ---- vision ----------------------------------------------------------------------------

    def pixels(self, images: Sequence[Image.Image | torch.Tensor]) -> torch.Tensor:
        return pixel_values(self.tower.processor, images)

    def image_transform(self) -> PixelValues:
        """What a data set applies to each image so that loader workers, not the training loop, preprocess it."""
        return PixelValues(self.tower.processor)

    def question_embedding(self, prompts: Sequence[torch.Tensor]) -> torch.Tensor:
        """QueCC's question vector: the LLM's last hidden state over each prompt's text (zeros for an empty prompt)."""
        hidden = self.llm.config.hidden_size
        out = torch.zeros(len(prompts), hidden, device=self.device)
        rows = [i for i, p in enumerate(prompts) if len(p)]
        if not rows:
            return out
        ids, mask = left_pad([prompts[i] for i in rows], self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            last = self.llm.model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1]
        out[rows] = last.float()
        return out

    def visual(self, images: Sequence[Image.Image | torch.Tensor], prompts: Sequence[torch.Tensor]) -> torch.Tensor:
        """(n_images, V, H) LLM-width visual tokens for the images (prompts: each image's question text ids)."""
        feats, levels = self.tower.features(self.pixels(images).to(self.device))
        dtype = next(self.projector.parameters()).dtype  # the connector's dtype (fp32 in training, bf16 in eval on GPU)
        kwargs: dict[str, torch.Tensor] = {}
        if self.compressor.needs_levels:
            kwargs["levels"] = levels.to(dtype)
        if self.compressor.needs_question:
            kwargs["question"] = self.question_embedding(prompts).to(dtype)
        return self.projector(self.compressor(feats.to(dtype), **kwargs))

    # ---- splicing --------------------------------------------------------------------------

    def _rows(self, ids: Sequence[torch.Tensor], images: Sequence[Image.Image | torch.Tensor | None], labels: Sequence[torch.Tensor] | None):
        """Per row: (embeds (L, H), labels (L,) or None) with the marker replaced by the visual tokens."""
        embed = self.llm.get_input_embeddings()
        with_image = [i for i, img in enumerate(images) if img is not None]
        prompts = [_prompt_ids(ids[i], None if labels is None else labels[i]) for i in with_image]
        vis = self.visual([images[i] for i in with_image], prompts) if with_image else None
        rows = []
        for i, row in enumerate(ids):
            row = row.to(self.device)
            lab = None if labels is None else labels[i].to(self.device)
            marker = torch.nonzero(row == IMAGE_TOKEN_ID).flatten()
            text = embed(row.clamp(min=0))
            if images[i] is None or not len(marker):
                rows.append((text, lab))
                continue
            pos, v = int(marker[0]), vis[with_image.index(i)].to(text.dtype)
            rows.append((torch.cat([text[:pos], v, text[pos + 1 :]]), None if lab is None else torch.cat(
                [lab[:pos], lab.new_full((len(v),), IGNORE_INDEX), lab[pos + 1 :]])))
        return rows

    def forward(self, batch: Mapping[str, Any]) -> Any:
        """Teacher-forced LM loss on a ``LlavaCollator`` batch (labels already -100 off the assistant turns)."""
        lengths = batch["attention_mask"].sum(1).tolist()
        ids = [batch["input_ids"][i, :n] for i, n in enumerate(lengths)]
        labels = [batch["labels"][i, :n] for i, n in enumerate(lengths)]
        rows = self._rows(ids, batch["images"], labels)
        width = max(len(e) for e, _ in rows)
        hidden = rows[0][0].shape[-1]
        embeds = rows[0][0].new_zeros(len(rows), width, hidden)
        lab = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, (e, row_labels) in enumerate(rows):
            embeds[i, : len(e)], lab[i, : len(e)], mask[i, : len(e)] = e, row_labels, 1
        if not bool((lab[:, 1:] != IGNORE_INDEX).any()):
            # Every answer was cut off at max_length: nothing to learn from this micro batch. HF's mean over
            # no tokens is NaN; a zero that still depends on every weight keeps FSDP's backward collectives whole.
            out = self.llm(inputs_embeds=embeds, attention_mask=mask)
            out.loss = out.logits.sum() * 0.0
            return out
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=lab)

    def left_padded(self, ids: Sequence[torch.Tensor], images: Sequence[Image.Image | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Spliced, left-padded prompt embeddings (B, L, H) and mask (B, L) for generation and prefill timing."""
        rows = self._rows(ids, images, None)
        width = max(len(e) for e, _ in rows)
        embeds = rows[0][0].new_zeros(len(rows), width, rows[0][0].shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, (e, _) in enumerate(rows):
            embeds[i, width - len(e) :], mask[i, width - len(e) :] = e, 1
        return embeds, mask

    @torch.no_grad()
    def generate(self, ids: Sequence[torch.Tensor], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        """Greedy answers for tokenised prompts (marker id where the image goes)."""
        embeds, mask = self.left_padded(ids, images)
        eos = self.tokenizer.eos_token_id
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=self.pad_id, eos_token_id=eos)
        # With inputs_embeds only, generate returns the new tokens alone.
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def pixel_values(processor: Any, images: Sequence[Image.Image | torch.Tensor]) -> torch.Tensor:
    """(n, 3, H, W) pixel values: PIL images go through the processor; tensors were made by ``PixelValues``."""
    if all(isinstance(im, torch.Tensor) for im in images):
        return torch.stack(list(images))  # type: ignore[arg-type]
    return processor(images=list(images), return_tensors="pt")["pixel_values"]


class PixelValues:
    """One PIL image -> its (3, H, W) pixel tensor, by the vision tower's processor (picklable, for loader workers)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return pixel_values(self.processor, [image])[0]


def _prompt_ids(ids: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The text before the first supervised token, without the image marker: the question a compressor may read."""
    if labels is not None:
        supervised = torch.nonzero(labels != IGNORE_INDEX).flatten()
        if len(supervised):
            ids = ids[: int(supervised[0])]
    return ids[ids != IMAGE_TOKEN_ID]


def left_pad(rows: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return ids, mask


def prompt_ids(tokenizer: Any, prompt: str, with_image: bool) -> torch.Tensor:
    """A user prompt through the chat template with the generation prompt; ``<image>`` becomes the marker id."""
    content = f"{IMAGE_PLACEHOLDER}\n{prompt}" if with_image else prompt
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    ids: list[int] = []
    for k, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if k:
            ids.append(IMAGE_TOKEN_ID)
        if piece:
            ids.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return torch.tensor(ids, dtype=torch.long)


def build_hf_vlm(llm: HFLLM, compressor: CompressorEntry, vision: ClipVision, visual_tokens: int,
                 dtype: torch.dtype | None = None) -> HFVLM:
    """The cell's VLM: pretrained CLIP and LLM from their local paths, a freshly initialised connector.

    The compressor keeps the CLIP width (avg-pooling stays parameter-free); the
    LLaVA-1.5 ``mlp2x_gelu`` projector maps it to the LLM width. Seed the RNG first
    for a deterministic connector.
    """
    tower = load_vision(vision)
    loaded = load_llm(llm, dtype=dtype or torch.float32)
    if loaded.tokenizer.pad_token_id is None:
        loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    width, hidden = tower.dim, int(loaded.model.config.hidden_size)
    grid = math.isqrt(tower.num_patches)
    levels = len(tower.feature_layers) or 1
    packer = build_compressor(compressor, width, width, grid, visual_tokens, level_dim=width * levels, question_dim=hidden)
    projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
    return HFVLM(tower, packer, projector, loaded.model, loaded.tokenizer, loaded.n_params)
