"""An MoE layer's experts as checkpoints store them, one tensor per expert, and as transformers 5 holds them in
memory (and our links name them), stacked: ``(E, rows, columns)``.

``save_pretrained`` and the Hub's checkpoints write each expert's projections apart (Mixtral's
``block_sparse_moe.experts.{e}.w1.weight``); transformers 5 stacks them when it loads (its conversion mapping) and
unstacks them when it saves. A family lists its :class:`Stored` tensors; :func:`stack` reads a checkpoint into the
stacked names its links use (a ``PreTrainedModel``'s own state dict is stacked already and passes through), and
:func:`unstack` writes the stored form back::

    experts.0.w1 (F, D) ┐
    experts.0.w3 (F, D) ┴ cat ─┐
    experts.1.w1 ...           ├ stack ─▶ experts.gate_up_proj (E, 2F, D)
    ...                        ┘
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from swapformer.errors import ConfigError


@dataclass(frozen=True)
class Stored:
    """The tensor ``stacked`` (a name's ending, e.g. ``mlp.experts.gate_up_proj``) is stored as ``parts``: for
    each expert ``e``, the parts with ``{e}`` filled in, concatenated along dim 0 (gate, then up), then stacked
    over the experts. Parts without ``{e}`` are a plain rename (Mixtral's ``block_sparse_moe.gate.weight`` is
    transformers 5's ``mlp.gate.weight``)."""

    stacked: str
    parts: tuple[str, ...]

    @property
    def per_expert(self) -> bool:
        return "{e}" in self.parts[0]

    def pattern(self, part: str) -> re.Pattern[str]:
        return re.compile(r"^(.*)\." + re.escape(part).replace(re.escape("{e}"), r"(\d+)") + "$")


def stack(tensors: Mapping[str, Tensor], stored: Iterable[Stored]) -> dict[str, Tensor]:
    """``tensors`` with every stored part replaced by the stacked tensor it belongs to.

    Raises:
        ConfigError: an expert's part missing while another expert's is there (the tensor named).
    """
    out = dict(tensors)
    for layout in stored:
        found: dict[str, dict[int, dict[str, Tensor]]] = {}  # prefix -> expert -> part -> tensor
        for part in layout.parts:
            pattern = layout.pattern(part)
            for key in list(out):
                match = pattern.match(key)
                if match:
                    expert = int(match.group(2)) if layout.per_expert else 0
                    found.setdefault(match.group(1), {}).setdefault(expert, {})[part] = out.pop(key)
        for prefix, experts in found.items():
            slices = []
            for expert in range(max(experts) + 1):
                parts = experts.get(expert, {})
                missing = [part for part in layout.parts if part not in parts]
                if missing:
                    name = f"{prefix}.{missing[0].format(e=expert)}"
                    raise ConfigError(f"the checkpoint has no tensor {name!r}, which its other experts have")
                slices.append(torch.cat([parts[part] for part in layout.parts]))
            out[f"{prefix}.{layout.stacked}"] = torch.stack(slices) if layout.per_expert else slices[0]
    return out


def unstack(tensors: Mapping[str, Tensor], stored: Iterable[Stored]) -> dict[str, Tensor]:
    """``tensors`` with every stacked tensor written as its stored parts (the inverse of :func:`stack`)."""
    out = dict(tensors)
    for layout in stored:
        for key in [key for key in out if key.endswith("." + layout.stacked)]:
            prefix, tensor = key[: -len(layout.stacked) - 1], out.pop(key)
            experts = tensor.unbind(0) if layout.per_expert else [tensor]
            for expert, value in enumerate(experts):
                for part, piece in zip(layout.parts, value.chunk(len(layout.parts)), strict=True):
                    out[f"{prefix}.{part.format(e=expert)}"] = piece.contiguous()
    return out
