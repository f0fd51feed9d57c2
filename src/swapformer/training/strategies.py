"""Lightning's sharded strategies set up for swapformer, and checkpoint consolidation.

* :class:`FSDP2Strategy`: ``ModelParallelStrategy`` with one data-parallel mesh over every process (FSDP2 only);
  it also loads one-file checkpoints with the right optimizer-state mapping.
* :class:`TensorParallelStrategy`: the same with a tensor-parallel mesh dimension: tensor parallelism alone, or
  a data-parallel x tensor-parallel mesh (2-D: FSDP2 across the first dimension).
* :class:`BlockFSDPStrategy`: ``FSDPStrategy`` (FSDP1, CUDA) auto-wrapping each Transformer block.
* :func:`consolidate_checkpoint`: an FSDP2 checkpoint folder -> one ``.ckpt`` file any strategy resumes from.

The modules' ``configure_model`` does the sharding itself (:mod:`swapformer.training.distributed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

from swapformer.errors import ConfigError
from swapformer.training.checkpoints import read_distributed_checkpoint
from swapformer.training.distributed import BLOCK_CLASSES


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` used for FSDP2 alone: one data-parallel mesh over every process.

    ``ModelParallelStrategy``'s own ``"auto"`` sizes mean (nodes) x (GPUs per node) for 2-D FSDP + tensor
    parallelism; swapformer shards with FSDP2 only, so here ``"auto"`` means ``devices x num_nodes`` data
    parallel and tensor parallel 1. Everything else (process groups: NCCL on GPUs, gloo on CPU; checkpoints;
    the device mesh handed to ``configure_model``) is Lightning's.

    Args:
        data_parallel_size: processes in the data-parallel mesh; ``"auto"`` = devices x num_nodes.
        tensor_parallel_size: must stay 1 (tensor parallelism: :class:`TensorParallelStrategy`).
        save_distributed_checkpoint: True: each rank writes its shard (a checkpoint folder, resumable at any
            world size under this strategy); False: rank 0 gathers one full ``.ckpt`` file, loadable anywhere.
        **kwargs: other ``ModelParallelStrategy`` arguments (``process_group_backend``, ``timeout``).
    """

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        tensor_parallel_size: Literal["auto"] | int = 1,
        save_distributed_checkpoint: bool = True,
        **kwargs: Any,
    ) -> None:
        if tensor_parallel_size not in ("auto", 1):
            raise ConfigError(
                f"tensor_parallel_size={tensor_parallel_size}: FSDP2Strategy shards over data parallelism only; "
                "set tensor_parallel_size: 1, or use swapformer.training.TensorParallelStrategy (recipes "
                "trainer/tp, trainer/fsdp2-tp)."
            )
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Folders (this strategy's shards): Lightning's loader. One full ``.ckpt`` file (from one process, DDP,
        or ``save_distributed_checkpoint=False``): loaded here, because Lightning maps the file's integer
        optimizer keys to parameters in ``model.parameters()`` order while torch numbers them in param-group
        order; with AdamW's two groups (decay, no decay) that puts moments on the wrong parameters. Here the
        keys are mapped through the optimizer itself.
        """
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )
        from torch.distributed.fsdp import FullyShardedDataParallel, OptimStateKeyType

        path = Path(self.broadcast(checkpoint_path))
        if not path.is_file():
            return super().load_checkpoint(path, weights_only=weights_only)
        checkpoint = torch.load(path, mmap=True, map_location="cpu", weights_only=weights_only)
        options = StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True, strict=self.lightning_module.strict_loading
        )
        set_model_state_dict(self.model, checkpoint.pop("state_dict"), options=options)
        for optimizer, state in zip(self.optimizers, checkpoint.get("optimizer_states", [])):
            if state["state"] and isinstance(next(iter(state["state"])), int):
                state = FullyShardedDataParallel.rekey_optim_state_dict(
                    state, OptimStateKeyType.PARAM_NAME, self.model, optim=optimizer
                )
            set_optimizer_state_dict(self.model, optimizer, optim_state_dict=state, options=options)
        return checkpoint


def mesh_sizes(
    data_parallel_size: Literal["auto"] | int, tensor_parallel_size: Literal["auto"] | int, *, world_size: int
) -> tuple[int, int]:
    """``(data parallel, tensor parallel)`` for ``world_size`` processes, an ``"auto"`` size filled in: both
    auto: all tensor parallel; one auto: the world size divided by the other.

    Raises:
        ConfigError: sizes that do not multiply to the world size (or do not divide it), in one line.
    """
    for name, size in (
        ("data_parallel_size", data_parallel_size),
        ("tensor_parallel_size", tensor_parallel_size),
    ):
        if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"{name}={size!r} must be a positive integer or 'auto'")
    dp, tp = data_parallel_size, tensor_parallel_size
    if dp == "auto" and tp == "auto":
        dp = 1
    fixed = tp if dp == "auto" else dp
    if "auto" in (dp, tp) and world_size % fixed == 0:
        dp, tp = (world_size // tp, tp) if dp == "auto" else (dp, world_size // dp)
    if dp == "auto" or tp == "auto" or dp * tp != world_size:
        pairs = [f"{d} x {world_size // d}" for d in range(1, world_size + 1) if world_size % d == 0]
        raise ConfigError(
            f"data_parallel_size={data_parallel_size} x tensor_parallel_size={tensor_parallel_size} does not "
            f"make a mesh of the run's {world_size} process{'es' if world_size != 1 else ''} (num_nodes x devices); "
            f"set sizes whose product is "
            f"{world_size}: {', '.join(pairs)}"
        )
    return dp, tp


class TensorParallelStrategy(FSDP2Strategy):
    """Lightning's ``ModelParallelStrategy`` with tensor parallelism (TP): alone (``data_parallel_size: 1``,
    recipe ``trainer/tp``), or a 2-D mesh of data parallel x tensor parallel (``trainer/fsdp2-tp``).

    The module's ``configure_model`` splits each attention and feed-forward layer over the mesh's
    ``tensor_parallel`` dimension with the plans its members declare
    (:func:`~swapformer.training.distributed.shard_tensor_parallel`), then, when ``data_parallel_size`` > 1,
    shards with FSDP2 over ``data_parallel``. The processes of one TP group read the same batches; the global
    batch counts data-parallel processes only. Put a TP group inside one node: its collectives run every layer.

    Args:
        data_parallel_size: data-parallel processes; ``"auto"`` = world size / ``tensor_parallel_size``.
        tensor_parallel_size: processes that split each layer; ``"auto"`` = world size / ``data_parallel_size``
            (all of them when both are ``"auto"``). It must divide the attention heads and kv heads.
        save_distributed_checkpoint: as :class:`FSDP2Strategy`.
        **kwargs: other ``ModelParallelStrategy`` arguments.

    Raises:
        ConfigError: sizes whose product is not the world size (:func:`mesh_sizes`), at setup.
    """

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        tensor_parallel_size: Literal["auto"] | int = "auto",
        save_distributed_checkpoint: bool = True,
        **kwargs: Any,
    ) -> None:
        ModelParallelStrategy.__init__(
            self,
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )

    def setup_environment(self) -> None:
        self._data_parallel_size, self._tensor_parallel_size = mesh_sizes(
            self._data_parallel_size,
            self._tensor_parallel_size,
            world_size=self.num_nodes * self.num_processes,
        )
        ModelParallelStrategy.setup_environment(self)


class BlockFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` (FSDP1; CUDA only) with the wrap policy set to the model's blocks.

    ``FSDPStrategy(auto_wrap_policy={TransformerLayer})`` cannot be written in a recipe (its policy argument
    has no type a config parser can read), so this subclass fixes it: every ``TransformerLayer`` is its own
    FSDP unit, the embeddings, final norm and LM head stay in the root unit, and a tied LM head therefore
    stays one ``Parameter`` (``use_orig_params=True``, Lightning's default).

    Args:
        activation_checkpointing: also recompute each block's activations in backward (FSDP's
            ``activation_checkpointing_policy`` set to the block class). Do not combine with the model's
            ``activation_checkpointing`` option.
        sharding_strategy: ``FULL_SHARD``, ``SHARD_GRAD_OP``, ``NO_SHARD``, ``HYBRID_SHARD``.
        state_dict_type: ``"full"`` (one ``.ckpt`` file, loadable anywhere) or ``"sharded"`` (a folder).
        cpu_offload: keep parameters and gradients on the CPU between uses.
        **kwargs: other ``FSDPStrategy`` / ``FullyShardedDataParallel`` arguments.
    """

    def __init__(
        self,
        activation_checkpointing: bool = False,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "full",
        cpu_offload: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            auto_wrap_policy=set(BLOCK_CLASSES),
            activation_checkpointing_policy=set(BLOCK_CLASSES) if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
            **kwargs,
        )


def consolidate_checkpoint(folder: str | Path, output: str | Path | None = None) -> Path:
    """Turn an FSDP2 checkpoint folder (``save_distributed_checkpoint=True``) into one ``.ckpt`` file (to copy
    one file, or for tools that read files only). Resuming and ``swapformer export`` read the folder itself
    (:func:`~swapformer.training.checkpoints.read_distributed_checkpoint`, the same conversion in memory).
    From a shell: ``python -m swapformer.training.consolidate FOLDER [OUTPUT]``.

    Args:
        folder: the checkpoint folder (holds ``*.distcp`` shards, ``.metadata`` and ``meta.pt``).
        output: file to write; default ``<folder>.full.ckpt`` next to it.

    Returns:
        The written file.

    Raises:
        CheckpointError: ``folder`` is not a whole Lightning distributed checkpoint.
    """
    folder = Path(folder)
    checkpoint = read_distributed_checkpoint(folder)
    if output is None:
        output = folder.with_name(folder.name.removesuffix(".ckpt") + ".full.ckpt")
    output = Path(output)
    torch.save(checkpoint, output)
    return output
