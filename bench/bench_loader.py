"""Benchmark: how long the training loop waits for images, with and without data-loader workers.

Run it as ``.venv/bin/python bench/bench_loader.py [--samples 256] [--micro 4] [--step-ms 40]``.

A stage-1 LLaVA step opens, decodes and preprocesses every image of its micro
batches (CLIP ViT-L/14-336 processing: resize the short side to 336, centre
crop, normalise). On a GPU node that CPU work competes with the GPU step. This
script writes ``--samples`` COCO-sized JPEGs (640 x 480) and LLaVA-format
caption records to a temp folder, then feeds them through the real
``LlavaDataset`` -> ``micro_batch_stream`` -> ``pixel_values`` path of
``sweep.jobs.hf_train`` twice per worker count (``loader_workers`` 0 = in the
loop, as before, up to this machine's CPUs - 1):

- ``load only``: samples per second when the loop does nothing else;
- ``with step``: each micro batch is followed by ``--step-ms`` of simulated GPU
  work (a sleep: the CPU is free, as while a CUDA step runs); ``waiting`` is the
  share of the wall time the loop spent getting its next batch.

It prints; it does not fail. No model weights are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sweep.data.llava import LlavaDataset
from sweep.jobs.hf_train import MicroBatches, loader_workers, micro_batch_stream
from sweep.models.hf_vlm import PixelValues, pixel_values


def write_data(root: Path, samples: int) -> None:
    """Smooth colour fields with some texture: JPEGs of about COCO's size (~100 KB at 640 x 480)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    y, x = np.mgrid[0:480, 0:640]
    records = []
    for i in range(samples):
        base = np.stack([(x * (i % 7 + 1) + y) % 256, (y * (i % 5 + 1)) % 256, (x + 2 * y + 40 * i) % 256], axis=-1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:06d}.jpg", quality=90)
        records.append({"id": str(i), "image": f"{i:06d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the picture briefly."},
            {"from": "gpt", "value": f"a picture of stripes number {i} in several colours"}]})
    (root / "data.json").write_text(json.dumps(records))


def tokenizer() -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.train_from_iterator(["a picture of stripes number in several colours"],
                             trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|endoftext|>")


def run(root: Path, tok: object, processor: object, workers: int, micro: int, step_s: float) -> tuple[float, float]:
    """(seconds, seconds spent waiting for batches) for one pass over the data."""
    ds = LlavaDataset(root / "data.json", root / "images", tok, style="plain", max_length=256, visual_tokens=1,
                      image_transform=PixelValues(processor) if workers else None)
    n = len(ds)
    order = MicroBatches(n, n, 0, n, micro, seed=0, start=0, steps=1)
    t0, waiting = time.perf_counter(), 0.0
    with micro_batch_stream(ds, order, workers) as batches:  # as the training loop gets them
        for _ in range(len(order)):
            t = time.perf_counter()
            batch = next(batches)
            pixel_values(processor, batch["images"])  # what HFVLM.visual does first
            waiting += time.perf_counter() - t
            if step_s:
                time.sleep(step_s)
    return time.perf_counter() - t0, waiting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--step-ms", type=float, default=40.0)
    parser.add_argument("--max-workers", type=int, default=4)
    args = parser.parse_args()
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    tok = tokenizer()
    top = loader_workers(args.max_workers)
    print(f"{args.samples} images 640x480 -> 336x336, micro batch {args.micro}, simulated step {args.step_ms:.0f} ms, "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPUs (workers up to {top})")
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        write_data(root, args.samples)
        kb = sum(f.stat().st_size for f in (root / "images").iterdir()) / args.samples / 1024
        print(f"mean JPEG size {kb:.0f} KB")
        print("| loader_workers | load only (samples/s) | with step: wall (s) | waiting for data |")
        print("| --- | --- | --- | --- |")
        for workers in range(0, top + 1):
            run(root, tok, processor, workers, args.micro, 0.0)  # warm the page cache and the imports
            plain, _ = run(root, tok, processor, workers, args.micro, 0.0)
            wall, wait = run(root, tok, processor, workers, args.micro, args.step_ms / 1000)
            print(f"| {workers} | {args.samples / plain:.0f} | {wall:.2f} | {100 * wait / wall:.0f}% |")


if __name__ == "__main__":
    main()
