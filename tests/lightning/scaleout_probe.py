"""A callback the multi-process tests add by class path (``--trainer.callbacks+=scaleout_probe.Probe`` with this
folder on PYTHONPATH): every rank writes what it sees of the model to ``<out>/rank<r>-<hook>.json``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

import swapformer


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor shard (a collective: every rank must call it), else the tensor."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


class Probe(Callback):
    """Records, at train start and end: is the LM head the embedding's Parameter, are the two equal in full,
    parameter types, meta tensors left, and the buffers compared with a freshly built model's."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, hook: str) -> None:
        model = pl_module.model
        head, embedding = model.lm_head.weight, model.embedding.token.weight
        full_head, full_embedding = _full(head), _full(embedding)
        fresh = swapformer.build(pl_module.config)
        fresh_buffers = dict(fresh.named_buffers())
        buffers_equal = all(
            torch.equal(buffer.cpu(), fresh_buffers[name.replace("._checkpoint_wrapped_module", "")])
            for name, buffer in model.named_buffers()
        )
        half = (full_embedding.size(0) + 1) // 2
        record = {
            "same_parameter": head is embedding,
            "equal_in_full": bool(torch.equal(full_head, full_embedding)),
            "parameter_type": type(head.data).__name__,
            "local_rows": int(head.to_local().size(0)) if hasattr(head, "to_local") else int(head.size(0)),
            "meta_tensors": sum(t.is_meta for t in [*model.parameters(), *model.buffers()]),
            "buffers_equal_fresh": buffers_equal,
            "shards_differ": not torch.equal(full_embedding[0], full_embedding[half]),
            "block_types": sorted({type(b).__name__ for b in pl_module.model.decoder.layers}),
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "norm_weight_mean": float(_full(model.decoder.final_norm.weight).float().mean())
            if model.decoder.final_norm is not None
            else None,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}-{hook}.json").write_text(json.dumps(record))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module, "start")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module, "end")
