"""Attention maps: record the weights each attention layer computes, draw them, log them at validation.

The layers compute their weights only when asked (``need_weights=True``; fused kernels never materialize
them), so :func:`record_attention` asks through forward hooks, without touching the model's code, and hands
each caller back exactly what it asked for. :class:`AttentionMapLogger` is the opt-in callback that draws
the maps of a few validation examples and logs them as images.

Example:
    >>> import torch
    >>> from swapformer import build_seq2seq
    >>> model = build_seq2seq({"vocab_size": 20, "d_model": 16, "num_heads": 2, "num_layers": 1, "d_ff": 32})
    >>> with record_attention(model, include=lambda name: "cross_attention" in name) as maps:
    ...     logits = model(torch.randint(3, 20, (1, 7)), torch.randint(3, 20, (1, 5)))
    >>> {name: tuple(w.shape) for name, (w,) in maps.items()}  # (N, H, L, S)
    {'decoder.layers.0.cross_attention.sublayer': (1, 2, 5, 7)}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from swapformer.nn import MultiHeadAttention
from swapformer.training.images import figure_to_array, log_images, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Layers = Literal["cross", "self", "all"]


@contextlib.contextmanager
def record_attention(
    model: nn.Module, *, include: Callable[[str], bool] | None = None
) -> Iterator[dict[str, list[Tensor]]]:
    """While active, every :class:`~swapformer.MultiHeadAttention` in ``model`` keeps its attention weights.

    Yields a dict that fills up as the model runs: module name -> one ``(N, H, L, S)`` tensor (detached) per
    call. Callers of the layers get the output they asked for; kernels that compute no weights (a plug-in
    linear attention, say) leave no entry.

    Args:
        model: any module containing attention layers.
        include: keep only layers whose name (``decoder.layers.0.cross_attention.sublayer``) passes.
    """
    maps: dict[str, list[Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention) and (include is None or include(name)):
            handles += _hook(module, name, maps)
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def _hook(module: nn.Module, name: str, maps: dict[str, list[Tensor]]) -> list[Any]:
    caller_asked = [False]  # whether the current call itself passed need_weights=True

    def ask_for_weights(_module, args, kwargs):
        caller_asked[0] = bool(kwargs.get("need_weights", False))
        return args, {**kwargs, "need_weights": True}

    def keep_weights(_module, _args, _kwargs, output):
        out, weights = output
        if weights is not None:
            maps.setdefault(name, []).append(weights.detach())
        return output if caller_asked[0] else out

    return [
        module.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
        module.register_forward_hook(keep_weights, with_kwargs=True),
    ]


def plot_attention(
    weights: Tensor,
    *,
    keys: Sequence[str],
    queries: Sequence[str],
    title: str = "",
    head_titles: Sequence[str] | None = None,
) -> Figure:
    """Heatmaps of attention weights, one panel per head, keys along x and queries along y.

    Needs matplotlib (``pip install matplotlib``, part of ``swapformer[docs]``). Draws with the object API
    (no pyplot), so it is safe in callbacks and threads.

    Args:
        weights: ``(H, L, S)`` or ``(L, S)``: each row a query's distribution over the keys.
        keys: S labels (source tokens for cross-attention).
        queries: L labels.
        title: figure title.
        head_titles: H panel titles; default ``head 0`` ...

    Returns:
        A ``matplotlib.figure.Figure`` (save it with ``fig.savefig(path)``).
    """
    weights = weights.detach().float().cpu()
    if weights.dim() == 2:
        weights = weights[None]
    heads, length, source_length = weights.shape
    if (length, source_length) != (len(queries), len(keys)):
        raise ValueError(
            f"weights have {length} queries x {source_length} keys but {len(queries)} query labels and "
            f"{len(keys)} key labels were given; pass one label per token"
        )
    head_titles = list(head_titles) if head_titles is not None else [f"head {h}" for h in range(heads)]
    cell = 0.22  # inches per token, so labels stay legible at any length
    width = max(2.5, 0.8 + cell * source_length)
    fig = new_figure(figsize=(width * heads, max(2.2, 1.2 + cell * length)), layout="constrained")
    axes = fig.subplots(1, heads, squeeze=False)[0]
    for ax, panel, head_title in zip(axes, weights, head_titles):
        image = ax.imshow(panel.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_xticks(range(source_length), [_visible(k) for k in keys], fontsize=8, family="monospace")
        ax.set_yticks(range(length), [_visible(q) for q in queries], fontsize=8, family="monospace")
        ax.tick_params(length=0)
        ax.set_title(head_title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    return fig


def _visible(token: str) -> str:
    return {" ": "␣", "\n": "↵", "\t": "⇥"}.get(token, token)


class AttentionMapLogger(Callback):
    """Opt-in: after each validation, draws the attention maps of a few validation examples and logs them.

    Seq2seq models show cross-attention by default (which source tokens each target token reads: on the
    dates task, year digits read the year, month digits the month name); causal LMs show self-attention.
    Rows are queries (for seq2seq, labelled with the target token each position writes), columns keys.
    A ``WandbLogger`` receives them through ``log_image`` under ``attention/<layer>``, a TensorBoard logger
    through ``add_image``; any other logger with a ``log_dir`` gets PNG files in
    ``<log_dir>/attention_maps/``.

    Add it to a recipe::

        trainer:
          callbacks:
            - class_path: swapformer.training.attention_maps.AttentionMapLogger
              init_args:
                num_examples: 2

    Args:
        num_examples: examples drawn from the first validation batch.
        layers: ``cross`` (seq2seq default), ``self``, or ``all`` attention layers; None = the task's choice
            (``cross`` for a seq2seq model, ``self`` otherwise).
        max_tokens: longest sequence drawn (causal LM inputs are cut to it).
        every_n_validations: log on every n-th validation only.

    Raises:
        ValueError: ``num_examples`` below 1 or an unknown ``layers``.
    """

    def __init__(
        self,
        num_examples: int = 1,
        layers: Layers | None = None,
        max_tokens: int = 48,
        every_n_validations: int = 1,
    ) -> None:
        if num_examples < 1:
            raise ValueError(f"num_examples={num_examples} must be at least 1")
        if layers not in (None, "cross", "self", "all"):
            raise ValueError(f"layers={layers!r} is unknown; choose 'cross', 'self' or 'all'")
        self.num_examples = num_examples
        self.layers = layers
        self.max_tokens = max_tokens
        self.every_n_validations = every_n_validations
        self._batch: dict[str, Tensor] | None = None
        self._validations = 0
        self.logged: list[str] = []  # keys logged at the last validation (for tests and curious users)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            self._batch = {k: v.detach() for k, v in batch.items() if isinstance(v, Tensor)}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._batch is None:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        # every rank runs the forward pass (sharded models need all of them); rank zero logs
        images = self.draw(pl_module, self._batch)
        self._batch = None
        if trainer.is_global_zero:
            self.logged = sorted(images)
            for logger in trainer.loggers:
                log_images(logger, images, step=trainer.global_step, folder="attention_maps")

    @torch.no_grad()
    def draw(self, pl_module: pl.LightningModule, batch: dict[str, Tensor]) -> dict[str, list[Any]]:
        """``{"attention/<layer>": [image per example]}`` for the first ``num_examples`` examples of
        ``batch``, images as ``(H, W, 3)`` uint8 arrays."""
        batch = {k: v[: self.num_examples] for k, v in batch.items() if isinstance(v, Tensor)}
        inputs = pl_module.attention_inputs(batch, self.max_tokens)  # the task knows its batch
        # "cross" keeps the modules named *cross_attention*, "self" those named *self_attention*
        layers = self.layers or inputs.layers
        include = None if layers == "all" else lambda name: f"{layers}_attention" in name
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            with record_attention(model, include=include) as maps:
                inputs.run()
        finally:
            model.train(was_training)
        keys, queries = inputs.keys, inputs.queries
        pad = getattr(pl_module, "pad_id", -100)
        tokenizer = getattr(pl_module, "tokenizer", None)
        images: dict[str, list[Any]] = {}
        for name, (weights, *_) in maps.items():
            key = f"attention/{name.removesuffix('.sublayer')}"
            for i in range(weights.size(0)):
                source_length = _real_length(keys[i], pad)
                length = _real_length(queries[i], pad)
                fig = plot_attention(
                    weights[i, :, :length, :source_length],
                    keys=_labels(keys[i, :source_length], tokenizer),
                    queries=_labels(queries[i, :length], tokenizer),
                    title=f"{key} (example {i})",
                )
                images.setdefault(key, []).append(figure_to_array(fig))
        return images


def _real_length(ids: Tensor, pad: int) -> int:
    real = (ids != pad).nonzero()
    return int(real.max()) + 1 if len(real) else ids.numel()


def _labels(ids: Tensor, tokenizer: Any) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids.tolist()]
    return [tokenizer.decode([i], skip_special=False) for i in ids.tolist()]
