"""Modules used in several places but owned by one."""

from __future__ import annotations

from torch import nn


def borrow(user: nn.Module, name: str, module: nn.Module | None) -> None:
    """Give ``user`` the attribute ``name`` = ``module`` without registering it as a submodule.

    The model owns its positional member (its parameters appear once, at the model's root, where FSDP2's root unit
    keeps them and checkpoints name them ``positional.*``); the embedding and every attention layer use it.
    """
    object.__setattr__(user, name, module)
