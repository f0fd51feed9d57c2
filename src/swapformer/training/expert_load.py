"""The expert load of each mixture-of-experts layer as a picture: rows the MoE layers, columns their experts,
each cell the share of the routed tokens that expert received over the steps since the last picture.

::

    router's top-k ─▶ load (E,) per step ─▶ summed over processes (moe_imbalance) ─▶ running_load += load
    every n steps:  take_expert_loads ─▶ expert_load_shares (layers, E) ─▶ plot_expert_load ─▶ loggers

The counts stay on the device between pictures (one small add per layer and step, no host sync); rank zero
draws them. The task adds :class:`ExpertLoadLogger` on its own to a model with an MoE layer.

Example:
    >>> import torch
    >>> loads = {"decoder.layers.0.feed_forward.sublayer": torch.tensor([3.0, 1.0, 0.0, 4.0])}
    >>> labels, shares = expert_load_shares(loads)
    >>> labels, shares.tolist()
    (['0'], [[0.375, 0.125, 0.0, 0.5]])
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from swapformer.components.auxiliary import take_expert_loads
from swapformer.training.images import figure_to_array, log_images, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KEY = "train/moe_expert_load"
"""Where the picture goes: a W&B image key, a TensorBoard tag, ``<log_dir>/moe_expert_load/`` for PNG files."""

PICTURES_PER_LOG_INTERVAL = 10
"""Without ``every_n_steps``, a picture every 10 x the trainer's ``log_every_n_steps`` optimizer steps."""


def expert_load_shares(loads: Mapping[str, Tensor]) -> tuple[list[str], Tensor]:
    """Row labels and the ``(layers, E)`` grid of shares: each layer's token counts over their sum.

    Args:
        loads: per-expert token counts ``(E,)`` by the layer's module name (:func:`take_expert_loads`), in
            layer order.

    Returns:
        The layer labels (``3`` for ``decoder.layers.3...``; ``encoder 3`` / ``decoder 3`` when the MoE layers
        sit in two stacks) and the float32 shares: each row sums to 1 (0 where the layer routed nothing), NaN
        past the experts of a layer with fewer than the widest.
    """
    counts = [load.detach().float().cpu() for load in loads.values()]
    grid = torch.full((len(counts), max((c.numel() for c in counts), default=0)), math.nan)
    for row, count in zip(grid, counts):
        row[: count.numel()] = count / count.sum() if count.sum() else 0.0
    return _layer_labels(list(loads)), grid


def _layer_labels(names: list[str]) -> list[str]:
    found = [re.search(r"(?:^|\.)(?:(\w+)\.)?layers\.(\d+)(?:\.|$)", name) for name in names]
    if not all(found):
        return names
    stacks = {match[1] for match in found}
    return [match[2] if len(stacks) == 1 else f"{match[1]} {match[2]}" for match in found]


def plot_expert_load(shares: Tensor, *, layers: Sequence[str], title: str = "") -> Figure:
    """A heatmap of expert loads: one row per MoE layer, one column per expert, the share in percent written in
    each cell, coloured around the even share (white; red busier, blue idler), which the colour bar marks.

    Needs matplotlib; readable up to about 64 experts (the figure widens with them).

    Args:
        shares: ``(layers, E)`` shares of the routed tokens (:func:`expert_load_shares`), NaN cells left blank.
        layers: a label per row.
        title: the first line of the title; the second states the even share.

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        ValueError: not one label per row.
    """
    from matplotlib.colors import Normalize, TwoSlopeNorm

    percent = shares.detach().float().cpu().numpy() * 100
    rows, experts = percent.shape
    if len(layers) != rows:
        raise ValueError(
            f"shares have {rows} rows but {len(layers)} layer labels were given; pass one per row"
        )
    widths = {int((~torch.isnan(row)).sum()) for row in shares} or {experts}  # each layer's experts
    even = 100 / min(widths) if len(widths) == 1 else None  # one even share when every layer has as many
    top = max(float(torch.nan_to_num(shares, nan=0).max()) * 100, 200 / min(widths))
    norm = TwoSlopeNorm(vmin=0, vcenter=even, vmax=top) if even else Normalize(vmin=0, vmax=top)
    fig = new_figure(
        figsize=(max(4.0, 2.0 + 0.38 * experts), max(2.0, 1.4 + 0.32 * rows)), layout="constrained"
    )
    ax = fig.subplots()
    image = ax.imshow(percent, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    for (row, expert), value in zip(((r, e) for r in range(rows) for e in range(experts)), percent.flat):
        if value == value:  # not NaN
            red, green, blue, _ = image.cmap(norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                expert, row, f"{value:.1f}", ha="center", va="center", fontsize=7, color="w" if dark else "k"
            )
    ax.set_xticks(range(experts), [str(e) for e in range(experts)], fontsize=7)
    ax.set_yticks(range(rows), list(layers), fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("expert", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    bar = fig.colorbar(image, ax=ax, label="share of routed tokens (%)", shrink=0.9)
    if even:
        bar.ax.axhline(even, color="k", linewidth=1.5)
    stated = f"even share 1/{min(widths)} = {even:.2f}%" if even else "even share: 1/E of each layer's E"
    ax.set_title(f"{title}\n{stated}" if title else stated, fontsize=9)
    return fig


class ExpertLoadLogger(Callback):
    """Every ``every_n_steps`` optimizer steps, draws each MoE layer's expert load since the last picture
    (:func:`plot_expert_load`) and logs it under ``train/moe_expert_load``: a ``WandbLogger`` through
    ``log_image``, TensorBoard through ``add_image``, a CSV logger as PNG files in ``<log_dir>/moe_expert_load/``.
    The last steps of a fit get a picture at its end.

    The task adds it on its own when the model has an MoE layer and the trainer a logger; its option
    ``expert_load_every`` sets ``every_n_steps`` (0 leaves it out).

    Args:
        every_n_steps: optimizer steps between pictures; None = 10 x the trainer's ``log_every_n_steps``.

    Raises:
        ValueError: ``every_n_steps`` below 1.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or every_n_steps < 1):
            raise ValueError(f"every_n_steps={every_n_steps!r} must be a whole number >= 1, or None")
        self.every_n_steps = every_n_steps
        self._drawn_at = 0  # the optimizer step of the last picture (or the fit's start)
        self.logged_steps: list[int] = []  # the steps pictures were logged at (for tests and curious users)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        take_expert_loads(pl_module)  # nothing counted before the fit (a forward pass in train mode) is drawn
        self._drawn_at = trainer.global_step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # at the start of the next step: the module's on_train_batch_end, after the callbacks', adds the loads
        step = trainer.global_step
        every = self.every_n_steps or PICTURES_PER_LOG_INTERVAL * trainer.log_every_n_steps
        if every and step > self._drawn_at and step % every == 0:
            self.log_picture(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > self._drawn_at:
            self.log_picture(trainer, pl_module)

    def log_picture(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take the loads counted since the last picture (every rank, so every rank starts again) and, on rank
        zero, draw and log them at the current step."""
        first, step = self._drawn_at + 1, trainer.global_step
        self._drawn_at = step
        loads = take_expert_loads(pl_module)
        if not trainer.is_global_zero or not loads:
            return
        labels, shares = expert_load_shares(loads)
        if not torch.nan_to_num(shares).any():  # nothing routed (a step skipped for a non-finite loss)
            return
        steps = f"step {step}" if first == step else f"steps {first}-{step}"
        fig = plot_expert_load(shares, layers=labels, title=f"expert load, {steps}")
        images = {KEY: [figure_to_array(fig)]}
        for logger in trainer.loggers:
            log_images(logger, images, step=step, folder="moe_expert_load", captions=[steps])
        self.logged_steps.append(step)
