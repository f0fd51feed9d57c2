"""The tensor-parallel styles members declare beyond torch's column-wise / row-wise split of a projection.

Under tensor parallelism (TP) the attention layer's W_q, W_k, W_v are split column-wise by heads: rank r of
``size`` holds heads ``r H / size ... (r + 1) H / size - 1`` (contiguous blocks, as ``ColwiseParallel`` cuts a
weight's rows), and everything between W_q / W_k / W_v and the row-wise W_o sees only those heads. What else
acts on the heads must act on the same ones; these styles say how::

    style            for                                   forward                      backward
    LocalHeads       per-head buffers (ALiBi's slopes)     keep the local heads' rows   (buffers: none)
    HeadParameters   per-head parameters (sink logits)     the local heads' rows, of    the local heads' rows
                                                           one Shard(0) DTensor
    PerHead          a norm over each head (Qwen3's q/k    on the local heads; the      the gain's gradient
                     norm)                                 gain whole on every rank     summed over the ranks
    WholeWidth       a norm over every head at once        gather the heads, norm the   the gradients of the
                     (OLMo 2's q/k norm)                   whole, keep the local heads  local heads
    SharedByHeads    an activation every head reads        identity                     gradient summed over
                     (MLA's one rope key)                                               the ranks
    ExpertParallel   a mixture's stacked experts           E / size whole experts a     the router's and the
                                                           rank; partial outputs summed tokens' gradients summed

A member declares them in its ``tensor_parallel_plan`` (:mod:`swapformer.components.declarations`), for a
submodule or, with the name ``""``, for itself. The sums over ranks are DTensor's: a replicated parameter
(a ``Replicate()`` DTensor) that met sharded activations receives a partial gradient, which DTensor all-reduces,
and :func:`swapformer.training.distributed.clip_grad_norm` counts it once.

Imported only under TP (by the members' ``tensor_parallel_plan``), so that importing swapformer does not import
``torch.distributed.tensor``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_module
from torch.distributed.tensor.parallel import ParallelStyle


def _replicate_parameters(name: str, module: nn.Module, mesh: DeviceMesh) -> None:
    # every rank holds the same values already (the same seed, or a checkpoint): no broadcast needed
    for key, parameter in list(module.named_parameters(recurse=False)):
        module.register_parameter(
            key,
            nn.Parameter(
                DTensor.from_local(parameter, mesh, [Replicate()], run_check=False),
                requires_grad=parameter.requires_grad,
            ),
        )


class LocalHeads(ParallelStyle):
    """Keep the local heads' part of per-head buffers: ``buffers`` named on the module, heads along ``dim``.

    For members whose per-head numbers are fixed, not learned (ALiBi's slopes): each rank's buffer becomes its
    own contiguous block of heads, a plain tensor, so ``bias`` returns ``(H / size, L, S)``.
    """

    def __init__(self, *buffers: str, dim: int = 0) -> None:
        super().__init__()
        self.buffers, self.dim = buffers, dim

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        size, rank = device_mesh.size(), device_mesh.get_local_rank()
        for name in self.buffers:
            whole = module.get_buffer(name)
            module._buffers[name] = whole.chunk(size, dim=self.dim)[rank].clone()
        return module

    def __repr__(self) -> str:
        return f"{', '.join(self.buffers)} of the local heads"


class HeadParameters(ParallelStyle):
    """Split learned per-head parameters (the sink logits, ``(H,)``) by heads along ``dim``: each rank holds its
    own contiguous block as a ``Shard(dim)`` DTensor (checkpoints and gradient clipping see one whole tensor), which
    the member reads through :func:`~swapformer.components.declarations.local_part`."""

    def __init__(self, *parameters: str, dim: int = 0) -> None:
        super().__init__()
        self.parameters, self.dim = parameters, dim

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        size, rank = device_mesh.size(), device_mesh.get_local_rank()
        for name in self.parameters:
            whole = module.get_parameter(name)
            local = whole.detach().chunk(size, dim=self.dim)[rank].clone()
            placements = [Shard(self.dim)]
            module.register_parameter(
                name,
                nn.Parameter(
                    DTensor.from_local(local, device_mesh, placements, run_check=False),
                    requires_grad=whole.requires_grad,
                ),
            )
        return module

    def __repr__(self) -> str:
        return f"{', '.join(self.parameters)} split by heads"


class PerHead(ParallelStyle):
    """A module that acts on each head alone (a q/k norm over E): it runs on the local heads ``(N, H / size, L,
    E)`` (heads along ``dim``), its parameters whole on every rank as ``Replicate()`` DTensors, so their gradients,
    partial on each rank (its heads only), are summed over the ranks. torch's ``SequenceParallel`` over the heads
    dimension, returning plain tensors."""

    def __init__(self, *, dim: int = 1) -> None:
        super().__init__()
        self.placements = (Shard(dim),)

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(
            module,
            device_mesh,
            _replicate_parameters,
            partial(_from_local, self.placements),
            _to_local,
        )

    def __repr__(self) -> str:
        return "per local head (gain replicated)"


class WholeWidth(ParallelStyle):
    """A module that needs every head at once (a q/k norm over the whole projection, ``H E`` wide): each rank's
    heads ``(N, L, H E / size)`` are gathered along ``dim`` (an all-gather), the module runs on the whole width
    with its parameters replicated, and each rank keeps its own heads' part of the output. The backward keeps
    the local part of the (identical) whole gradient; the parameters' gradients are whole on every rank."""

    def __init__(self, *, dim: int = -1) -> None:
        super().__init__()
        self.placements = (Shard(dim),)

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        def gather(placements: tuple[Any, ...], module: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
            sharded = DTensor.from_local(inputs[0], mesh, placements, run_check=False)
            return (sharded.redistribute(mesh, [Replicate()]), *inputs[1:])

        def keep_local(
            placements: tuple[Any, ...], module: nn.Module, output: DTensor, mesh: DeviceMesh
        ) -> Tensor:
            return output.redistribute(mesh, placements).to_local()

        return distribute_module(
            module,
            device_mesh,
            _replicate_parameters,
            partial(gather, self.placements),
            partial(keep_local, self.placements),
        )

    def __repr__(self) -> str:
        return "on the gathered heads"


class SharedByHeads(ParallelStyle):
    """The output of a module that every head reads (MLA's rope key, one for all H heads): identity forward;
    backward, its gradient (each rank's from its own heads) summed over the ranks, so what computed it (a
    replicated projection) gets the whole gradient. Megatron's "copy to the tensor-parallel region"."""

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        def shared(module: nn.Module, output: Tensor, mesh: DeviceMesh) -> Tensor:
            whole = DTensor.from_local(output, mesh, [Replicate()], run_check=False)
            return whole.to_local(grad_placements=[Partial()])

        return distribute_module(module, device_mesh, output_fn=shared)

    def __repr__(self) -> str:
        return "replicated, gradient summed"


def _from_local(placements: tuple[Any, ...], module: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
    return (DTensor.from_local(inputs[0], mesh, placements, run_check=False), *inputs[1:])


def _to_local(module: nn.Module, output: DTensor, mesh: DeviceMesh) -> Tensor:
    return output.to_local()


class ExpertGroup:
    """The experts one rank of a tensor-parallel group holds (``first`` to ``first + count - 1``) and the two
    collectives of expert parallelism inside it: every rank routes every token (the router is replicated), runs
    its own experts on the pairs routed to them, and the ranks' partial outputs are summed."""

    def __init__(self, mesh: DeviceMesh, first: int, count: int) -> None:
        self.mesh, self.first, self.count = mesh, first, count

    def shared(self, x: Tensor) -> Tensor:
        """Identity; backward, the gradient (each rank's from its own experts) summed over the ranks."""
        whole = DTensor.from_local(x, self.mesh, [Replicate()], run_check=False)
        return whole.to_local(grad_placements=[Partial()])

    def summed(self, x: Tensor) -> Tensor:
        """The ranks' partial ``x`` summed (an all-reduce); backward, the identity."""
        return DTensor.from_local(x, self.mesh, [Partial()], run_check=False).full_tensor()


class ExpertParallel(ParallelStyle):
    """Expert parallelism inside the tensor-parallel group, for a mixture whose experts are stacked raw
    parameters (``(E, ...)``, which torch's column-wise / row-wise styles cannot split): each of the ``size``
    ranks holds E / size whole experts (the named parameters become ``Shard(0)`` DTensors) and the module's
    ``expert_group`` becomes their :class:`ExpertGroup`, which its forward uses."""

    def __init__(self, *parameters: str) -> None:
        super().__init__()
        self.parameters = parameters

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        size, rank = device_mesh.size(), device_mesh.get_local_rank()
        count = 0
        for name in self.parameters:
            whole = getattr(module, name)
            if whole is None:
                continue
            count = whole.size(0) // size
            local = whole.detach().narrow(0, rank * count, count).clone()
            module.register_parameter(
                name,
                nn.Parameter(
                    DTensor.from_local(local, device_mesh, [Shard(0)], run_check=False),
                    requires_grad=whole.requires_grad,
                ),
            )
        module.expert_group = ExpertGroup(device_mesh, rank * count, count)
        return module

    def __repr__(self) -> str:
        return "experts split (expert parallel)"
