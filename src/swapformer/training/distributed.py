"""Scale out on Lightning's own strategies: what each one wraps, the model options, the global batch rule.

Nothing here launches processes or moves shards: Lightning's ``DDPStrategy``, ``FSDPStrategy`` (FSDP1, CUDA)
and ``ModelParallelStrategy`` (FSDP2 through ``torch.distributed.fsdp.fully_shard``) do. This module decides
which modules they wrap, and the LightningModules call it from ``configure_model``; the strategies as the
recipes name them are in :mod:`swapformer.training.strategies`.

One sharding unit per block, everything else in the root unit::

    root unit ── embedding(s), final norm, lm_head      a tied lm_head IS the embedding's Parameter: keeping
      ├── unit ── block 0                                both in one unit keeps them one tensor (splitting
      ├── unit ── block 1                                them is the torchtune / accelerate size-mismatch trap)
      └── ...

Order inside ``configure_model`` (torchtitan's): activation checkpointing -> compile -> FSDP2 -> materialize
meta parameters. Each step wraps or replaces the *items* of every ``TransformerStack.layers`` list, so the
outermost wrapper is what the next step sees, and state-dict keys do not change (checkpoint_wrapper strips its
prefix; ``nn.Module.compile`` compiles in place).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from swapformer.components.declarations import tensor_parallel_plan as declared
from swapformer.errors import ConfigError
from swapformer.nn.blocks import TransformerLayer, TransformerStack
from swapformer.registry import FAMILIES

BLOCK_CLASSES: frozenset[type[nn.Module]] = frozenset({TransformerLayer})
"""The module classes that get their own sharding / checkpointing unit."""


# ---- blocks ----------------------------------------------------------------------------------------------
def _block_slots(model: nn.Module) -> Iterator[tuple[nn.ModuleList, int]]:
    """(layers list, index) of every block, so a wrapper can replace it in place."""
    for module in model.modules():
        if isinstance(module, TransformerStack):
            for index in range(len(module.layers)):
                yield module.layers, index


def blocks(model: nn.Module) -> list[nn.Module]:
    """Every block of ``model`` as it now stands (wrapped or not), encoder blocks before decoder blocks."""
    return [layers[i] for layers, i in _block_slots(model)]


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute each block's activations in the backward pass instead of storing them.

    Wraps every block in ``torch.distributed.algorithms._checkpoint.checkpoint_wrapper`` (non-reentrant
    ``torch.utils.checkpoint``: keyword arguments and RNG state are kept, so dropout masks match). Memory per
    block drops to its input; compute grows by about one forward. Idempotent.

    Returns:
        Number of blocks wrapped by this call.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        CheckpointWrapper,
        checkpoint_wrapper,
    )

    wrapped = 0
    for layers, i in _block_slots(model):
        if not isinstance(layers[i], CheckpointWrapper):
            layers[i] = checkpoint_wrapper(layers[i], checkpoint_impl=CheckpointImpl.NO_REENTRANT)
            wrapped += 1
    return wrapped


def compile_blocks(model: nn.Module, options: dict[str, Any] | None = None) -> int:
    """``torch.compile`` each block in place (``nn.Module.compile``), as torchtitan does.

    Per block rather than the whole model: the N identical blocks share one compiled graph (compile time does
    not grow with depth), it composes with activation checkpointing and FSDP2 (the graph breaks fall on the
    unit boundaries), and state-dict keys get no ``_orig_mod.`` prefix. Embedding and LM head stay eager.

    Args:
        model: the model (its ``TransformerStack`` blocks are compiled).
        options: keyword arguments of ``torch.compile`` (``mode``, ``backend``, ``fullgraph``, ``dynamic``).

    Returns:
        Number of blocks compiled by this call.
    """
    compiled = 0
    for block in blocks(model):
        if getattr(block, "_compiled_call_impl", None) is None:
            block.compile(**(options or {}))
            compiled += 1
    return compiled


def shard_fsdp2(model: nn.Module, mesh: Any, **fully_shard_options: Any) -> None:
    """FSDP2: ``fully_shard`` each block, then the root (embeddings, final norm, LM head in one unit).

    Args:
        model: the model to shard in place.
        mesh: 1-D data-parallel ``DeviceMesh``.
        **fully_shard_options: e.g. ``reshard_after_forward``, ``mp_policy``.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):
        return
    for block in blocks(model):
        fully_shard(block, mesh=mesh, **fully_shard_options)
    fully_shard(model, mesh=mesh, **fully_shard_options)


# ---- tensor parallel ------------------------------------------------------------------------------------
_STYLES = ("colwise", "rowwise")


def tensor_parallel_plan(model: nn.Module, size: int) -> dict[str, Any]:
    """The model's tensor-parallel plan, ``{module path: style}``, gathered from what each module declares
    beside its definition (``tensor_parallel_plan``, :mod:`swapformer.components.declarations`): the attention
    layers' W_q, W_k, W_v column-wise and W_o row-wise, the feed-forward layers' first projections column-wise
    and last row-wise. Everything else runs whole on every rank (replicated): torch's own modules, and the
    members that declare ``{}`` (norms, placements, embeddings; kernels and rotations, on the local heads).

    Raises:
        ConfigError: one line naming the modules that declare nothing (a plug-in member written without TP in
            mind), or the first that cannot be split ``size`` ways (heads not divisible by ``size``).
    """

    plan: dict[str, Any] = {}
    subtrees: list[str] = []  # submodules a parent's style decides for, with what they hold
    silent: dict[str, str] = {}  # class -> first path
    for path, module in model.named_modules():
        if any(path == planned or path.startswith(planned + ".") for planned in subtrees):
            continue  # a planned projection: the style decides for it and what it holds
        own = declared(module, size)
        if own is None:
            if not type(module).__module__.startswith("torch."):
                name = f"{type(module).__module__}.{type(module).__qualname__}"
                silent.setdefault(name, path or "the model")
            continue
        for name, style in own.items():
            if isinstance(style, str) and style not in _STYLES:
                raise ConfigError(
                    f"{type(module).__name__} declares tensor_parallel_plan {name!r}: {style!r}; use "
                    "'colwise', 'rowwise' or a torch.distributed.tensor.parallel.ParallelStyle"
                )
            key = ".".join(part for part in (path, name) if part)  # name "": the module itself
            plan[key] = style
            if name:
                subtrees.append(key)
    if silent:
        named = ", ".join(f"{cls} (at {path})" for cls, path in silent.items())
        raise ConfigError(
            f"tensor_parallel_size={size}: {named} declares no tensor_parallel_plan, so tensor parallelism "
            "cannot tell how to split it; declare one beside its definition (swapformer.components.declarations), "
            "or set tensor_parallel_size: 1"
        )
    return plan


def shard_tensor_parallel(model: nn.Module, mesh: Any) -> int:
    """Tensor parallelism: apply :func:`tensor_parallel_plan` with ``torch.distributed.tensor.parallel``'s
    ``parallelize_module`` over the 1-D tensor-parallel ``mesh`` (the split weights become DTensors; every
    other parameter stays whole on each rank, with the same values and, since the split layers' outputs are
    all-reduced, the same gradients). Idempotent.

    Returns:
        Number of projections split by this call.
    """
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if any(isinstance(p, DTensor) for p in model.parameters()):
        return 0
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    plan = tensor_parallel_plan(model, mesh.size())
    for path, style in plan.items():
        parallelize_module(
            model.get_submodule(path), mesh, styles[style]() if isinstance(style, str) else style
        )
    return len(plan)


def tensor_parallel_size(trainer: pl.Trainer) -> int:
    """Ranks in each tensor-parallel group of ``trainer``'s strategy (1 without tensor parallelism)."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, ModelParallelStrategy) or getattr(strategy, "_device_mesh", None) is None:
        return 1
    return strategy.device_mesh["tensor_parallel"].size()


def tensor_parallel_rows(size: int = 2) -> list[dict[str, str]]:
    """One row per registered member: ``family``, ``name``, ``supported`` ("yes" / "NO") and ``split`` (how it
    splits, or why it is refused), from a tiny causal LM with that member, built on the meta device and planned
    for ``size`` ranks (``swapformer components --matrix``)."""
    from swapformer.models import build_causal_lm

    tiny = {"vocab_size": 16, "d_model": 16, "num_heads": 4, "num_layers": 1, "d_ff": 32, "max_seq_len": 16}
    context = {"d_model": 16, "d_ff": 32, "num_heads": 4, "head_dim": 4, "max_seq_len": 16}
    unsplit = {
        "attention": "unsplit, on the local heads",
        "positional": "unsplit (per head, or on the embeddings)",
    }
    rows = []
    for family in ("attention", "positional", "norm", "placement", "ffn"):
        for name in FAMILIES[family].available():
            row = {
                "family": family,
                "name": name,
                "supported": "yes",
                "split": unsplit.get(family, "replicated"),
            }
            try:
                with torch.device("meta"):
                    tensor_parallel_plan(build_causal_lm({**tiny, family: name}), size)
                    if family in ("attention", "positional", "ffn"):  # members that may split themselves
                        member = FAMILIES[family].build(name, **context)
                        plan = declared(member, size) or {}
                        if plan:  # "" is the member itself
                            row["split"] = ", ".join(f"{k} {v}" if k else str(v) for k, v in plan.items())
            except ConfigError as error:
                silent = "declares no tensor_parallel_plan"
                row.update(supported="NO", split=silent if silent in str(error) else str(error))
            rows.append(row)
    return rows


def clip_grad_norm(parameters: Iterator[nn.Parameter], max_norm: float) -> Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) over gradients that mix plain tensors (whole on every rank)
    and DTensors on different meshes (tensor parallel; 2-D), which torch's one call cannot: torch's
    ``get_total_norm`` per mesh (a DTensor norm is the whole tensor's, reduced over its mesh), then one scale.

    Returns:
        The total norm before clipping (the same on every rank).
    """
    from torch.distributed.tensor import DTensor

    groups: dict[Any, list[Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            key = p.grad.device_mesh if isinstance(p.grad, DTensor) else None
            groups.setdefault(key, []).append(p.grad)
    norms = []
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads, 2.0)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
    scale = float(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    for grads in groups.values():
        torch._foreach_mul_(grads, scale)
    return total


def _fsdp2_units(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def gather_for_decoding(model: nn.Module) -> bool:
    """FSDP2: all-gather every unit's parameters and keep them gathered across forwards, until
    :func:`release_gathered`. A collective: every rank must call it, at the same point.

    Decoding needs it: its loops run a different number of steps on each rank (each stops at its own
    end-of-sequence), it calls model methods other than ``forward`` (which FSDP2's hooks do not see), and
    printed samples run on rank 0 alone; with sharded parameters each of these waits forever for the other
    ranks. Gathered, decoding runs without collectives. Costs the full parameters on every device meanwhile.

    Returns:
        Whether the model had FSDP2 units (else nothing was done).
    """
    units = _fsdp2_units(model)
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    return bool(units)


def release_gathered(model: nn.Module) -> None:
    """Undo :func:`gather_for_decoding` (every rank, at the same point): free the gathered parameters, let
    blocks reshard after forward again (the root keeps FSDP2's root default: not after forward), and reset
    FSDP2's record of forward order. FSDP2 records every forward to plan backward prefetching; decoding
    forwards differ between ranks (samples are printed by rank 0 alone), and a stale record makes the ranks
    prefetch different units in the next backward and wait on each other forever.
    """
    units = _fsdp2_units(model)
    for unit in units:
        unit.set_reshard_after_forward(unit is not model, recurse=False)
        unit.reshard()
    if units:
        model.reset_iter_state()


# ---- meta-device initialization ---------------------------------------------------------------------
@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device (no memory), buffers for real.

    Buffers (sinusoidal tables, RoPE caches, ALiBi slopes) are computed at construction and cannot be
    recomputed generically, so they are kept; they are small. A parameter that is already on meta (a tied
    LM head re-registering the embedding's weight) is registered as is, so ties survive.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def check_meta_initializable(model: nn.Module) -> None:
    """Raise if a module holds parameters that :func:`materialize` would not know how to initialize.

    Raises:
        ConfigError: naming the module classes without ``reset_parameters()``.
    """
    missing = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if next(m.parameters(recurse=False), None) is not None
            and not isinstance(m, (nn.Linear, nn.Embedding))
            and not callable(getattr(m, "reset_parameters", None))
        }
    )
    if missing:
        raise ConfigError(
            f"meta_init=True needs every module with parameters to define reset_parameters(); "
            f"{', '.join(missing)} do not. Set meta_init: false, or add reset_parameters() to them."
        )


def materialize(model: nn.Module, device: torch.device, init: Callable[[nn.Module], None]) -> None:
    """Allocate the meta parameters of ``model`` on ``device`` (only the local shards after FSDP2) and
    initialize them: ``reset_parameters()`` of each module, then ``init`` (the builders' weight init).

    Buffers made for real by :func:`parameters_on_meta` are put back after ``to_empty``. Where DTensor has no
    RNG tracker (CPU), each rank draws its shards from a generator offset by its rank, so shards differ.
    """
    if not any(p.is_meta for p in model.parameters()):
        return
    kept = {name: buffer for name, buffer in model.named_buffers() if not buffer.is_meta}
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                owners.setdefault(id(param), []).append((module, name))
    model.to_empty(device=device)
    # to_empty gives each module a new Parameter when the device type changes: re-tie shared ones
    for (first, first_name), *others in owners.values():
        for module, name in others:
            module._parameters[name] = first._parameters[first_name]
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for name, buffer in kept.items():
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner)._buffers[attr] = buffer.to(device)
        if rank:
            torch.manual_seed(torch.initial_seed() + rank)
        for module in model.modules():
            has_params = next(module.parameters(recurse=False), None) is not None
            if has_params and callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
        init(model)


# ---- data order ----------------------------------------------------------------------------------------
def keep_sampler_order(trainer: pl.Trainer) -> int:
    """Stop Lightning's distributed wrapper from permuting the training sampler's items.

    Under DDP / FSDP, Lightning wraps the training sampler in a ``DistributedSamplerWrapper`` with
    ``shuffle=True``, which permutes the sampler's items over the epoch. swapformer's samplers already draw
    their order from ``(seed, epoch)``; without the extra permutation, process ``r`` of ``W`` reads items
    ``r, r + W, ...`` and optimizer step ``k`` sees the same items (``k x G ... (k + 1) x G - 1`` for a global
    batch of ``G``) on 1 process or on 64: loss curves and resumed runs do not depend on the device count.

    Returns:
        Number of wrappers changed.
    """
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    elif not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    changed = 0
    for loader in loaders:
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSamplerWrapper) and sampler.shuffle:
            sampler.shuffle = False
            changed += 1
    return changed


# ---- global batch --------------------------------------------------------------------------------------
def data_parallel_size(trainer: pl.Trainer) -> int:
    """Processes that each read a different micro-batch (devices x num_nodes for DDP, FSDP and FSDP2)."""
    kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None)
    if kwargs and kwargs.get("num_replicas"):
        return int(kwargs["num_replicas"])
    return int(trainer.num_devices * trainer.num_nodes)


def accumulation_steps(*, global_batch_tokens: int, batch_size: int, seq_len: int, data_parallel: int) -> int:
    """Micro-batches each process accumulates so that one optimizer step sees ``global_batch_tokens``.

    ``global_batch_tokens = batch_size x seq_len x data_parallel x accumulation``.

    Raises:
        ConfigError: if the product of the other three does not divide ``global_batch_tokens``.
    """
    if (
        isinstance(global_batch_tokens, bool)
        or not isinstance(global_batch_tokens, int)
        or global_batch_tokens < 1
    ):
        raise ConfigError(
            f"global_batch_tokens={global_batch_tokens!r} must be a positive integer, e.g. 65536."
        )
    per_step = batch_size * seq_len * data_parallel
    steps, remainder = divmod(global_batch_tokens, per_step)
    if remainder or steps == 0:
        lower = max(1, steps) * per_step
        raise ConfigError(
            f"global_batch_tokens={global_batch_tokens} is not a multiple of batch_size x seq_len x processes "
            f"= {batch_size} x {seq_len} x {data_parallel} = {per_step} tokens per micro-step; set "
            f"global_batch_tokens to {lower} or {lower + per_step}, or change data.batch_size / the device count "
            "so that it divides."
        )
    return steps


def apply_global_batch(trainer: pl.Trainer, *, global_batch_tokens: int) -> dict[str, int]:
    """Set ``trainer.accumulate_grad_batches`` from a global batch in tokens and the datamodule's
    ``batch_size`` (per process) and ``seq_len``; returns the breakdown (logged as hyperparameters).

    Raises:
        ConfigError: no ``batch_size`` / ``seq_len`` on the datamodule, no exact division, or a conflicting
            ``trainer.accumulate_grad_batches`` set by hand.
    """
    datamodule = trainer.datamodule
    batch_size = getattr(datamodule, "batch_size", None)
    seq_len = getattr(datamodule, "seq_len", None)
    if not isinstance(batch_size, int) or not isinstance(seq_len, int):
        raise ConfigError(
            f"global_batch_tokens needs a datamodule with integer batch_size and seq_len (fixed-length "
            f"windows, such as CausalLMDataModule); {type(datamodule).__name__} has batch_size={batch_size!r}, "
            f"seq_len={seq_len!r}. Set global_batch_tokens: null and trainer.accumulate_grad_batches instead."
        )
    processes = data_parallel_size(trainer)
    steps = accumulation_steps(
        global_batch_tokens=global_batch_tokens,
        batch_size=batch_size,
        seq_len=seq_len,
        data_parallel=processes,
    )
    if trainer.accumulate_grad_batches not in (1, steps):
        raise ConfigError(
            f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches} conflicts with "
            f"global_batch_tokens={global_batch_tokens}, which needs {steps}; remove one of the two."
        )
    trainer.accumulate_grad_batches = steps
    return {
        "tokens": global_batch_tokens,
        "sequences": batch_size * processes * steps,
        "batch_size_per_process": batch_size,
        "seq_len": seq_len,
        "processes": processes,
        "accumulate_grad_batches": steps,
    }
