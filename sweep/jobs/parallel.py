"""How the HF VLM is spread over a job's ranks: one process, DDP, or FSDP.

``stage.parallel`` picks it (conf/train/paper.yaml):

* ``ddp``: every rank holds the whole model and its optimizer state; gradients
  are averaged once per optimizer step. Fine while a model, its fp32 gradients and
  AdamW state fit on one GPU (about 16 bytes per trained parameter).
* ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) shards parameters,
  gradients and optimizer state over the ranks, one unit per LLM decoder layer (the
  classes in the model's ``_no_split_modules``) plus the rest of the VLM. A 7B LLM's
  stage 2 needs this on 80 GB GPUs.
* ``auto`` (default): ``fsdp`` when several ranks train the LLM, else ``ddp``.

Checkpoints and ``model.pt`` always hold full (unsharded) tensors, so a job can
resume on a different number of ranks and an eval job loads them as is. Under
FSDP gathering them is a collective: every rank calls ``weights`` and
``optimizer_state``; only the leader gets the tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from sweep.distributed import World


def resolve(mode: str, world: World, trains_llm: bool) -> str:
    """The strategy a stage uses: ``single``, ``ddp`` or ``fsdp`` (``mode``: auto|ddp|fsdp, checked by the spec)."""
    if not world.distributed:
        return "single"
    if mode == "auto":
        return "fsdp" if trains_llm else "ddp"
    return mode


class Parallel:
    """The VLM wrapped for its ranks, and the few operations that differ between strategies."""

    def __init__(self, vlm: Any, world: World, device: torch.device, mode: str, save_llm: bool = True) -> None:
        # save_llm: checkpoints and model.pt carry the LLM (once some stage so far has trained it).
        self.vlm, self.world, self.mode, self.save_llm = vlm, world, mode, save_llm
        self.model: nn.Module = vlm
        if mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            # Unused parameters happen: a micro batch of text-only samples never touches the connector.
            self.model = DistributedDataParallel(vlm, device_ids=[device.index] if device.type == "cuda" else None,
                                                 find_unused_parameters=True)
        elif mode == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(device.type, (world.world_size,))
            blocks = set(getattr(vlm.llm, "_no_split_modules", None) or [])
            layers = [m for m in vlm.llm.modules() if type(m).__name__ in blocks]
            if not layers:
                raise ValueError(f"parallel=fsdp: {type(vlm.llm).__name__} names no decoder-layer classes "
                                 "(_no_split_modules); use parallel=ddp")
            for layer in layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(vlm, mesh=mesh)

    @contextlib.contextmanager
    def accumulate(self, last: bool) -> Iterator[None]:
        """Around one micro batch: gradients cross ranks only on the step's last one."""
        if self.mode == "ddp" and not last:
            with self.model.no_sync():  # type: ignore[operator]
                yield
        elif self.mode == "fsdp":
            self.model.set_requires_gradient_sync(last)  # type: ignore[operator]
            yield
        else:
            yield

    def clip(self, params: list[nn.Parameter], max_norm: float) -> None:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP: materialise, so every rank took part
            norm.full_tensor()

    def weights(self, with_llm: bool) -> dict[str, Any] | None:
        """``{"connector": ..., "llm": ... or None}`` as full CPU tensors; None on FSDP followers."""
        if self.mode != "fsdp":
            return {"connector": self.vlm.connector_state(), "llm": self.vlm.llm_state() if with_llm else None}
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        full = get_model_state_dict(self.vlm, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.world.leader:
            return None
        connector = {k: v for k, v in full.items() if k.startswith(("compressor.", "projector."))}
        llm = {k[len("llm."):]: v for k, v in full.items() if k.startswith("llm.")}
        return {"connector": connector, "llm": llm if with_llm else None}

    def state(self, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The training loop's checkpoint state (``sweep.jobs.loop.Strategy``); a collective under FSDP."""
        weights, optim = self.weights(self.save_llm), self.optimizer_state(opt)
        return None if weights is None else {"weights": weights, "optimizer": optim}

    def restore(self, state: dict[str, Any], opt: torch.optim.Optimizer) -> None:
        self.load(state, opt)

    def optimizer_state(self, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        if self.mode != "fsdp":
            return opt.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        full = get_optimizer_state_dict(self.vlm, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return full if self.world.leader else None

    def load(self, state: dict[str, Any], opt: torch.optim.Optimizer) -> None:
        """Restore a checkpoint's weights and optimizer state (written by any strategy)."""
        if self.mode != "fsdp":
            self.vlm.load_weights(state["weights"])
            opt.load_state_dict(_as_index_keyed(state["optimizer"], opt) if _fqn_keyed(state["optimizer"]) else state["optimizer"])
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        weights = state["weights"]
        flat = dict(weights["connector"]) | {f"llm.{k}": v for k, v in (weights.get("llm") or {}).items()}
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(self.vlm, flat, options=options)
        optim = state["optimizer"] if _fqn_keyed(state["optimizer"]) else _as_fqn_keyed(state["optimizer"], self.vlm, opt)
        set_optimizer_state_dict(self.vlm, opt, optim, options=options)


def _fqn_keyed(osd: dict[str, Any]) -> bool:
    """Optimizer state from ``get_optimizer_state_dict`` is keyed by parameter names, torch's own by index."""
    return any(isinstance(k, str) for k in osd.get("state", {})) or any(
        isinstance(p, str) for g in osd.get("param_groups", []) for p in g.get("params", []))


def _param_names(vlm: nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    names = {id(p): n for n, p in vlm.named_parameters()}
    return [names[id(p)] for g in opt.param_groups for p in g["params"]]


def _as_fqn_keyed(osd: dict[str, Any], vlm: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    names = _param_names(vlm, opt)
    groups, i = [], 0
    for g in osd["param_groups"]:
        groups.append({**g, "params": names[i : i + len(g["params"])]})
        i += len(g["params"])
    return {"state": {names[k]: v for k, v in osd["state"].items()}, "param_groups": groups}


def _as_index_keyed(osd: dict[str, Any], opt: torch.optim.Optimizer) -> dict[str, Any]:
    order = [p for g in osd["param_groups"] for p in g["params"]]
    index = {name: i for i, name in enumerate(order)}
    groups, i = [], 0
    for g in osd["param_groups"]:
        groups.append({**g, "params": list(range(i, i + len(g["params"])))})
        i += len(g["params"])
    return {"state": {index[k]: v for k, v in osd["state"].items()}, "param_groups": groups}
