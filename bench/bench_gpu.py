"""Benchmark: paper-grid VLM training throughput (tokens/s, MFU) and batch-1 prefill latency on one GPU.

Run it as ``.venv/bin/python bench/bench_gpu.py [--llms qwen15-0p5b,qwen15-1p8b] [--visual-tokens 1,16,144,576]
[--batch 8] [--text-tokens 128] [--steps 10] [--out bench_gpu.json]``.

The models have the real SHAPES (Qwen-1.5 0.5B / 1.8B and CLIP ViT-L/14-336, from
their published config.json values, written below) but random weights: nothing is
downloaded, and throughput does not depend on the weights' values. Per (N, V):

- ``train``: one stage-2 step (frozen CLIP forward -> average pooling to V tokens ->
  MLP projector -> LLM forward + backward over V + text tokens -> AdamW), bf16;
  tokens/s counts LLM positions; MFU = model FLOPs (6 N per token + attention,
  plus the frozen CLIP forward) / time / the GPU's bf16 dense peak;
- ``prefill``: batch 1, one image, V visual + Q = 50 text tokens, milliseconds.

Writes a JSON of the figures and prints a table. Without CUDA it prints why it
skipped and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

# Published config.json values (hub repos Qwen/Qwen1.5-0.5B, Qwen/Qwen1.5-1.8B).
QWEN_VOCAB = 151936
QWEN_SHAPES: dict[str, dict[str, Any]] = {
    "qwen15-0p5b": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "num_key_value_heads": 16, "tie_word_embeddings": True},
    "qwen15-1p8b": {"hidden_size": 2048, "intermediate_size": 5504, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "num_key_value_heads": 16, "tie_word_embeddings": False},
}
# openai/clip-vit-large-patch14-336 vision_config: 24 x 24 = 576 patches + CLS.
CLIP_SHAPE = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
              "image_size": 336, "patch_size": 14}
GRID = 24
# bf16 dense tensor-core peaks, TFLOP/s, matched against torch.cuda.get_device_name() in this order.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0))
PREFILL_TEXT_TOKENS = 50


def peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak for this GPU, or None when it is not in the table (MFU is then omitted)."""
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


def build(llm_name: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(frozen CLIP tower, projector, LLM), random init, bf16, on ``device``."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

    llm_cfg = Qwen2Config(vocab_size=QWEN_VOCAB, max_position_embeddings=32768, rope_theta=1e6, use_cache=False,
                          **QWEN_SHAPES[llm_name])
    llm_cfg._attn_implementation = "sdpa"
    with device:
        clip = CLIPVisionModel(CLIPVisionConfig(**CLIP_SHAPE)).to(torch.bfloat16).eval().requires_grad_(False)
        llm = Qwen2ForCausalLM(llm_cfg).to(torch.bfloat16)
        hidden = llm_cfg.hidden_size
        projector = torch.nn.Sequential(torch.nn.Linear(CLIP_SHAPE["hidden_size"], hidden), torch.nn.GELU(),
                                        torch.nn.Linear(hidden, hidden)).to(torch.bfloat16)
    return clip, projector, llm


def visual_tokens(clip: torch.nn.Module, projector: torch.nn.Module, pixels: torch.Tensor, v: int) -> torch.Tensor:
    """Penultimate-layer patches -> average-pooled to sqrt(V) x sqrt(V) -> projected: (B, V, H)."""
    with torch.no_grad():
        feats = clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    side = int(round(v ** 0.5))
    grid = feats.transpose(1, 2).reshape(feats.shape[0], -1, GRID, GRID)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid, side).flatten(2).transpose(1, 2)
    return projector(pooled)


def non_embedding(llm: torch.nn.Module) -> int:
    from sweep.models.hf import non_embedding_params

    return non_embedding_params(llm)


def timed(fn: Any, repeats: int) -> list[float]:
    """Wall seconds of ``fn`` per call, after two warm-up calls, synchronised with the GPU."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def bench_one(llm_name: str, v: int, args: argparse.Namespace, device: torch.device, peak: float | None) -> dict[str, Any]:
    from sweep.models.vlm import llm_forward_flops

    clip, projector, llm = build(llm_name, device)
    params = [*projector.parameters(), *llm.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-5, fused=True)
    b, q = args.batch, args.text_tokens
    pixels = torch.randn(b, 3, CLIP_SHAPE["image_size"], CLIP_SHAPE["image_size"], device=device, dtype=torch.bfloat16)
    text = torch.randint(0, QWEN_VOCAB, (b, q), device=device)
    labels = torch.cat([torch.full((b, v), -100, device=device), text], dim=1)

    def train_step() -> None:
        embeds = torch.cat([visual_tokens(clip, projector, pixels, v), llm.get_input_embeddings()(text)], dim=1)
        llm(inputs_embeds=embeds, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_s = statistics.median(timed(train_step, args.steps))
    n = non_embedding(llm)
    clip_flops = 2.0 * sum(p.numel() for p in clip.parameters()) * (GRID * GRID + 1)
    flops = b * (3.0 * llm_forward_flops(llm, v + q) + clip_flops)
    one_pixel, one_text = pixels[:1], text[:1, :PREFILL_TEXT_TOKENS]

    @torch.no_grad()
    def prefill() -> None:
        embeds = torch.cat([visual_tokens(clip, projector, one_pixel, v), llm.get_input_embeddings()(one_text)], dim=1)
        llm(inputs_embeds=embeds, logits_to_keep=1)

    prefill_ms = statistics.median(timed(prefill, args.steps)) * 1e3
    del clip, projector, llm, opt
    torch.cuda.empty_cache()
    return {"llm": llm_name, "N": n, "V": v, "batch": b, "text_tokens": q, "step_s": step_s,
            "tokens_per_s": b * (v + q) / step_s, "tflops": flops / step_s / 1e12,
            "mfu": (flops / step_s / 1e12 / peak) if peak else None,
            "prefill_ms": prefill_ms, "prefill_tokens": v + PREFILL_TEXT_TOKENS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llms", default="qwen15-0p5b,qwen15-1p8b")
    p.add_argument("--visual-tokens", default="1,16,144,576")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default="bench_gpu.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu skipped: CUDA is not available on this machine (run it on a GPU node)")
        return 0
    llms = [x for x in args.llms.split(",") if x]
    unknown = [x for x in llms if x not in QWEN_SHAPES]
    vs = [int(x) for x in args.visual_tokens.split(",") if x]
    bad_v = [v for v in vs if int(round(v ** 0.5)) ** 2 != v or GRID % int(round(v ** 0.5))]
    if unknown or bad_v:
        print(f"error: unknown --llms {unknown} (known: {sorted(QWEN_SHAPES)}) or V {bad_v} whose sqrt does not divide {GRID}",
              file=sys.stderr)
        return 2
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = peak_tflops(name)
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for llm_name in llms:
        for v in vs:
            rows.append(bench_one(llm_name, v, args, device, peak))
            r = rows[-1]
            mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
            print(f"{r['llm']:>14} V={r['V']:>4}  {r['tokens_per_s']:>10,.0f} tok/s  {r['tflops']:7.1f} TFLOP/s  "
                  f"MFU {mfu:>6}  prefill {r['prefill_ms']:6.2f} ms", flush=True)
    result = {"device": name, "peak_bf16_tflops": peak, "torch": torch.__version__, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{name} (bf16 peak {peak or 'unknown'} TFLOP/s); figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
