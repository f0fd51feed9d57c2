"""What a member declares about its own parameters, so that the builders' ``init_weights`` and the optimizer's
``param_groups`` need no knowledge of attribute or class names.

Every declaration is optional; any ``nn.Module`` (a built-in member, a plug-in's, a layer) may make them::

    class Member(nn.Module):
        residual_projections = ("down",)   # submodules that write into the residual stream
        no_weight_decay = ("gain",)        # parameters AdamW leaves undecayed

        def reset_weights(self, *, std: float, residual_std: float) -> None: ...
        def after_init_weights(self) -> None: ...

* ``residual_projections``: names of the module's own submodules (dotted paths allowed) whose ``nn.Linear``
  weights start at ``residual_std = std / sqrt(2 * num_layers)`` instead of ``std``: the last projection of a
  sublayer, whose output is added to the residual stream (GPT-2's scheme, so the stream's variance does not grow
  with depth).
* ``score_projections``: names of the module's own submodules whose outputs only meet in the attention scores
  (the query and key projections); placements that rescale what they wrap (``deepnorm``) leave them alone.
* ``no_weight_decay``: names of the module's own parameters that take no weight decay. Shrinking a norm's gain
  or an embedding row towards zero is not regularization; it only fights the model.
* ``reset_weights(std=, residual_std=)``: the module's own initialization, for what the generic rules below do not
  cover (a raw ``nn.Parameter``); it runs after them.
* ``after_init_weights()``: runs after every module's ``reset_weights``; a module that re-initializes what it
  wraps (the ``deepnorm`` placement rescales its sublayer) uses it.
* ``tensor_parallel_plan``: how the module splits under tensor parallelism (TP), a mapping of its own submodule
  names to ``"colwise"`` / ``"rowwise"`` (torch's ``ColwiseParallel`` / ``RowwiseParallel``) or to any
  ``torch.distributed.tensor.parallel.ParallelStyle`` (the ones members need beyond torch's are in
  :mod:`swapformer.components.tensor_parallel`); the name ``""`` is the module itself (its own parameters and
  buffers: ALiBi's slopes, a mixture's stacked experts), whose submodules still declare their own. ``{}``
  declares that it runs unsplit on every TP rank: replicated (norms, placements, embeddings) or on the local
  heads it is given (kernels, rotations). As a method it takes ``size`` (the TP degree) and raises
  ``ConfigError`` for a size it cannot split by. Only
  torch's own classes need no declaration (they run replicated); any other module that declares nothing is
  refused under TP (:func:`swapformer.training.distributed.tensor_parallel_plan`).

A class attribute declares for every instance; an instance attribute set in ``__init__`` or a method that
returns the names declares for one (when they depend on the options; timm's models declare
``no_weight_decay()`` that way). A name that resolves to ``None`` (an optional part left out) is skipped.

The generic rules, keyed on nothing but torch's types: every ``nn.Linear`` and ``nn.Embedding`` weight starts as
Normal(0, std) and every ``nn.Linear`` bias at zero; every parameter with fewer than two dimensions (biases,
gains, scalars) takes no weight decay; a tied parameter is counted once. torch's own classes cannot carry a
declaration, so :data:`TORCH_NO_DECAY` declares for them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapformer.errors import ConfigError

TORCH_NO_DECAY: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.LayerNorm,
    nn.RMSNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
)
"""torch's classes (and their subclasses) whose parameters take no weight decay, as if each declared
``no_weight_decay`` = all its own parameters. A subclass's own declaration takes precedence."""

_MISSING = object()


def _declared(module: nn.Module, declaration: str) -> tuple[str, ...] | None:
    names = getattr(module, declaration, None)
    if callable(names):  # a method, as timm's models declare ``no_weight_decay()``
        names = names()
    if names is None:
        return None
    if isinstance(names, str):
        raise ConfigError(
            f"{type(module).__name__}.{declaration} = {names!r} is one string; declare a tuple of names: "
            f"{declaration} = ({names!r},)"
        )
    if not all(isinstance(name, str) for name in names):
        raise ConfigError(
            f"{type(module).__name__}.{declaration} = {names!r}: declare a tuple of names (str)"
        )
    return tuple(names)


def _lookup(module: nn.Module, name: str) -> object:
    value: object = module
    for part in name.split("."):
        value = getattr(value, part, _MISSING)
        if value is _MISSING or value is None:
            return value
    return value


def residual_projections(module: nn.Module) -> list[nn.Module]:
    """The submodules ``module`` declares as its residual output projections (none when it declares nothing).

    Raises:
        ConfigError: a declared name that is not one of its submodules, or one that holds no ``nn.Linear``.
    """
    return _submodules(module, "residual_projections")


def score_projections(module: nn.Module) -> list[nn.Module]:
    """The submodules ``module`` declares as its ``score_projections``: those whose outputs only meet in the
    attention scores (the query and key projections), which DeepNet's initialization leaves at gain 1.

    Raises:
        ConfigError: as :func:`residual_projections`.
    """
    return _submodules(module, "score_projections")


def _submodules(module: nn.Module, declaration: str) -> list[nn.Module]:
    projections = []
    for name in _declared(module, declaration) or ():
        value = _lookup(module, name)
        if value is None:
            continue
        if not isinstance(value, nn.Module):
            raise ConfigError(
                f"{type(module).__name__} declares {declaration} {name!r}, which is not one of its "
                "submodules; name the attribute that holds the projection (e.g. 'down_proj')"
            )
        if not any(isinstance(m, nn.Linear) for m in value.modules()):
            raise ConfigError(
                f"{type(module).__name__} declares {declaration} {name!r}, a {type(value).__name__} "
                "without an nn.Linear, so the residual std would reach nothing; initialize it in "
                "reset_weights(std=..., residual_std=...) instead"
            )
        projections.append(value)
    return projections


def tensor_parallel_plan(module: nn.Module, size: int) -> dict[str, object] | None:
    """What ``module`` declares about its split under a TP degree of ``size``: ``{submodule name: style}``
    (``{}``: runs unsplit), or None when it declares nothing.

    Raises:
        ConfigError: ``module`` cannot be split ``size`` ways (raised by its declaration), or a declared name
            that is not one of its submodules.
    """
    plan = getattr(module, "tensor_parallel_plan", None)
    if callable(plan):
        plan = plan(size=size)
    if plan is None:
        return None
    for name in plan:
        if name and not isinstance(_lookup(module, name), nn.Module):
            raise ConfigError(
                f"{type(module).__name__} declares tensor_parallel_plan {name!r}, which is not one of its "
                "submodules; name the attribute that holds the projection (e.g. 'up_proj')"
            )
    return dict(plan)


def local_part(tensor: Tensor) -> Tensor:
    """This rank's part of ``tensor`` where a tensor-parallel style made it a DTensor (a member's parameter split
    by heads or by experts, :mod:`swapformer.components.tensor_parallel`), else ``tensor`` itself. Imports
    ``torch.distributed.tensor`` only while a process group runs."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def no_weight_decay(module: nn.Module) -> list[nn.Parameter]:
    """The parameters ``module`` declares as taking no weight decay: its ``no_weight_decay`` names, or all its own
    parameters for the torch classes of :data:`TORCH_NO_DECAY`, else none.

    Raises:
        ConfigError: a declared name that is not one of its parameters.
    """
    names = _declared(module, "no_weight_decay")
    if names is None:
        return list(module.parameters(recurse=False)) if isinstance(module, TORCH_NO_DECAY) else []
    parameters = []
    for name in names:
        value = _lookup(module, name)
        if value is None:
            continue
        if not isinstance(value, nn.Parameter):
            raise ConfigError(
                f"{type(module).__name__} declares no_weight_decay {name!r}, which is not one of its "
                "parameters; name the attribute that holds the nn.Parameter (e.g. 'weight', 'norm.weight')"
            )
        parameters.append(value)
    return parameters
