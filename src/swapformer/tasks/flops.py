"""FLOPs of one training step, for Lightning's ``ThroughputMonitor`` (FLOPs/s and MFU on GPUs).

Lightning 2.6.6's ``ThroughputMonitor`` reads ``pl_module.flops_per_batch`` after every training batch (it checks
``hasattr`` once and warns when it is missing) and divides by the step time. The count here is measured, not
estimated: the task's model is rebuilt on the meta device (no memory, no arithmetic) and one forward and backward
pass of the batch's shape runs under ``torch.utils.flop_counter.FlopCounterMode``
(:func:`lightning.fabric.utilities.throughput.measure_flops`). So any swapped component is counted as it is
written. :func:`analytic_flops` is the textbook count (PaLM's ``6 N + 12 layers D L`` per token), which the tests
check the measurement against.

Only matrix products are counted (as FlopCounterMode does): norms, activations, softmax and the loss are left
out; they are a few percent of a Transformer's work.
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
    """FLOPs of a forward and backward pass of a model built from ``config`` on inputs of ``shapes``.

    The model is built with its parameters on the meta device, so this costs no memory and little time (a
    few milliseconds for a small model; it is computed once per shape).
    """
    # ThroughputMonitor asks from inside torch.inference_mode(): a backward pass needs autograd back on
    with torch.inference_mode(False), torch.enable_grad():
        model = _meta_model(config)
        inputs = [torch.zeros(shape, dtype=torch.long, device="meta") for shape in shapes]
        return measure_flops(model, lambda: forward(model, inputs), loss_fn=torch.Tensor.sum)


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
    decoder_layers = config.num_layers if source is None else config.num_decoder_layers or config.num_layers
    # split the matrices between the encoder (source tokens) and the decoder (target tokens)
    if source is None:
        forward = 2 * matrix_params * n * length + 4 * decoder_layers * d * length * n * length
    else:
        encoder_params = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, nn.Linear))
        encoder_layers = config.num_encoder_layers or config.num_layers
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
