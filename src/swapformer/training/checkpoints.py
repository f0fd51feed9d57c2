"""One reader for the checkpoints users name (``--ckpt_path``, ``init_from``, ``SwapformerModule.load``): it
says what a file is when it is not a checkpoint of ``swapformer fit``, naming the file.

A checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain Python values only. A file whose
loading would run code (a pickled object with ``__reduce__``) is refused before anything in it runs.

Example:
    >>> read_checkpoint("missing.ckpt")
    Traceback (most recent call last):
    ...
    swapformer.errors.CheckpointError: no checkpoint at missing.ckpt: ...
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from swapformer.config import ModelConfig
from swapformer.errors import CheckpointError, ConfigError
from swapformer.interop import load
from swapformer.models.generation_defaults import GenerationDefaults

# Lightning's distributed checkpoint folder (ModelParallelStrategy): torch.distributed.checkpoint's index of the
# shards, the shards it names, and the non-tensor state that rank 0 saves with torch.save
DCP_INDEX, DCP_META = ".metadata", "meta.pt"
# keys of every checkpoint swapformer fit writes: the model's hyperparameters and its tensors
REQUIRED_HYPERPARAMETERS = ("kind", "vocab_size")
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it is one checkpoint file or a whole distributed checkpoint folder; else a
    :class:`CheckpointError` naming it.

    Raises:
        CheckpointError: nothing at ``path``, an empty folder, a folder that is not a distributed checkpoint, or
            one missing a shard its index names.
    """
    path = Path(path)
    if path.is_dir():
        if not any(path.iterdir()):
            raise CheckpointError(f"{path} is an empty folder, not a checkpoint: give a .ckpt file")
        check_distributed_checkpoint(path)
        return path
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: check the path (swapformer fit prints where it wrote last.ckpt)"
        )
    return path


def check_distributed_checkpoint(folder: Path) -> None:
    """Refuse a folder that is not a whole distributed checkpoint (FSDP2's ``save_distributed_checkpoint``),
    before a strategy starts reading it: a shard lost in a copy would otherwise surface as a ``KeyError`` deep
    in ``torch.distributed.checkpoint``, on some ranks only.

    Raises:
        CheckpointError: no index (``.metadata``) or no ``meta.pt``; or the first shard the index names that is
            not in the folder.
    """
    from torch.distributed.checkpoint import FileSystemReader

    absent = [name for name in (DCP_INDEX, DCP_META) if not (folder / name).is_file()]
    if absent:
        raise CheckpointError(
            f"{folder} is a folder but not a distributed checkpoint (no {' or '.join(absent)} in it): give the "
            "folder ModelCheckpoint wrote under FSDP2 (e.g. checkpoints/last.ckpt), or a .ckpt file"
        )
    index = FileSystemReader(folder).read_metadata()
    shards = sorted({info.relative_path for info in (index.storage_data or {}).values()})
    missing = [name for name in shards if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is missing the shard {missing[0]} ({len(shards) - len(missing)} of the {len(shards)} shards "
            "its .metadata names are there): copy the whole folder from where the run wrote it"
        )


def read_distributed_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """A distributed checkpoint folder (FSDP2, any number of shards) read by one process, without a process
    group, laid out as a one-file checkpoint: ``state_dict`` and ``optimizer_states`` numbered in param-group
    order, as one process, DDP and ``torch.optim`` expect, plus everything in ``meta.pt`` (loops, callbacks, data
    position, hyperparameters, tokenizer). The whole model and optimizer state must fit in CPU memory.

    Lightning's folder keeps each optimizer's state keyed by parameter names (``optimizer_0``, what the sharded
    strategies read); Lightning's own converter (``lightning.fabric.utilities.consolidate_checkpoint``) keeps that
    layout, which a one-process resume cannot read, so the names are numbered here.

    Raises:
        CheckpointError: the folder is not a whole distributed checkpoint (:func:`check_distributed_checkpoint`).
    """
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    folder = Path(folder)
    check_distributed_checkpoint(folder)
    checkpoint: dict[str, Any] = {}
    # torch's own dcp_to_torch_save, in memory: an empty planner fills the dict with every tensor the index
    # names (the public dcp.load only fills the keys a dict already has)
    _load_state_dict(
        checkpoint,
        storage_reader=FileSystemReader(folder),
        planner=_EmptyStateDictLoadPlanner(),
        no_dist=True,
    )
    checkpoint.update(torch.load(folder / DCP_META, map_location="cpu", weights_only=True))
    states = []
    for index in range(len([k for k in checkpoint if k.startswith("optimizer_")])):
        named = checkpoint.pop(f"optimizer_{index}")
        ids: dict[str, int] = {}
        groups = [
            {**g, "params": [ids.setdefault(n, len(ids)) for n in g["params"]]} for g in named["param_groups"]
        ]
        states.append({"state": {ids[n]: v for n, v in named["state"].items()}, "param_groups": groups})
    checkpoint["optimizer_states"] = states
    return checkpoint


def read_checkpoint(path: str | os.PathLike, *, require_swapformer: bool = True) -> dict[str, Any]:
    """The contents of a ``.ckpt`` written by ``swapformer fit`` (tensors memory-mapped, not copied), or of a
    distributed checkpoint folder (:func:`read_distributed_checkpoint`: in memory, in the one-file layout).

    Args:
        path: the checkpoint file or folder.
        require_swapformer: also require swapformer's hyperparameters (``kind``, ``vocab_size``) and weights.

    Raises:
        CheckpointError: missing, an incomplete folder, empty, not a torch file, truncated, refused because
            loading would run code, or (with ``require_swapformer``) written by another program; the message names the file.
    """
    path = check_checkpoint_path(path)
    if path.is_dir():
        state = read_distributed_checkpoint(path)
        if require_swapformer:
            _check_written_by_swapformer(path, state)
        return state
    with open(path, "rb") as file:
        head = file.read(16)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): the run that wrote it was cut short; use another")
    if head.startswith(_ZIP):
        state = _load(path, mmap=True)
    elif head.startswith(_PICKLE):  # torch's legacy format, or a bare pickle
        state = _load(path, mmap=False)
    elif head[8:9] == b"{":
        raise CheckpointError(
            f"{path} is a safetensors file (weights without a model config), not a checkpoint of swapformer "
            "fit: give its folder with config.json (swapformer import-hf, or init_from: FOLDER)"
        )
    else:
        raise CheckpointError(
            f"{path} is not a checkpoint (not a file written by torch.save): give the .ckpt that swapformer "
            "fit wrote"
        )
    if require_swapformer:
        _check_written_by_swapformer(path, state)
    return state


def _load(path: Path, *, mmap: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path} was refused for safety: loading it would run code it holds (pickled objects beyond "
                "tensors and plain values); nothing in it ran. Load only checkpoints you trust, with torch.load"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint (a damaged pickle): {err}") from None
    except (EOFError, RuntimeError) as err:
        if isinstance(err, EOFError) or "failed reading zip archive" in str(err):
            raise CheckpointError(
                f"{path} is truncated (its end is missing: a copy or a save cut short); use another checkpoint"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint: {str(err).splitlines()[0]}") from None


def _check_written_by_swapformer(path: Path, state: Any) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a checkpoint of swapformer fit: give the .ckpt it wrote"
        )
    hyperparameters = state.get("hyper_parameters")
    has_model = isinstance(hyperparameters, dict) and all(
        k in hyperparameters for k in REQUIRED_HYPERPARAMETERS
    )
    if has_model and "state_dict" in state:
        return
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} holds bare tensors (a state_dict, e.g. a Hugging Face pytorch_model.bin), not a checkpoint "
            "of swapformer fit: import a Hugging Face folder with `swapformer import-hf DIR --out OUT`, or "
            "start from it with init_from: OUT"
        )
    if "state_dict" in state or "pytorch-lightning_version" in state:
        raise CheckpointError(
            f"{path} was written by another program (a Lightning checkpoint without swapformer's model "
            "hyperparameters kind and vocab_size): give a checkpoint of swapformer fit"
        )
    raise CheckpointError(
        f"{path} was written by another program (no model hyperparameters or weights in it): give a checkpoint "
        "of swapformer fit"
    )


def load_weights(
    source: str | os.PathLike,
) -> tuple[ModelConfig, dict[str, Tensor], GenerationDefaults | None]:
    """The config, state dict and generation defaults (None: none) of a saved model: a directory
    (:func:`swapformer.interop.load`, its ``generation_config.json``) or a ``.ckpt`` of ``swapformer fit`` (its
    model's tensors, without the optimizer or trainer state, and the defaults its model kept).

    Raises:
        ConfigError: nothing at ``source``, or no model in it.
    """
    path = Path(source)
    # a file or FSDP2's folder: one reader says what a file is when it is not a checkpoint (CheckpointError)
    if path.is_file() or (path / DCP_INDEX).is_file():
        checkpoint = read_checkpoint(path)
        fields = set(ModelConfig.defaults()) | {"vocab_size"}
        config = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in fields}
        state = {
            k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
        }
        return ModelConfig.from_dict(config), state, checkpoint_generation_defaults(checkpoint, path)
    if not path.exists():
        raise ConfigError(
            f"nothing at {path}: give a model directory (save_pretrained, import-hf) or a .ckpt"
        )
    model = load(path)
    return model.config, model.state_dict(), getattr(model, "generation_config", None)


GENERATION_KEY = "generation_config"
"""Where a ``.ckpt`` keeps its model's generation defaults (``generation_config.json``'s fields, plain values)."""


def checkpoint_generation_defaults(
    checkpoint: dict[str, Any], where: str | os.PathLike
) -> GenerationDefaults | None:
    """The generation defaults a checkpoint's model kept (an imported model's), or None."""
    data = checkpoint.get(GENERATION_KEY)
    return None if data is None else GenerationDefaults.from_dict(data, where=f"{where}: {GENERATION_KEY}")


def has_tokenizer(path: str | os.PathLike) -> bool:
    """Whether the checkpoint ``path`` holds a tokenizer (only its small pickled header is read; of a folder,
    its ``meta.pt``)."""
    path = Path(path)
    source = path / DCP_META if path.is_dir() else path
    state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    return isinstance(state, dict) and state.get("tokenizer") is not None


def newest_last_checkpoint(root: str | os.PathLike) -> Path | None:
    """The most recently written ``last*.ckpt`` (a file, or a sharded checkpoint's folder) below ``root``."""
    root = Path(root)
    found = [
        p
        for p in root.rglob("last*.ckpt")
        if not any(folder.suffix == ".ckpt" for folder in p.relative_to(root).parents)  # not inside a shard
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_last(path: str, root: str | os.PathLike | None = None) -> str:
    """``path``, or for ``last`` the newest ``last*.ckpt`` below ``root`` (the working folder by default).

    Raises:
        CheckpointError: ``last`` and no ``last*.ckpt`` below ``root``.
    """
    if path != "last":
        return path
    root = Path(root or os.getcwd())
    found = newest_last_checkpoint(root) if root.is_dir() else None
    if found is None:
        raise CheckpointError(
            f"--ckpt_path last: no last*.ckpt below {root}; give a checkpoint file, or the folder the run "
            "wrote to (fit: --trainer.default_root_dir DIR; generate/evaluate/export: --root DIR)"
        )
    return str(found)
