"""Benchmark: paper-grid VLM training throughput (tokens/s, MFU) and batch-1 prefill latency, one GPU, bf16.

Run it as ``.venv/bin/python bench/bench_gpu.py [--llms qwen15-0p5b,...] [--visual-tokens 1,144,576]
[--batch 8] [--text-tokens 128] [--steps 10] [--out bench_gpu.json]``; ``make gpu-check`` runs it
with the FSDP memory check (``bench/gpu_check.py``).

The models have the real SHAPES of the catalogue (``conf/llm/<name>.yaml``'s ``shape``: Qwen-1.5
0.5B / 1.8B / 4B / 7B; CLIP ViT-L/14-336) and random weights: nothing is downloaded, and speed
does not depend on the weights' values. Per (LLM, V):

- ``train``: one step (frozen CLIP forward -> average pooling to V tokens -> MLP projector ->
  LLM forward + backward over V + text tokens -> AdamW) with bf16 weights; tokens/s counts LLM
  positions; MFU = model FLOPs (6 x (N + the output head) per token + attention, plus the frozen
  CLIP forward) / time / the GPU's bf16 dense peak. A batch that does not fit is halved until it
  does (the row says which batch ran);
- ``prefill``: batch 1, one image, V visual + Q = 50 text tokens, milliseconds.

Writes a JSON of the figures (``cost.measured=bench_gpu.json`` lets the plan price train jobs
at the measured MFU) and prints a table. Without CUDA it says why it skipped and exits 0.
``--device cpu --tiny`` runs the same code at tiny shapes on the CPU (a dry run for tests).
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

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LLMS = ("qwen15-0p5b", "qwen15-1p8b", "qwen15-4b", "qwen15-7b")
# bf16 dense tensor-core peaks, TFLOP/s, matched against torch.cuda.get_device_name() in this order.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0))
PREFILL_TEXT_TOKENS = 50
# --tiny: the same code at toy sizes, for a dry run on the CPU.
TINY_LLM = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 4, "intermediate_size": 128,
            "vocab_size": 512, "tie_word_embeddings": False}
TINY_CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
             "image_size": 336, "patch_size": 14}


def peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak for this GPU, or None when it is not in the table (MFU is then omitted)."""
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


def catalogue(names: list[str]) -> tuple[dict[str, Any], Any]:
    """Each LLM's ``shape`` and the CLIP tower's spec, from the composed paper config (one source of truth)."""
    from sweep.cli import load

    cfg, _ = load(["+grid=paper", f"grid.llm=[{','.join(names)}]", "grid.heldout_llm=[]", "grid.visual_tokens=[1]",
                   *[f"resources.{c}.gpu_mem_gb=1e6" for c in ("gpu4", "gpu8", "gpu8-141gb")]])
    return {n: cfg.llm[n].shape for n in names}, cfg.vision


def qwen_config(shape: Any) -> Any:
    """A ``Qwen2Config`` with the catalogue shape's values (Qwen-1.5's rope and context)."""
    from transformers import Qwen2Config

    shape = shape if isinstance(shape, dict) else shape.to_dict()
    cfg = Qwen2Config(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                      intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
                      num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"] or shape["num_heads"],
                      tie_word_embeddings=shape["tie_word_embeddings"], max_position_embeddings=32768, rope_theta=1e6,
                      use_cache=False)
    cfg._attn_implementation = "sdpa"
    return cfg


def clip_config(vision: Any, tiny: bool) -> Any:
    """CLIP ViT-L/14-336's vision config (or the tiny one); the MLP is 4x the width, heads 64 wide."""
    from transformers import CLIPVisionConfig

    if tiny:
        return CLIPVisionConfig(**TINY_CLIP)
    width = int(vision.hidden_size)
    return CLIPVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=int(vision.num_layers),
                            num_attention_heads=width // 64, image_size=vision.image_size, patch_size=vision.patch_size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, repeats: int, device: torch.device) -> list[float]:
    """Wall seconds of ``fn`` per call, after two warm-up calls, synchronised with the GPU."""
    for _ in range(2):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def model_flops_per_token(cfg: Any, tokens: int) -> float:
    """Forward FLOPs per position: 2 x (non-embedding params + the output head) plus causal attention scores."""
    h, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    kv = h // cfg.num_attention_heads * cfg.num_key_value_heads
    dense = layers * (2 * h * h + 2 * h * kv + 3 * h * inter) + h * cfg.vocab_size
    return 2.0 * dense + 2.0 * layers * h * (tokens + 1)


def bench_one(name: str, shape: Any, vision: Any, v: int, args: argparse.Namespace, device: torch.device,
              peak: float | None) -> dict[str, Any]:
    """One (LLM, V) cell; halves the batch on out-of-memory."""
    from transformers import CLIPVisionModel, Qwen2ForCausalLM

    cfg, ccfg = qwen_config(shape), clip_config(vision, args.tiny)
    grid = ccfg.image_size // ccfg.patch_size
    with device:
        clip = CLIPVisionModel(ccfg).to(torch.bfloat16).eval().requires_grad_(False)
        llm = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
        projector = torch.nn.Sequential(torch.nn.Linear(ccfg.hidden_size, cfg.hidden_size), torch.nn.GELU(),
                                        torch.nn.Linear(cfg.hidden_size, cfg.hidden_size)).to(torch.bfloat16)
    opt = torch.optim.AdamW([*projector.parameters(), *llm.parameters()], lr=2e-5, fused=device.type == "cuda")

    def visual(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        side = int(round(v ** 0.5))
        fmap = feats.transpose(1, 2).reshape(feats.shape[0], -1, grid, grid)
        return projector(torch.nn.functional.adaptive_avg_pool2d(fmap, side).flatten(2).transpose(1, 2))

    batch, q = args.batch, args.text_tokens
    while True:
        pixels = torch.randn(batch, 3, ccfg.image_size, ccfg.image_size, device=device, dtype=torch.bfloat16)
        text = torch.randint(0, cfg.vocab_size, (batch, q), device=device)
        labels = torch.cat([torch.full((batch, v), -100, device=device), text], dim=1)

        def train_step() -> None:
            embeds = torch.cat([visual(pixels), llm.get_input_embeddings()(text)], dim=1)
            llm(inputs_embeds=embeds, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        try:
            step_s = statistics.median(timed(train_step, args.steps, device))
            break
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            opt.state.clear()
            torch.cuda.empty_cache()
            if batch == 1:
                raise
            batch //= 2
    clip_flops = 2.0 * sum(p.numel() for p in clip.parameters()) * (grid * grid + 1)
    flops = batch * (3.0 * model_flops_per_token(cfg, v + q) * (v + q) + clip_flops)
    one_pixel, one_text = pixels[:1], text[:1, :PREFILL_TEXT_TOKENS]

    @torch.no_grad()
    def prefill() -> None:
        embeds = torch.cat([visual(one_pixel), llm.get_input_embeddings()(one_text)], dim=1)
        llm(inputs_embeds=embeds, logits_to_keep=1)

    prefill_ms = statistics.median(timed(prefill, args.steps, device)) * 1e3
    n = sum(p.numel() for p in llm.parameters()) - llm.get_input_embeddings().weight.numel() - (
        0 if cfg.tie_word_embeddings else llm.get_output_embeddings().weight.numel())
    del clip, projector, llm, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"llm": name, "N": n, "V": v, "batch": batch, "text_tokens": q, "step_s": step_s,
            "tokens_per_s": batch * (v + q) / step_s, "tflops": flops / step_s / 1e12,
            "mfu": (flops / step_s / 1e12 / peak) if peak else None,
            "prefill_ms": prefill_ms, "prefill_tokens": v + PREFILL_TEXT_TOKENS}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llms", default=",".join(LLMS), help=f"catalogue names, comma-separated (default: {','.join(LLMS)})")
    p.add_argument("--visual-tokens", default="1,144,576")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default="bench_gpu.json")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run (use with --tiny)")
    p.add_argument("--tiny", action="store_true", help="toy shapes instead of the catalogue's (a dry run)")
    p.add_argument("--budget-s", type=float, default=0.0, help="stop starting new cells after this many seconds (0: no limit)")
    return p


def check_args(args: argparse.Namespace) -> tuple[list[str], list[int]] | str:
    """(LLM names, V values), or the problem with them."""
    llms = [x for x in args.llms.split(",") if x]
    unknown = [x for x in llms if x not in LLMS]
    try:
        vs = [int(x) for x in args.visual_tokens.split(",") if x]
    except ValueError:
        return f"--visual-tokens must be integers, got {args.visual_tokens!r}"
    bad_v = [v for v in vs if v < 1 or int(round(v ** 0.5)) ** 2 != v or 24 % int(round(v ** 0.5))]
    if unknown or not llms:
        return f"--llms {unknown or args.llms!r}: use some of {', '.join(LLMS)}"
    if bad_v or not vs:
        return f"--visual-tokens {bad_v or args.visual_tokens!r}: V must be a square whose root divides 24 (1, 4, 16, 36, 64, 144, 576)"
    if min(args.batch, args.text_tokens, args.steps) < 1:
        return "--batch, --text-tokens and --steps must be at least 1"
    return llms, vs


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Every (LLM, V) cell, within ``--budget-s``; the JSON written to ``--out``."""
    llms, vs = check_args(args)  # type: ignore[misc]
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    torch.backends.cuda.matmul.allow_tf32 = True
    shapes, vision = catalogue(llms)
    if args.tiny:
        shapes = {n: dict(TINY_LLM) for n in llms}
    t0, rows, skipped = time.perf_counter(), [], []
    for llm_name in llms:
        for v in vs:
            if args.budget_s and time.perf_counter() - t0 > args.budget_s:
                skipped.append({"llm": llm_name, "V": v, "reason": f"past the {args.budget_s:.0f} s budget"})
                continue
            r = bench_one(llm_name, shapes[llm_name], vision, v, args, device, peak)
            rows.append(r)
            mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
            log(f"{r['llm']:>14} V={r['V']:>4} batch {r['batch']:>2} {r['tokens_per_s']:>10,.0f} tok/s  "
                f"{r['tflops']:7.1f} TFLOP/s  MFU {mfu:>6}  prefill {r['prefill_ms']:7.2f} ms")
    result = {"device": name, "peak_bf16_tflops": peak, "torch": torch.__version__, "tiny": args.tiny, "rows": rows,
              "skipped": skipped, "seconds": time.perf_counter() - t0}
    Path(args.out).write_text(json.dumps(result, indent=2))
    log(f"\n{name} (bf16 peak {peak or 'unknown'} TFLOP/s); figures written to {args.out}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    checked = check_args(args)
    if isinstance(checked, str):
        print(f"error: {checked}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu skipped: CUDA is not available on this machine (run it on a GPU node)")
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
