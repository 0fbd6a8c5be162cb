"""Benchmark: milliseconds per training step of mini-study cells, and what gathering a batch costs.

Run it as ``.venv/bin/python bench/bench_mini_step.py [--steps 30] [--cells xs:16:avgpool ...]``.

A mini cell's step gathers 64 questions' cached features (fp16 rows of the features
job's ``(images, patches, channels)`` tensors), then runs compressor -> projector ->
LLM forward and backward and an AdamW step, on one CPU thread (the local launcher
gives each of its workers one). This script builds a cache of the features job's
shapes and layout (8000 images, 16 x 16 patches, 64 final-layer channels as a view
into 128 multi-level channels, fp16; random values: timing does not depend on them)
and prints, per cell, the gather of one batch three ways and the whole step:

- ``index``: ``cache.feats[img]``, advanced indexing (what ``make_batch`` did);
- ``index_select``: ``cache.feats.index_select(0, img)`` (what it does now);
- ``levels``: the multi-level rows too, which only TokenPacker and QueCC read;
- ``step``: ``sweep.jobs.train.make_batch`` + ``VLM.loss`` + backward + clip + AdamW;
  ``step before``: the same with the batch gathered as it was (``index``, levels always).

It prints; it does not fail. No features job is needed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from sweep.jobs.common import Cache
from sweep.jobs.train import make_batch
from sweep.models.vlm import build_vlm
from sweep.specs.models import CompressorEntry, MiniLLM

IMAGES, GRID, DIM, QUESTIONS, VOCAB = 8000, 16, 64, 28000, 600
CONF = Path(__file__).resolve().parents[1] / "conf"


def catalogue_llm(name: str) -> MiniLLM:
    """A mini LLM's shape from its catalogue entry, ``conf/llm/<name>.yaml``."""
    return MiniLLM.parse(yaml.safe_load((CONF / "llm" / f"{name}.yaml").read_text())[name], f"llm.{name}")


def fake_cache() -> Cache:
    """A cache with the features job's shapes, dtypes and layout (feats is a view into levels)."""
    g = torch.Generator().manual_seed(0)
    levels = torch.randn(IMAGES, GRID * GRID, 2 * DIM, generator=g).half()
    q_ids = torch.randint(2, VOCAB, (QUESTIONS, 12), generator=g)
    q_ids[:, :3] = 0  # left padding
    a_ids = torch.randint(2, VOCAB, (QUESTIONS, 4), generator=g)
    a_ids[:, 3] = 1  # EOS
    return Cache(feats=levels[..., DIM:], levels=levels, image_index=torch.randint(0, IMAGES, (QUESTIONS,), generator=g),
                 q_ids=q_ids, a_ids=a_ids, qtype=torch.zeros(QUESTIONS, dtype=torch.long))


def per_call_ms(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cells", nargs="+", default=["xs:16:avgpool", "m:16:avgpool", "sm:16:tokenpacker", "sm:16:quecc"],
                        help="LLM:V:compressor, LLM a mini catalogue name (xs, sm, s, m, l)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = fake_cache()
    print(f"one thread; batch 64; cache {IMAGES} images x {GRID * GRID} patches x {DIM} (+{DIM}) channels, fp16\n")
    print("| cell | index ms | index_select ms | levels ms | step ms before | step ms | steps/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for cell in args.cells:
        llm_name, v, comp = cell.split(":")
        llm = catalogue_llm(llm_name)
        entry = CompressorEntry.parse({"name": comp, "_target_": comp}, "compressor")
        torch.manual_seed(0)
        model = build_vlm(llm, entry, vision_dim=DIM, level_dim=2 * DIM, grid=GRID, visual_tokens=int(v),
                          vocab_size=VOCAB)
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3)
        needs = model.compressor.needs_levels
        draws = [torch.randint(0, QUESTIONS, (64,), generator=torch.Generator().manual_seed(i)) for i in range(args.steps)]
        it = iter(range(10**9))

        def img() -> torch.Tensor:
            return cache.image_index[draws[next(it) % len(draws)]]

        index = per_call_ms(lambda: cache.feats[img()], args.steps)
        select = per_call_ms(lambda: cache.feats.index_select(0, img()), args.steps)
        levels = per_call_ms(lambda: cache.levels.index_select(0, img()), args.steps)

        def step(before: bool = False) -> None:
            idx = draws[next(it) % len(draws)]
            batch = make_batch(cache, idx, 0, needs)
            if before:  # the gather as it was: advanced indexing, levels for every compressor
                rows = cache.image_index[idx]
                batch.update(feats=cache.feats[rows], levels=cache.levels[rows])
            model.loss(**batch, pad_id=0).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        was = per_call_ms(lambda: step(before=True), args.steps)
        ms = per_call_ms(step, args.steps)
        print(f"| {cell} | {index:.2f} | {select:.2f} | {levels:.2f} | {was:.1f} | {ms:.1f} | {1000 / ms:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
