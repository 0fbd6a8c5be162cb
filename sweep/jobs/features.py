"""The ``features`` job: make the synthetic data, pretrain and freeze the vision tower, cache features.

One such job is upstream of every train/eval job of a mini study. It writes into
``ctx.workdir``:

* ``tower.pt``        the frozen tower's weights, config and feature statistics
* ``data_train.pt``   fp16 final-layer and multi-level features per image, plus the
  ``data_test.pt``    tokenised questions/answers, image index and question type
* ``meta.json``       vocabulary, families, question types, grid and feature widths,
                      the tower's FLOPs per image and its test patch accuracy

Spec: ``FeaturesSpec`` (vision: the mini tower and its pretraining, data: the
synthetic generator's settings). The tower is pretrained to predict each patch's shape, colour and letter (three
heads); about 300 steps reach ~1.0 accuracy on foreground patches. Features are
standardised per channel with train-split statistics before caching (see
``_encode``: without it the LLMs learn nothing from them). With the default
8000 + 1000 images the cache is about 590 MB (fp16: 256 patches x 128 multi-level
channels per image; the final features are a view into them). Pretraining checkpoints under
``ckpt/`` and stops cleanly on ``stop_requested``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sweep.jobs.context import JobContext

if TYPE_CHECKING:
    from sweep.specs.jobs import FeaturesSpec
    from sweep.specs.train import Pretrain


def run(ctx: JobContext) -> dict[str, float]:
    """Generate data, pretrain the tower, cache features; returns ``vision/*`` and ``data/*`` metrics."""
    from sweep.data import synthetic as syn
    from sweep.jobs import common
    from sweep.jobs.context import atomic_save
    from sweep.models.vision import build_vision

    if not ctx.world.leader:  # one process builds the cache
        return {}

    t0 = time.perf_counter()
    spec: FeaturesSpec = ctx.spec
    vision, data = spec.vision, spec.data
    seed = data.seed
    train = syn.generate_split(seed, "train", data.train_images, data.image_size)
    test = syn.generate_split(seed, "test", data.test_images, data.image_size)
    t_data = time.perf_counter() - t0

    common.set_seed(seed)
    tower = build_vision(vision, syn.FACTOR_SIZES)
    t1 = time.perf_counter()
    _pretrain(ctx, tower, train, vision.pretrain, seed)
    t_pretrain = time.perf_counter() - t1

    tower.eval()
    layers = list(vision.feature_layers)
    patch_acc = _patch_accuracy(tower, test)
    t2 = time.perf_counter()
    stats = _feature_stats(tower, train, layers)
    sizes = {}
    for name, split in (("train", train), ("test", test)):
        blob = _encode(tower, split, layers, stats)
        atomic_save(blob, ctx.workdir / common.features_file(name))
        sizes[name] = (ctx.workdir / common.features_file(name)).stat().st_size
    t_extract = time.perf_counter() - t2

    tower_state = {"state_dict": tower.state_dict(), "vision": vision.to_dict(), "head_sizes": list(syn.FACTOR_SIZES)}
    atomic_save({**tower_state, "feature_stats": stats}, ctx.workdir / common.TOWER_FILE)
    meta: dict[str, Any] = {
        "vocab": list(syn.VOCAB),
        "pad": syn.PAD,
        "eos": syn.EOS,
        "families": {f: list(q) for f, q in syn.FAMILIES.items()},
        "qtypes": list(syn.QTYPES),
        "grid": tower.grid,
        "dim": tower.dim,
        "level_dim": tower.dim * len(layers),
        "feature_layers": layers,
        "flops_vision": tower.flops(),
        "patch_acc": patch_acc,
    }
    (ctx.workdir / common.META_FILE).write_text(json.dumps(meta, indent=1))
    return {
        "vision/patch_acc": patch_acc,
        "vision/pretrain_seconds": t_pretrain,
        "vision/extract_seconds": t_extract,
        "vision/seconds": time.perf_counter() - t0,
        "vision/flops": float(tower.flops()),
        "data/seconds": t_data,
        "data/train_questions": float(len(train.questions)),
        "data/test_questions": float(len(test.questions)),
        "data/megabytes": sum(sizes.values()) / 1e6,
    }


def _pretrain(ctx: JobContext, tower: Any, split: Any, pre: Pretrain, seed: int) -> None:
    """Dense per-patch classification on the shared training loop; resumable."""
    import torch

    from sweep.data.synthetic import factor_labels
    from sweep.jobs import common
    from sweep.jobs.loop import Single, TrainLoop
    from sweep.models.vision import factored_loss

    images = torch.from_numpy(split.images)
    labels = torch.from_numpy(factor_labels(split.cell_labels))
    loop = TrainLoop(ctx, pre, pre.steps, list(tower.parameters()), Single(tower), prefix="vision/pretrain")

    def step(i: int) -> float:
        idx = common.batch_indices(len(images), pre.batch_size, i, seed)
        loss = factored_loss(tower(images[idx]), labels[idx], tower.head_sizes)
        loss.backward()
        return float(loss.detach())

    tower.train()
    loop.run(step)


def _patch_accuracy(tower, split, batch_size: int = 500) -> float:
    """Accuracy of all factors of a patch together, on non-background cells (background is trivial)."""
    import torch

    from sweep.data.synthetic import factor_labels
    from sweep.models.vision import factored_predictions

    images, labels = torch.from_numpy(split.images), torch.from_numpy(split.cell_labels)
    factors = torch.from_numpy(factor_labels(split.cell_labels))
    right = total = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            pred = factored_predictions(tower(images[i : i + batch_size]), tower.head_sizes)
            ok = (pred == factors[i : i + batch_size]).all(-1)
            fg = labels[i : i + batch_size] != 0
            right += int(ok[fg].sum())
            total += int(fg.sum())
    return right / max(1, total)


def _feature_stats(tower, split, layers: list[int], n_images: int = 1000) -> dict[str, Any]:
    """Per-channel mean and std of the features over (a slice of) the train split's patches."""
    import torch

    with torch.no_grad():
        f, lv = tower.features(torch.from_numpy(split.images[:n_images]), layers)
    return {
        "feats": (f.mean((0, 1)), f.std((0, 1)).clamp(min=1e-4)),
        "levels": (lv.mean((0, 1)), lv.std((0, 1)).clamp(min=1e-4)),
    }


def _encode(tower, split, layers: list[int], stats: dict[str, Any], batch_size: int = 500) -> dict[str, Any]:
    """Standardised features (fp16) and tokenised questions of a split, ready for ``common.Cache``.

    Most patches are background, so raw features share one large component and
    pooled tokens of different images look alike; subtracting the data-set mean per
    channel (and dividing by the std) leaves the part that differs between images.
    Without it the tiny LLMs learn nothing beyond answer priors.
    """
    import torch

    from sweep.data import synthetic as syn

    images = torch.from_numpy(split.images)
    (f_mu, f_sd), (l_mu, l_sd) = stats["feats"], stats["levels"]
    feats, levels = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            f, lv = tower.features(images[i : i + batch_size], layers)
            feats.append(((f - f_mu) / f_sd).half())
            levels.append(((lv - l_mu) / l_sd).half())
    levels_t = torch.cat(levels)
    last = len(tower.blocks)
    if last in layers:
        # The final features are a slice of the multi-level ones: store them as a view
        # so torch.save writes the storage once.
        k = layers.index(last)
        feats_t = levels_t[..., k * tower.dim : (k + 1) * tower.dim]
    else:
        feats_t = torch.cat(feats)
    q = [syn.tokenize(x) for x in split.questions]
    a = [syn.tokenize(x) + [syn.EOS] for x in split.answers]
    q_max, a_max = max(map(len, q)), max(map(len, a))
    q_ids = torch.full((len(q), q_max), syn.PAD, dtype=torch.long)
    a_ids = torch.full((len(a), a_max), syn.PAD, dtype=torch.long)
    for i, (qi, ai) in enumerate(zip(q, a)):
        q_ids[i, q_max - len(qi) :] = torch.tensor(qi)
        a_ids[i, : len(ai)] = torch.tensor(ai)
    qtype = torch.tensor([syn.QTYPES.index(t) for t in split.qtypes], dtype=torch.long)
    return {
        "feats": feats_t,
        "levels": levels_t,
        "image_index": torch.from_numpy(split.image_index),
        "q_ids": q_ids,
        "a_ids": a_ids,
        "qtype": qtype,
    }
