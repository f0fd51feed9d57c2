"""Checks of a Lightning verb's configuration that run before anything expensive (before any data is read or
the model is built), each failing with one line that names the key and the fix: paths (``--ckpt_path``,
``trainer.default_root_dir``), trainer names (strategy, accelerator), trainer counts (devices, accumulated
batches, the clipping norm) and the data's sequence lengths against the model's positional member.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from swapformer.config import ModelConfig
from swapformer.errors import CheckpointError, ConfigError, did_you_mean
from swapformer.models.builders import build_positional
from swapformer.training.checkpoints import check_checkpoint_path, newest_last_checkpoint, read_checkpoint
from swapformer.training.compiling import compile_blocker


def check_paths(config: Any, subcommand: str | None) -> None:
    """Fail before any data is read or model built: a ``ckpt_path`` that names nothing (``last`` with no
    ``last*.ckpt`` below the root), a ``default_root_dir`` that is not a writable folder."""
    trainer = config.get("trainer")
    root = (trainer.get("default_root_dir") if trainer is not None else None) or "."
    root_path = Path(root)
    if root_path.exists() and not root_path.is_dir():
        raise ConfigError(
            f"trainer.default_root_dir={root} is a file, not a folder: give a folder for the run"
        )
    existing = next((p for p in [root_path.absolute(), *root_path.absolute().parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            f"trainer.default_root_dir={root}: {existing} is a file, not a folder; give a folder"
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"trainer.default_root_dir={root}: {existing} is not writable; give a folder you can write to"
        )
    ckpt_path = config.get("ckpt_path")
    init_from = getattr(config.get("model"), "init_args", {}).get("init_from")
    if ckpt_path is None and subcommand in ("validate", "test", "predict") and not init_from:
        raise ConfigError(
            f"no --ckpt_path: {subcommand} would use an untrained model; give --ckpt_path FILE, or last (the "
            "newest last*.ckpt below trainer.default_root_dir)"
        )
    if (
        ckpt_path is None
        or ckpt_path in ("best", "hpc", "registry")
        or str(ckpt_path).startswith("registry:")
    ):
        return
    if ckpt_path == "last":
        if root_path.is_dir() and newest_last_checkpoint(root_path):
            return
        if subcommand == "fit":
            # the same command starts a run and resumes it after a preemption (a requeued SLURM job): as in
            # Lightning, nothing to resume from means a fresh start, said in one line
            rank_zero_info(f"--ckpt_path last: no last*.ckpt below {root} yet; starting a new run")
            config["ckpt_path"] = None
            return
        raise CheckpointError(
            f"--ckpt_path last: no last*.ckpt below {root} (trainer.default_root_dir): give the folder the "
            "run wrote to with --trainer.default_root_dir, or a checkpoint file"
        )
    if "://" not in str(ckpt_path):  # remote paths are Lightning's to read
        path = Path(ckpt_path)
        if not path.exists():
            raise CheckpointError(
                f"--ckpt_path {ckpt_path}: no such file or folder; give a checkpoint (or last: the newest "
                "last*.ckpt below trainer.default_root_dir)"
            )
        if path.is_file():  # says what the file is when it is not a checkpoint, before the data is read
            read_checkpoint(path)
        elif (path / "config.json").is_file():  # a model folder (export, save_pretrained, import-hf, HF)
            raise CheckpointError(
                f"--ckpt_path {ckpt_path} is a model folder, not a checkpoint of swapformer fit: {subcommand} "
                f"starts from its weights with --model.init_args.init_from {ckpt_path} (beside a recipe that "
                "describes the model; import-hf's recipe.yaml sets it)"
            )
        else:  # a distributed checkpoint: every shard its index names must be there (not read yet)
            check_checkpoint_path(path)


def check_trainer(trainer: Any) -> None:
    """A misspelt strategy, an accelerator this machine does not have, or a count out of range (devices,
    accumulated batches, the clipping norm), named with the fix (Lightning's own messages give neither the key
    nor a suggestion, or there are none)."""
    if trainer is None:
        return
    check_launcher(trainer)
    check_counts(trainer)
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    strategy = trainer.get("strategy")
    names = ["auto", *StrategyRegistry.available_strategies()]
    if isinstance(strategy, str) and "." not in strategy and strategy not in names:
        raise ConfigError(
            f"trainer.strategy={strategy!r} is not a strategy{did_you_mean(strategy, names)}; "
            "common ones: auto, ddp, ddp_spawn, fsdp (or a class_path)"
        )
    accelerator = trainer.get("accelerator")
    if not isinstance(accelerator, str) or accelerator == "auto":
        return
    name = "cuda" if accelerator == "gpu" else accelerator
    registry = AcceleratorRegistry.available_accelerators()
    if name not in registry:
        known = ["auto", "gpu", *sorted(registry)]
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not an accelerator{did_you_mean(accelerator, known)}; "
            f"choose one of {', '.join(known)}"
        )
    try:
        available = AcceleratorRegistry.get(name).is_available()
    except Exception:
        available = False
    if not available:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: this machine has no {name} device; use "
            "--trainer.accelerator cpu (or auto, which picks what is there)"
        )


def check_counts(trainer: Any) -> None:
    """Counts Lightning takes without a word (a negative ``accumulate_grad_batches`` trains, a negative
    ``gradient_clip_val`` turns clipping off) or fails on with a traceback mid-run (``accumulate_grad_batches: 0``
    divides by zero at the first step, ``devices: -2`` raises a TypeError): one line each, before anything runs."""
    accumulate = trainer.get("accumulate_grad_batches")
    if isinstance(accumulate, int) and not isinstance(accumulate, bool) and accumulate < 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={accumulate} must be a whole number >= 1 (the batches summed into "
            "one optimizer step; 1: a step per batch)"
        )
    clip = trainer.get("gradient_clip_val")
    if isinstance(clip, int | float) and not isinstance(clip, bool) and clip < 0:
        raise ConfigError(
            f"trainer.gradient_clip_val={clip:g} must be >= 0 (the largest gradient norm; 0 or null: no clipping)"
        )
    devices = trainer.get("devices")
    with contextlib.suppress(TypeError, ValueError):
        devices = int(devices)  # "2" on the command line; "auto", "0,1" and lists stay as they are
    if not isinstance(devices, int) or isinstance(devices, bool) or devices > 0:
        return
    if devices < -1 or devices == 0:
        raise ConfigError(
            f"trainer.devices={devices} must be a positive number of devices, a list of device ids, or -1 / auto "
            "(every device)"
        )
    accelerator = trainer.get("accelerator")
    on_cpu = accelerator == "cpu" or (
        accelerator in (None, "auto")
        and not torch.cuda.is_available()
        and not torch.backends.mps.is_available()
    )
    if on_cpu:  # Lightning's -1 counts GPUs; on the CPU it raises a TypeError
        raise ConfigError(
            "trainer.devices=-1 (every device) counts GPUs; on the CPU give the number of processes, e.g. "
            "--trainer.devices 1"
        )


# the variables Lightning's own environments look for (SLURMEnvironment.detect, TorchElasticEnvironment.detect)
_TORCHRUN = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
_SLURM_SHELLS = ("bash", "interactive")  # Lightning's "not launched by srun" job names


def launched_processes(env: dict[str, str] | None = None) -> tuple[str, int, int] | None:
    """``(launcher, nodes, processes per node)`` when this process was started by srun or torchrun (the order in
    which Lightning picks its cluster environment), else None."""
    env = os.environ if env is None else env
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in _SLURM_SHELLS:
        nodes = int(env.get("SLURM_NNODES", "1"))
        # srun writes "8(x2)" for 2 nodes of 8 tasks each
        per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0] or str(
            int(env["SLURM_NTASKS"]) // nodes
        )
        return "srun", nodes, int(per_node)
    if all(name in env for name in _TORCHRUN):
        per_node = int(env["LOCAL_WORLD_SIZE"])
        return "torchrun", int(env.get("WORLD_SIZE", per_node)) // per_node, per_node
    return None


def check_launcher(trainer: Any) -> None:
    """``num_nodes x devices`` must be the number of processes srun or torchrun started: Lightning's torchrun
    check names neither the fix nor the launcher's split, and under srun a wrong count waits for ranks that never
    come. ``devices: auto`` (Lightning counts the node's devices) is left to Lightning."""
    launched = launched_processes()
    devices = trainer.get("devices")
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:  # "0,1": a list of device ids
        devices = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, list | tuple):
        devices = len(devices)
    num_nodes = trainer.get("num_nodes") or 1
    if launched is None or not isinstance(devices, int) or devices < 1 or not isinstance(num_nodes, int):
        return
    launcher, nodes, per_node = launched
    if devices * num_nodes != nodes * per_node:
        raise ConfigError(
            f"trainer.num_nodes={num_nodes} x trainer.devices={devices} = {_count(num_nodes * devices, 'process')}, "
            f"but {launcher} started {nodes * per_node} ({_count(nodes, 'node')} x {per_node}): set "
            f"--trainer.num_nodes {nodes} --trainer.devices {per_node}, or launch {num_nodes} x {devices}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'es' if noun.endswith('s') else 's'}" if number != 1 else f"1 {noun}"


def check_compile(init_args: Any, trainer: Any) -> None:
    """``compile`` where torch cannot compile (an unknown option or backend, no C++ compiler for inductor on the
    CPU, no triton on the GPU): one line before any data is read, not a compiler error mid-step."""
    accelerator = (trainer.get("accelerator") if trainer is not None else None) or "auto"
    problem = compile_blocker(
        init_args.get("compile"), accelerator if isinstance(accelerator, str) else "auto"
    )
    if problem is not None:
        raise ConfigError(f"model.init_args.{problem}")


def check_tensor_parallel(model: ModelConfig, trainer: Any, *, meta_init: bool = False) -> None:
    """Under a ``ModelParallelStrategy`` with tensor parallelism (``trainer/tp``, ``trainer/fsdp2-tp``): mesh sizes
    that multiply to ``num_nodes x devices``, and a model whose every member can be split that many ways (heads
    divisible, a plan declared), checked on a meta-device copy of the model before any process starts."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    from swapformer.registry import kind
    from swapformer.training.distributed import tensor_parallel_plan
    from swapformer.training.strategies import mesh_sizes

    strategy = trainer.get("strategy") if trainer is not None else None
    class_path = getattr(strategy, "class_path", None) or (
        strategy.get("class_path") if isinstance(strategy, dict) else None
    )
    if not isinstance(class_path, str) or "." not in class_path:
        return
    module_path, _, name = class_path.rpartition(".")
    try:
        cls = getattr(__import__(module_path, fromlist=[name]), name)
    except (ImportError, AttributeError):
        return  # a misspelt class: jsonargparse names it
    if not (isinstance(cls, type) and issubclass(cls, ModelParallelStrategy)):
        return
    init_args = getattr(strategy, "init_args", None) or (
        strategy.get("init_args") if isinstance(strategy, dict) else {}
    )
    init_args = dict(vars(init_args)) if not isinstance(init_args, dict) else init_args
    sizes = {k: init_args.get(k, "auto") for k in ("data_parallel_size", "tensor_parallel_size")}
    devices, num_nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and isinstance(num_nodes, int):
        tensor = mesh_sizes(**sizes, world_size=devices * num_nodes)[1]
    else:  # devices: auto (counted by Lightning): only a fixed TP size can be checked here
        tensor = sizes["tensor_parallel_size"]
    if isinstance(tensor, int) and tensor > 1:
        if meta_init:  # (configure_model refuses it too, for a Trainer built in Python)
            raise ConfigError(
                f"model.init_args.meta_init=true with tensor_parallel_size={tensor}: the whole (replicated) weights "
                "would differ between ranks; set meta_init: false"
            )
        with torch.device("meta"):  # the plan needs the modules, not their memory
            tensor_parallel_plan(kind(model.kind).build(model), tensor)


def check_lengths(model: ModelConfig, data: Any) -> None:
    """The data's sequence lengths fit the positional member's table (``max_length``: a ``learned`` table's
    ``max_seq_len``), checked before the data is read rather than at the first batch that is too long."""
    init_args = getattr(data, "init_args", None)
    if init_args is None:
        return
    with torch.device("meta"):  # only its max_length is wanted: no memory for a table
        limit = build_positional(model, bidirectional=False).max_length
    if limit is None:
        return
    lengths = {  # data key -> tokens the model sees at once
        "seq_len": init_args.get("seq_len"),
        "max_src_len": init_args.get("max_src_len"),
        "max_tgt_len": None if init_args.get("max_tgt_len") is None else init_args["max_tgt_len"] - 1,
    }
    for key, length in lengths.items():
        if isinstance(length, int) and not isinstance(length, bool) and length > limit:
            raise ConfigError(
                f"data.init_args.{key}={init_args[key]} is longer than the model's positional "
                f"'{model.component_name('positional')}' table "
                f"({limit} positions): lower {key} or raise model.init_args.max_seq_len"
            )
