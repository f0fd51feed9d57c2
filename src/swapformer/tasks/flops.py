"""FLOPs of one training step, for Lightning's ``ThroughputMonitor`` (FLOPs/s and MFU on GPUs).

Lightning 2.6.6's ``ThroughputMonitor`` reads ``pl_module.flops_per_batch`` after every training batch (it checks
``hasattr`` once and warns when it is missing) and divides by the step time. The count here is measured, not
estimated: the task's model is rebuilt on the meta device (no memory, no arithmetic) and one forward and backward
pass of the batch's shape runs under ``torch.utils.flop_counter.FlopCounterMode``
(:func:`lightning.fabric.utilities.throughput.measure_flops`). So any swapped component is counted as it is
written. :func:`analytic_flops` is the textbook count (PaLM's ``6 N + 12 layers D L`` per token), which the tests
check the measurement against.

A measurement takes about half a second (the meta device skips the arithmetic, not the dispatch), too slow to
repeat for every new shape of a padded seq2seq batch. :class:`TrainingFlops` therefore measures the first shape
exactly and, when a second shape appears, fits the count as what it is for matrix-product models, ``N`` times a
polynomial of degree two in the lengths, on a few measured shapes from 1 to ``max_seq_len``; the fit must reproduce
every measurement, or each shape is measured on its own (a plug-in whose cost is no such polynomial).

Only matrix products are counted (as FlopCounterMode does): norms, activations, softmax and the loss are left
out; they are a few percent of a Transformer's work.

A mixture of experts counts its active FLOPs: on the meta device no token has a route, so the ``moe`` member
spreads the (token, slot) pairs evenly over its experts (:func:`swapformer.components.ffn.moe.even_split`); a
dropless MoE runs each token through ``top_k`` experts whatever the routing, so the count is the router, ``top_k``
experts, the shared ones and the weighted sum, per token. :func:`analytic_flops` counts dense FFNs only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch import nn

from swapformer.config import ModelConfig
from swapformer.registry import kind
from swapformer.training import distributed

Shapes = tuple[tuple[int, ...], ...]
"""The shapes of the id tensors a model's forward takes, e.g. ``((N, L),)`` or ``((N, S), (N, L))``."""


def measured_flops(
    config: ModelConfig, shapes: Shapes, forward: Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
) -> int:
    """FLOPs of a forward and backward pass of a model built from ``config`` on inputs of ``shapes``, with its
    parameters on the meta device (no memory, no arithmetic)."""
    return TrainingFlops(config, forward).measure(shapes)


class TrainingFlops:
    """FLOPs of a training step for any batch shape of one model (see the module's docstring).

    Args:
        config: the model's configuration (a meta-device copy is built from it).
        forward: the task's training forward, ``forward(model, id_tensors)``.
    """

    def __init__(
        self, config: ModelConfig, forward: Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
    ) -> None:
        self.config, self.forward = config, forward
        self._model: nn.Module | None = None
        self._exact: dict[Shapes, int] = {}
        self._polynomial: Callable[[tuple[int, ...]], float] | None = None
        self._fitted = False

    def __call__(self, shapes: Shapes) -> int:
        if shapes not in self._exact and self._exact and not self._fitted:
            self._fitted = True
            self._polynomial = self._fit(len(shapes))
        if shapes in self._exact or self._polynomial is None:
            if shapes not in self._exact:
                self._exact[shapes] = self.measure(shapes)
            return self._exact[shapes]
        return round(shapes[0][0] * self._polynomial(tuple(shape[1] for shape in shapes)))

    def measure(self, shapes: Shapes) -> int:
        """The FlopCounterMode count of one forward and backward pass of inputs of ``shapes``."""
        with torch.inference_mode(False), torch.enable_grad():  # ThroughputMonitor asks in inference mode
            if self._model is None:
                self._model = _meta_model(self.config)
            model = self._model
            inputs = [torch.zeros(shape, dtype=torch.long, device="meta") for shape in shapes]
            return measure_flops(model, lambda: self.forward(model, inputs), loss_fn=torch.Tensor.sum)

    def _fit(self, num_inputs: int) -> Callable[[tuple[int, ...]], float] | None:
        """``P(lengths)`` with ``FLOPs = N x P``, from one-sequence measurements; None if it misses one."""
        # lengths from 1 to max_seq_len, so a cost that changes regime in between (a window) cannot fit
        unit = max(1, self.config.max_seq_len // 4)
        steps = [1, unit, 2 * unit, 3 * unit, 4 * unit]
        if num_inputs == 1:
            points = [(length,) for length in steps]
        else:
            u = unit
            points = [
                (1, 1),
                (1, 4 * u),
                (4 * u, 1),
                (u, u),
                (2 * u, u),
                (u, 2 * u),
                (2 * u, 3 * u),
                (3 * u, 3 * u),
            ]

        def monomials(x: Sequence[float]) -> list[float]:
            x = [v / unit for v in x]  # scaled, for a well-conditioned solve
            return [1.0, x[0], x[0] ** 2] if len(x) == 1 else [1.0, *x, x[0] ** 2, x[1] ** 2, x[0] * x[1]]

        known = [
            (shapes[0][0], tuple(shape[1] for shape in shapes), value)
            for shapes, value in self._exact.items()
        ]
        known += [(1, point, self.measure(tuple((1, length) for length in point))) for point in points]
        rows = [monomials(lengths) for _, lengths, _ in known]
        measured = [value / n for n, _, value in known]
        a, b = torch.tensor(rows, dtype=torch.float64), torch.tensor(measured, dtype=torch.float64)
        coefficients = torch.linalg.lstsq(a, b.unsqueeze(1)).solution.squeeze(1)
        if not torch.allclose(a @ coefficients, b, rtol=1e-9, atol=1.0):
            return None
        weights = coefficients.tolist()
        return lambda lengths: sum(w * m for w, m in zip(weights, monomials(lengths)))


def analytic_flops(config: ModelConfig, shapes: Shapes) -> int:
    """The standard training count: 3 x (2 x matmul parameters x tokens + attention scores and mixing).

    ``shapes`` as for :func:`measured_flops`: a decoder-only or encoder-only model takes ``((N, L),)``, an
    encoder-decoder ``((N, S), (N, L))``. Every weight matrix in the blocks and the output projection does
    ``2 x rows x columns`` FLOPs per token forward (embedding lookups do none); self-attention adds
    ``4 x L x D`` per token and layer (scores and mixing, causal masking not subtracted, as kernels
    compute it), cross-attention ``4 x S x D`` (its key and value projections run on the S source tokens); backward is twice forward. Assumes ``num_heads x head_dim = D``,
    a two- or three-matrix FFN of width ``d_ff``, and an output projection onto the vocabulary.
    """
    model = _meta_model(config)
    matrix_params = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m.weight is not None
    )
    heads = config.num_heads
    d = heads * (config.head_dim or config.d_model // heads)  # the width attention scores are taken over
    if len(shapes) == 1:
        (n, length), source = shapes[0], None
    else:
        (n, source), (_, length) = shapes
    decoder_layers = config.num_layers if source is None else config.decoder_layers
    # split the matrices between the encoder (source tokens) and the decoder (target tokens)
    if source is None:
        forward = 2 * matrix_params * n * length + 4 * decoder_layers * d * length * n * length
    else:
        encoder_params = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, nn.Linear))
        encoder_layers = config.encoder_layers
        # cross-attention's key and value projections read the encoder's output: source tokens
        head_dim = config.head_dim or config.d_model // heads
        cross_kv = decoder_layers * 2 * config.d_model * (config.num_kv_heads or heads) * head_dim
        forward = (
            2 * (encoder_params + cross_kv) * n * source
            + 2 * (matrix_params - encoder_params - cross_kv) * n * length
            + 4 * encoder_layers * d * source * n * source  # encoder self-attention
            + 4 * decoder_layers * d * length * n * length  # decoder self-attention
            + 4 * decoder_layers * d * source * n * length  # cross-attention
        )
    return 3 * forward


def _meta_model(config: ModelConfig) -> nn.Module:
    with distributed.parameters_on_meta():
        model = kind(config.kind).build(config)
    return model.to("meta")  # the buffers too (RoPE tables, masks), so every operation stays on meta
