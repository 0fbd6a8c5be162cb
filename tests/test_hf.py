"""Offline Hugging Face loading, the missing-model check, prefetch's no-network paths and the GPU bench's CPU skip.

Tiny Qwen2 / CLIP models are written with ``save_pretrained`` into tmp dirs; nothing downloads.
Run: ``.venv/bin/pytest tests/test_hf.py -q``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from helpers import conf_with_tiny_paths, save_tiny_clip, sweep_cli
from sweep.models import hf
from sweep.specs.models import HFLLM, ClipVision, MiniLLM

REPO = Path(__file__).resolve().parent.parent
WORDS = ["<pad>", "<eos>", "<unk>", "what", "is", "this", "a", "cat", "dog", "<image>"]
CLIP_LAYERS = 4


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    llm_dir = root / "qwen-tiny"
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    tok.save_pretrained(llm_dir)
    cfg = Qwen2Config(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(llm_dir)
    clip_dir = save_tiny_clip(root / "clip-tiny", layers=CLIP_LAYERS)
    return {"llm": llm_dir, "clip": clip_dir}


def test_load_llm_offline_counts_non_embedding_params(tiny_dirs: dict[str, Path]) -> None:
    loaded = hf.load_llm(HFLLM(name="tiny", path=str(tiny_dirs["llm"]), params_b=1e-6, non_embedding_params_b=1e-6,
                               resource_class="cpu"), dtype=torch.float32)
    model = loaded.model
    total = sum(p.numel() for p in model.parameters())
    vocab, hidden = len(WORDS), model.config.hidden_size
    assert loaded.n_params == total - 2 * vocab * hidden  # untied: embedding and LM head both excluded
    # transformers 5 rebuilds the tokenizer as Qwen2's (byte-level pre-tokenizer) from the model type, so
    # compare vocabulary ids, not a whitespace split.
    assert loaded.tokenizer.convert_tokens_to_ids(["what", "cat", "<eos>"]) == [3, 7, 1]
    assert loaded.tokenizer.eos_token == "<eos>"
    assert loaded.tokenizer.apply_chat_template([{"role": "user", "content": "a cat"}], tokenize=False).strip() == "a cat"


def test_load_vision_features_shapes(tiny_dirs: dict[str, Path]) -> None:
    tower = hf.load_vision(_clip(tiny_dirs["clip"], feature_layers=(1, 3, 4)))
    assert not any(p.requires_grad for p in tower.parameters())
    images = [torch.randint(0, 255, (40, 50, 3), dtype=torch.uint8).numpy() for _ in range(2)]
    pixels = tower.processor(images=images, return_tensors="pt")["pixel_values"]
    feats, levels = tower.features(pixels)
    assert tower.num_patches == 4 and feats.shape == (2, 4, 16) and levels.shape == (2, 4, 16 * 3)
    # Layer 3 of 4 is the penultimate (select_layer -2): the final features are that slice of the levels.
    torch.testing.assert_close(feats, levels[..., 16:32])
    with pytest.raises(ValueError, match="feature_layers"):
        hf.load_vision(_clip(tiny_dirs["clip"], feature_layers=(12, 16, 22, 23)))


def _clip(path: Path, **fields: Any) -> ClipVision:
    return ClipVision(path=str(path), image_size=28, patch_size=14, params_b=1e-6, **fields)


def _llm(name: str, path: str) -> HFLLM:
    return HFLLM(name=name, path=path, params_b=1e-6, non_embedding_params_b=1e-6, resource_class="cpu")


class _Cell:
    def __init__(self, llm: str) -> None:
        self.llm = llm


class _Plan:
    def __init__(self, *llms: str) -> None:
        self.cells = tuple(_Cell(n) for n in llms)


def test_missing_models_reports_hub_ids_not_local_dirs(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    llms = {"a": _llm("a", str(tiny_dirs["llm"])), "b": _llm("b", "nobody/not-a-model-xyz"), "c": _llm("c", str(empty)),
            "mini": MiniLLM(name="mini", hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)}
    cfg = SimpleNamespace(llm=llms, vision=_clip(tiny_dirs["clip"]))
    assert hf.missing_models(cfg, _Plan("a", "b", "c", "mini", "a")) == ["nobody/not-a-model-xyz", str(empty)]
    assert hf.missing_models(cfg, _Plan("a")) == []
    # The LLM dir has no preprocessor_config.json: it is not a complete CLIP tower.
    cfg.vision = _clip(tiny_dirs["llm"])
    assert hf.missing_models(cfg, _Plan("a")) == [str(tiny_dirs["llm"])]


def test_plan_and_run_report_missing_models(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    env = {"SWEEP_ROOT": str(tmp_path / "out"), "SWEEP_CONFIG_DIR": str(conf_with_tiny_paths(tmp_path, tiny_dirs))}
    plan = sweep_cli("plan", "+grid=paper", "grid.llm=[qwen15-0p5b,qwen15-1p8b]", "grid.heldout_llm=[]", cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    note = plan.stdout.split("not in the local Hugging Face cache:")[1].splitlines()[0]
    assert "Qwen/Qwen1.5-1.8B" in note and "0.5B" not in note and str(tiny_dirs["llm"]) not in note and "clip" not in note
    run = sweep_cli("+grid=paper", "grid.llm=[qwen15-1p8b]", "grid.heldout_llm=[]", cwd=tmp_path, env=env)
    assert run.returncode == 2
    assert "GPUs" in run.stderr and "Qwen/Qwen1.5-1.8B" in run.stderr and "python -m sweep prefetch +grid=paper" in run.stderr
    assert not (tmp_path / "out").exists()


def test_prefetch_all_present_and_offline_error(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    env = {"SWEEP_ROOT": str(tmp_path / "out"), "SWEEP_CONFIG_DIR": str(conf_with_tiny_paths(tmp_path, tiny_dirs))}
    ok = sweep_cli("prefetch", "+grid=paper", "grid.llm=[qwen15-0p5b]", "grid.heldout_llm=[]", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "nothing to do: all 2 models the plan needs are present" in ok.stdout
    mini = sweep_cli("prefetch", cwd=tmp_path, env=env)
    assert mini.returncode == 0 and "needs no Hugging Face models" in mini.stdout
    # HF_HUB_OFFLINE=1 (set by the fixture): a missing hub id is an error before any download is tried.
    bad = sweep_cli("prefetch", "+grid=paper", "grid.llm=[qwen15-1p8b]", "grid.heldout_llm=[]", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "HF_HUB_OFFLINE" in bad.stderr and "Qwen/Qwen1.5-1.8B" in bad.stderr and "fix:" in bad.stderr


def test_prefetch_weight_patterns() -> None:
    from sweep.prefetch import weight_patterns

    assert weight_patterns(["config.json", "model-00001-of-00002.safetensors", "pytorch_model.bin"]) == ("*.safetensors",)
    assert weight_patterns(["config.json", "pytorch_model.bin", "tf_model.h5"]) == ("*.bin",)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip path of a machine without CUDA")
def test_bench_gpu_skips_without_cuda(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--out", str(tmp_path / "gpu.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "skipped" in out.stdout and "CUDA" in out.stdout
    assert not (tmp_path / "gpu.json").exists()
