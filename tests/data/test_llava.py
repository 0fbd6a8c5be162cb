"""LLaVA-format data: validation, chat-template tokenisation with the loss mask, the
image marker, truncation, lazy images and padding. A tiny word-level tokenizer with a
ChatML-style template is saved and reloaded with AutoTokenizer; nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sweep.data.llava import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    LlavaCollator,
    LlavaDataset,
    tokenize_conversation,
    validate_records,
)
from sweep.errors import SweepError

WORDS = (
    "[PAD] [UNK] <|im_start|> <|im_end|> system user assistant you are a helpful be brief "
    "what is in the image it cat dog color red hello hi there describe photo of"
).split()
# ChatML with Qwen's habit of adding a default system turn when there is none.
CHATML = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nyou are a helpful assistant<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"]
    )
    fast.chat_template = CHATML
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def ids(*words: str) -> list[int]:
    return [WORDS.index(w) for w in " ".join(words).split()]


SYSTEM = ids("<|im_start|> system you are a helpful assistant <|im_end|>")

IMAGE_RECORD = {
    "id": "000000033471",
    "image": "coco/red.png",
    "conversations": [
        {"from": "human", "value": "<image>\nwhat is in the image"},
        {"from": "gpt", "value": "a cat"},
        {"from": "human", "value": "what color"},
        {"from": "gpt", "value": "red"},
    ],
}
TEXT_RECORD = {
    "id": 7,
    "conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi there"}],
}


def _data(tmp_path: Path, records: list[dict]) -> tuple[Path, Path]:
    (tmp_path / "images" / "coco").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (255, 0, 0)).save(tmp_path / "images" / "coco" / "red.png")
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path, tmp_path / "images"


def test_loss_only_on_assistant_turns_and_image_marker(tokenizer: Any) -> None:
    input_ids, labels, image_pos = tokenize_conversation(tokenizer, IMAGE_RECORD["conversations"], max_length=100)
    user1 = ids("<|im_start|> user") + [IMAGE_TOKEN_ID] + ids("what is in the image <|im_end|>")
    ask = ids("<|im_start|> assistant")
    reply1, reply2 = ids("a cat <|im_end|>"), ids("red <|im_end|>")
    user2 = ids("<|im_start|> user what color <|im_end|>")
    assert input_ids == SYSTEM + user1 + ask + reply1 + user2 + ask + reply2
    masked = [IGNORE_INDEX] * len(SYSTEM + user1 + ask)
    assert labels == masked + reply1 + [IGNORE_INDEX] * len(user2 + ask) + reply2
    assert image_pos == len(SYSTEM) + 2
    assert input_ids[image_pos] == IMAGE_TOKEN_ID and labels[image_pos] == IGNORE_INDEX


def test_system_prompt_replaces_the_default(tokenizer: Any) -> None:
    input_ids, labels, _ = tokenize_conversation(tokenizer, TEXT_RECORD["conversations"], max_length=100, system_prompt="be brief")
    assert input_ids[:5] == ids("<|im_start|> system be brief <|im_end|>")
    assert [t for t in labels if t != IGNORE_INDEX] == ids("hi there <|im_end|>")


def test_truncation_leaves_room_for_the_visual_tokens(tokenizer: Any) -> None:
    full, _, _ = tokenize_conversation(tokenizer, IMAGE_RECORD["conversations"], max_length=100)
    input_ids, labels, pos = tokenize_conversation(tokenizer, IMAGE_RECORD["conversations"], max_length=20, visual_tokens=5)
    assert len(input_ids) == len(labels) == 20 - 4
    assert input_ids == full[:16] and pos == len(SYSTEM) + 2
    # The marker is token 10: 11 text tokens + 3 more visual ones fit in 14, not in 13.
    kept, _, _ = tokenize_conversation(tokenizer, IMAGE_RECORD["conversations"], max_length=14, visual_tokens=4)
    assert kept[-1] == IMAGE_TOKEN_ID
    with pytest.raises(SweepError, match="image marker sits at token 10"):
        tokenize_conversation(tokenizer, IMAGE_RECORD["conversations"], max_length=13, visual_tokens=4)


def test_plain_style_is_image_then_caption(tokenizer: Any) -> None:
    caption = [{"from": "human", "value": "<image>\ndescribe the photo"}, {"from": "gpt", "value": "a photo of a dog"}]
    input_ids, labels, pos = tokenize_conversation(tokenizer, caption, max_length=50, style="plain")
    assert input_ids == [IMAGE_TOKEN_ID] + ids("a photo of a dog")
    assert labels == [IGNORE_INDEX] + ids("a photo of a dog")
    assert pos == 0


def test_template_that_is_not_prefix_stable_is_refused(tokenizer: Any) -> None:
    class Counting:
        chat_template = "counts turns"

        def apply_chat_template(self, messages: list, tokenize: bool, add_generation_prompt: bool) -> str:
            return f"{len(messages)} turns: " + " ".join(m["content"] for m in messages)

    with pytest.raises(SweepError, match="prefix-stable"):
        tokenize_conversation(Counting(), TEXT_RECORD["conversations"], max_length=50)


def test_dataset_loads_images_lazily_and_collates(tmp_path: Path, tokenizer: Any) -> None:
    path, images = _data(tmp_path, [IMAGE_RECORD, TEXT_RECORD])
    ds = LlavaDataset(path, images, tokenizer, max_length=64, visual_tokens=4, check_images=True)
    assert len(ds) == 2
    first, second = ds[0], ds[1]
    assert first["id"] == "000000033471" and second["id"] == "7"
    assert first["image"].size == (12, 10) and first["image"].mode == "RGB"
    assert second["image"] is None and second["image_pos"] == -1
    assert IMAGE_TOKEN_ID not in second["input_ids"].tolist()

    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=ds.collator())))
    n0, n1 = len(first["input_ids"]), len(second["input_ids"])
    assert batch["input_ids"].shape == (2, max(n0, n1)) and n1 < n0
    assert torch.equal(batch["input_ids"][1, :n1], second["input_ids"])
    assert (batch["input_ids"][1, n1:] == tokenizer.pad_token_id).all()
    assert (batch["labels"][1, n1:] == IGNORE_INDEX).all()
    assert batch["attention_mask"].sum(dim=1).tolist() == [n0, n1]
    assert batch["image_pos"].tolist() == [first["image_pos"], -1]
    assert batch["images"][1] is None and batch["ids"] == ["000000033471", "7"]


def test_collator_pads_to_a_multiple() -> None:
    ex = {"id": "x", "input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7]), "image_pos": -1, "image": None}
    batch = LlavaCollator(pad_token_id=0, pad_to_multiple_of=8)([ex])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7] + [-100] * 5]


def test_missing_image_is_reported_with_the_record(tmp_path: Path, tokenizer: Any) -> None:
    lost = {**IMAGE_RECORD, "image": "coco/lost.png"}
    path, images = _data(tmp_path, [IMAGE_RECORD, lost])
    with pytest.raises(SweepError, match=r"data.json\[1\].image.*1 images missing"):
        LlavaDataset(path, images, tokenizer, check_images=True)
    ds = LlavaDataset(path, images, tokenizer)  # without the check, the error comes on access
    with pytest.raises(SweepError, match=r"data.json\[1\].image"):
        ds[1]


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": who, "value": text} for who, text in pairs]


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ("not a record", r"data\[1\]"),
        ({"id": 1}, r"data\[1\].conversations"),
        ({"conversations": _turns(("gpt", "hi"), ("human", "hello"))}, r"data\[1\].conversations\[0\].from"),
        ({"conversations": _turns(("human", "a"), ("human", "b"))}, r"data\[1\].conversations\[1\].from"),
        ({"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]}, r"conversations\[0\].value"),
        ({"conversations": [{"from": "bot", "value": "x"}]}, r"conversations\[0\].from"),
        ({"conversations": _turns(("human", "hello"))}, r"data\[1\].conversations.*no gpt turn"),
        ({"image": "a.jpg", "conversations": _turns(("human", "hi"), ("gpt", "x"))}, r"0 '<image>' placeholders"),
        ({"conversations": _turns(("human", "<image> hi"), ("gpt", "x"))}, "has no image"),
        ({"image": "a.jpg", "conversations": _turns(("human", "<image>"), ("gpt", "<image>"))}, r"conversations\[1\].value"),
        ({"image": "", "conversations": _turns(("human", "<image>"), ("gpt", "x"))}, r"data\[1\].image"),
        ({"id": [1], "conversations": _turns(("human", "hi"), ("gpt", "x"))}, r"data\[1\].id"),
    ],
)
def test_validation_names_record_and_field(record: Any, where: str) -> None:
    with pytest.raises(SweepError, match=where):
        validate_records([TEXT_RECORD, record])


def test_validation_of_the_file(tmp_path: Path, tokenizer: Any) -> None:
    assert validate_records([IMAGE_RECORD, TEXT_RECORD]) == [IMAGE_RECORD, TEXT_RECORD]
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SweepError, match="not valid JSON"):
        LlavaDataset(tmp_path / "bad.json", tmp_path, tokenizer)
    (tmp_path / "obj.json").write_text(json.dumps({"conversations": []}), encoding="utf-8")
    with pytest.raises(SweepError, match="expected a list of records"):
        LlavaDataset(tmp_path / "obj.json", tmp_path, tokenizer)
    with pytest.raises(SweepError, match="does not exist"):
        LlavaDataset(tmp_path / "none.json", tmp_path, tokenizer)
