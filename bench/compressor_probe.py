"""How fast each compressor's cells learn, in minutes instead of a whole sweep.

For the cells of the composed grid (Hydra overrides as for ``python -m sweep``), on
the cached features of the grid's features job (run the sweep, or at least its
features job, first), it trains each cell's VLM for ``--steps`` steps at the
stage's learning rate (constant, no warmup) and prints, four times along the
way, the exact-match accuracy of 300 test questions of each question type.

``--direct`` instead trains the compressor with a small MLP head on a direct
loss: the letters of each document's word (the ``word`` question's answer),
read from the V compressed tokens without an LLM. It tells "the compressor
cannot carry the letters" apart from "the letters do not get learnt through the
LLM".

``--pretrained-llm STEPS`` tries the paper's two-stage recipe against an LLM that already
reads visual tokens: the grid's avgpool cell is trained first, then each other
compressor's connector is trained STEPS steps against that cell's LLM, frozen, and
then everything trains ``--steps`` steps.

    python bench/compressor_probe.py 'grid.compressor=[avgpool,tokenpacker]' grid.llm=[sm] grid.visual_tokens=[16]
    python bench/compressor_probe.py --direct --steps 400 'grid.compressor=[avgpool,pixelshuffle]' ...
    python bench/compressor_probe.py --pretrained-llm 400 'grid.compressor=[avgpool,tokenpacker]' ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sweep.config import compose, resolved
from sweep.data import synthetic as syn
from sweep.errors import SweepError
from sweep.jobs import common
from sweep.jobs.train import build_cell_model, make_batch
from sweep.plan import build_plan
from sweep.specs.config import Config

QTYPES_SHOWN = ("word", "char_at", "count_colour", "sum", "diff")


def accuracies(model: Any, test: common.Cache, pad: int, per_type: int = 300) -> dict[str, float]:
    """Teacher-forced exact match (every answer token right) per question type."""
    out = {}
    with torch.no_grad():
        for qt in QTYPES_SHOWN:
            idx = torch.nonzero(test.qtype == syn.QTYPES.index(qt)).flatten()[:per_type]
            if len(idx) == 0:
                continue
            b = make_batch(test, idx, pad)
            logits = model(b["feats"], b["levels"], b["q_ids"], b["q_mask"], b["a_ids"])
            right = (logits.argmax(-1) == b["a_ids"]) | (b["a_ids"] == pad)
            out[qt] = round(float(right.all(1).float().mean()), 3)
    return out


def train_for(model: Any, params: list[nn.Parameter], spec: Any, train: common.Cache, test: common.Cache, pad: int,
              steps: int, what: str) -> None:
    """``steps`` AdamW steps of ``params`` (the rest stays as it is) at the stage's lr; accuracies four times along the way."""
    stage = spec.stage
    opt = torch.optim.AdamW(params, lr=stage.lr, betas=tuple(stage.betas), weight_decay=stage.weight_decay)
    t0 = time.perf_counter()
    for i in range(steps):
        model.train()
        batch = make_batch(train, common.batch_indices(len(train), stage.batch_size, i, spec.cell.seed), pad)
        loss = model.loss(**batch, pad_id=pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if stage.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, stage.grad_clip)
        opt.step()
        if (i + 1) % max(1, steps // 4) == 0 or i + 1 == steps:
            model.eval()
            print(f"  {what} step {i + 1}: loss {float(loss.detach()):.3f} accuracy {accuracies(model, test, pad)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


def through_llm(spec: Any, meta: dict[str, Any], train: common.Cache, test: common.Cache, steps: int,
                llm: nn.Module | None = None, frozen_steps: int = 0) -> Any:
    """The cell's VLM trained ``steps`` steps; with ``llm`` (a trained LLM), the connector is first trained
    ``frozen_steps`` steps against it, frozen (the paper's stage 1), then everything (stage 2)."""
    pad = int(meta["pad"])
    common.set_seed(spec.cell.seed)
    model = build_cell_model(spec, meta)
    if llm is not None:
        model.llm.load_state_dict(llm.state_dict())
        connector = [*model.compressor.parameters(), *model.projector.parameters()]
        model.llm.requires_grad_(False)
        train_for(model, connector, spec, train, test, pad, frozen_steps, "stage 1 (LLM frozen)")
        model.llm.requires_grad_(True)
    train_for(model, list(model.parameters()), spec, train, test, pad, steps, "all" if llm is None else "stage 2 (all)")
    return model


def direct(spec: Any, meta: dict[str, Any], train: common.Cache, test: common.Cache, steps: int) -> None:
    """Compressor + MLP head -> the word's letters (up to 4), on the document images."""
    word = syn.QTYPES.index("word")
    letters = 4

    def rows(cache: common.Cache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = cache.qtype == word
        img = cache.image_index[keep]
        return cache.feats[img], cache.levels[img], cache.a_ids[keep][:, :letters]

    f_tr, l_tr, y_tr = rows(train)
    f_te, l_te, y_te = rows(test)
    common.set_seed(spec.cell.seed)
    compressor = build_cell_model(spec, meta).compressor
    v, dim, vocab = spec.cell.visual_tokens, int(meta["dim"]), len(meta["vocab"])
    head = nn.Sequential(nn.Flatten(), nn.Linear(v * dim, 256), nn.GELU(), nn.Linear(256, letters * vocab))
    params = [*compressor.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=spec.stage.lr, weight_decay=0.0) if params else None

    def predict(f: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        kwargs = {"levels": lv.float()} if compressor.needs_levels else {}
        if compressor.needs_question:
            kwargs["question"] = torch.zeros(len(f), spec.llm.hidden_size)  # no question: the letters only
        return head(compressor(f.float(), **kwargs)).view(len(f), letters, vocab)

    t0 = time.perf_counter()
    for i in range(steps):
        idx = common.batch_indices(len(f_tr), spec.stage.batch_size, i, spec.cell.seed)
        loss = nn.functional.cross_entropy(predict(f_tr[idx], l_tr[idx]).flatten(0, 1), y_tr[idx].flatten())
        assert opt is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((predict(f_te[:1000], l_te[:1000]).argmax(-1) == y_te[:1000]).float().mean())
    print(f"  {steps} steps: loss {float(loss.detach()):.3f}, letter accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--direct", action="store_true", help="compressor + MLP head on the word's letters, no LLM")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrained-llm", type=int, default=0, metavar="STEPS",
                        help="the paper's two stages, against an LLM that already reads tokens: the same cell with avgpool "
                             "is trained first; its LLM, frozen, trains each other compressor's connector for STEPS steps "
                             "(stage 1), then everything trains --steps steps (stage 2). Needs avgpool in grid.compressor")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        cfg = Config.parse(resolved(compose(args.overrides)), "")
        plan = build_plan(cfg)
    except SweepError as e:
        sys.exit(f"error: {e}")
    features = [j for j in plan if j.kind == "features"]
    if not features:
        sys.exit("error: this probe reads the mini study's cached features; use a mini grid")
    folder = Path(cfg.sweep.root) / "jobs" / features[0].id
    if not (folder / "done.json").exists():
        sys.exit(f"error: no finished features job at {folder}\n  fix: run `python -m sweep` with the same overrides first "
                 "(its features job is enough)")
    train, meta = common.load_cache(folder, "train")
    test, _ = common.load_cache(folder, "test")
    cells = [j for j in plan if j.role == "train" and j.cell is not None and getattr(j.spec, "stage_index", 0) == 0]
    if args.pretrained_llm and not any(j.spec.cell.compressor == "avgpool" for j in cells):
        sys.exit("error: --pretrained-llm: the grid has no avgpool cell to train the LLM with\n  fix: add avgpool to grid.compressor")
    readers: dict[tuple[Any, ...], nn.Module] = {}  # (llm, V, seed) -> the avgpool cell's trained LLM
    for job in sorted(cells, key=lambda j: j.spec.cell.compressor != "avgpool"):
        c = job.spec.cell
        print(f"{job.label} ({'direct letters' if args.direct else 'through the LLM'}, {args.steps} steps)", flush=True)
        if args.direct:
            direct(job.spec, meta, train, test, args.steps)
        elif args.pretrained_llm and c.compressor != "avgpool":
            through_llm(job.spec, meta, train, test, args.steps, readers[(c.llm, c.visual_tokens, c.seed)], args.pretrained_llm)
        else:
            model = through_llm(job.spec, meta, train, test, args.steps)
            readers[(c.llm, c.visual_tokens, c.seed)] = model.llm


if __name__ == "__main__":
    main()
