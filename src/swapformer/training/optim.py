"""AdamW parameter groups and the learning-rate schedules, a registry (:data:`SCHEDULES`) a plug-in may add to.

Schedules are multipliers of the optimizer's base ``lr`` (``torch.optim.lr_scheduler.LambdaLR``), stepped once
per optimizer step; ``step`` below counts optimizer steps from 0.

* ``warmup_cosine``: ``(step + 1) / warmup`` while ``step < warmup``, then a half cosine from 1 down to
  ``min_lr_ratio`` at ``total_steps``, flat after it.
* ``inverse_sqrt`` (Vaswani et al., 2017, eq. 3): ``d_model^-0.5 * min(t^-0.5, t * warmup^-1.5)`` with
  ``t = step + 1``. With ``lr: 1.0`` the learning rate is exactly the paper's formula; other values scale it.
* ``constant``: 1 (after an optional linear warmup).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from torch import nn

from swapformer.components import declarations
from swapformer.registry import Registry

SCHEDULES = Registry("schedule", "the learning-rate multiplier of each optimizer step", order="registration")
"""Schedules by name, the default first: functions ``(step, *, <what they need of warmup_steps, total_steps,
d_model, min_lr_ratio>) -> float``."""


def param_groups(model: nn.Module, *, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group and a non-decayed group for AdamW.

    No decay for: every parameter a module declares in ``no_weight_decay`` (norms; torch's embeddings and norms
    through :data:`~swapformer.components.declarations.TORCH_NO_DECAY`), and every parameter with ``ndim < 2``
    (biases, gains, scalars). Decay for the rest: the weight matrices of linear layers. A tied LM head shares the
    embedding's tensor; parameters are deduplicated by identity and the embedding's rule wins.

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay, "names": [...]},
        {"params": no_decay, "weight_decay": 0.0, "names": [...]}]`` (empty groups dropped).
    """
    no_decay_ids = {id(p) for module in model.modules() for p in declarations.no_weight_decay(module)}
    decay = {"params": [], "weight_decay": weight_decay, "names": []}
    no_decay = {"params": [], "weight_decay": 0.0, "names": []}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        group = no_decay if id(param) in no_decay_ids or param.ndim < 2 else decay
        group["params"].append(param)
        group["names"].append(name)
    return [g for g in (decay, no_decay) if g["params"]]


# Devices with a fused AdamW kernel in torch (one kernel over all tensors instead of ~10 per parameter).
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def mixes_dtensors(params: Iterable[nn.Parameter]) -> bool:
    """Whether ``params`` mix DTensors (split by tensor parallelism) and plain tensors (whole on every rank):
    torch's fused and multi-tensor (foreach) AdamW kernels take one kind per call, the per-tensor loop both."""
    from torch.distributed.tensor import DTensor

    return len({isinstance(p, DTensor) for p in params}) > 1


def fused_adamw_supported(params: Iterable[nn.Parameter]) -> bool:
    """Whether ``torch.optim.AdamW(..., fused=True)`` can take these parameters: all floating point, all on one
    device type that has the fused kernel. It is Hugging Face Trainer's default too (``adamw_torch_fused``).

    The fused step computes the same update as the per-tensor loop (to float rounding); for the shakespeare-sized
    model on CPU it takes ~2.5 ms off a ~23 ms training step (``benchmarks/train_step.py``).
    """
    params = list(params)
    types = {p.device.type for p in params}  # one type: not empty, not mixed
    return (
        len(types) == 1
        and types <= set(FUSED_ADAMW_DEVICES)
        and all(p.is_floating_point() for p in params)
        and not mixes_dtensors(params)
    )


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("inverse_sqrt")
def inverse_sqrt(step: int, *, warmup_steps: int, d_model: int) -> float:
    """The paper's multiplier ``d_model^-0.5 * min(t^-0.5, t * warmup^-1.5)`` with ``t = step + 1``."""
    t = step + 1
    return d_model**-0.5 * min(t**-0.5, t * max(1, warmup_steps) ** -1.5)


@SCHEDULES.register("constant")
def constant(step: int, *, warmup_steps: int) -> float:
    """1 after an optional linear warmup."""
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def schedule_fn(
    name: str, *, warmup_steps: int, total_steps: int, d_model: int, min_lr_ratio: float = 0.1
) -> Callable[[int], float]:
    """The multiplier function ``step -> float`` for schedule ``name`` (one of :data:`SCHEDULES`); the schedule
    receives the settings its signature names.

    Raises:
        ConfigError: unknown name.
    """
    multiplier = SCHEDULES.bind(
        name, warmup_steps=warmup_steps, total_steps=total_steps, d_model=d_model, min_lr_ratio=min_lr_ratio
    )
    # a function, not the partial: LambdaLR writes a callable object's __dict__ into the checkpoint
    return lambda step: multiplier(step)
