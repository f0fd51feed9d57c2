"""Auxiliary losses: any member may add named losses to the training loss (an MoE router's balance loss).

::

    member.forward:   ... self.add_loss("balance", 0.01 * balance) ...      (any member of a layer)
    layer(x, return_losses=True) -> (x, {"balance": ...})                   the layer takes them, as outputs
    stack, model(ids, losses={}) -> logits; losses = {"balance": sum over layers}
    task:             loss = cross-entropy + sum(losses); logged as train/balance, val/balance

A member may also keep state that an optimizer step ends (an MoE's per-expert load counts): its
``after_optimizer_step(reduce)`` runs after every optimizer step (:func:`after_optimizer_step`), gets ``reduce``
(the sum over processes) and returns statistics to log (``{"moe_imbalance": ...}``), averaged by name over members.
A member that routes tokens to experts keeps their loads over those steps too, until :func:`take_expert_loads`
takes them (the expert-load picture).

The losses leave the layer as its outputs, in the same call that made them, so whatever wraps the layer
(activation checkpointing, ``torch.compile``, FSDP2's hooks, gradient accumulation) treats them as it treats the
layer's output; ``model(ids)`` alone still returns logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class AddsLosses(nn.Module):
    """Base class of a member that adds named auxiliary losses to the training loss.

    Call :meth:`add_loss` in ``forward`` with the loss already weighted (a coefficient is the member's option).
    The layer that holds the member takes the losses after each call (:func:`take_losses`); the task adds them to
    the loss and logs each under its name. A name other members use too is summed with theirs.

    Example:
        >>> import torch
        >>> class Penalized(AddsLosses):
        ...     def forward(self, x):
        ...         self.add_loss("penalty", 0.1 * x.square().mean())
        ...         return x
        >>> member = Penalized()
        >>> _ = member(torch.ones(2, 3))
        >>> take_losses(member)
        {'penalty': tensor(0.1000)}
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending_losses: dict[str, Tensor] = {}

    def add_loss(self, name: str, value: Tensor) -> None:
        """Add the 0-d ``value`` to the loss as ``name`` (replacing an earlier value of this call's name)."""
        self.pending_losses[name] = value


def take_losses(module: nn.Module) -> dict[str, Tensor]:
    """The losses the members inside ``module`` added since they were last taken, summed by name, and cleared."""
    losses: dict[str, Tensor] = {}
    for member in module.modules():
        if isinstance(member, AddsLosses) and member.pending_losses:
            for name, value in member.pending_losses.items():
                losses[name] = losses[name] + value if name in losses else value
            member.pending_losses = {}
    return losses


def after_optimizer_step(
    module: nn.Module, reduce: Callable[[Tensor], Tensor] | None = None
) -> dict[str, Tensor]:
    """Run ``after_optimizer_step(reduce)`` of every member inside ``module`` that has one (the task calls this
    after each optimizer step; ``reduce`` sums a tensor over processes) and return the statistics they report,
    each name's mean over the members that reported it."""
    reported: dict[str, list[Tensor]] = {}
    for member in module.modules():
        hook = getattr(type(member), "after_optimizer_step", None)
        if callable(hook):
            for name, value in hook(member, reduce).items():
                reported.setdefault(name, []).append(value)
    return {name: torch.stack(values).mean() for name, values in reported.items()}


def take_expert_loads(module: nn.Module) -> dict[str, Tensor]:
    """The per-expert token counts ``(E,)`` of every member inside ``module`` that keeps them (its
    ``take_running_load()``: an MoE's loads since they were last taken, summed over processes), by the member's
    name in ``module``, in module order; each member starts counting again."""
    loads: dict[str, Tensor] = {}
    for name, member in module.named_modules():
        take = getattr(type(member), "take_running_load", None)
        if callable(take):
            loads[name] = take(member)
    return loads


def keeps_expert_loads(module: nn.Module) -> bool:
    """Whether a member inside ``module`` keeps per-expert loads for :func:`take_expert_loads` (an MoE)."""
    return any(callable(getattr(type(m), "take_running_load", None)) for m in module.modules())
