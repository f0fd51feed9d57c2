"""The LM loss without the whole logits: the head and the cross-entropy run a chunk of tokens at a time.

::

    hidden (N, L, D) ─▶ drop ignored tokens ─▶ (K, D) ─▶ for each chunk of C tokens:
                                                   logits = cap·tanh((h Wᵀ + b) / cap)     (C, V), fp32
                                                   loss  += (1 - ε)·NLL + ε·mean_v(-log p)
                                                   ∂logits = softmax - (1 - ε)·onehot - ε / V
                                                   ∂h, ∂W, ∂b from ∂logits            (then the chunk is freed)

The full path holds ``(N·L, V)`` logits, their log-softmax and their gradient at once: at a 128k vocabulary
those outweigh a small model. Here one chunk of logits lives at a time, the gradient of each chunk is taken
while its logits are at hand (Liger's fused linear cross-entropy does the same on GPUs), and the backward pass
only scales the gradients kept: the head's matmuls are done once, as in the full path, not recomputed.
Ignored tokens (padding, the unmasked tokens of masked LM) never reach the head.

``loss_impl`` picks who computes it: ``torch`` (this module), or Liger-Kernel's fused linear cross-entropy
(``liger``) or Apple's Cut Cross-Entropy (``cut_cross_entropy``) where they are installed and the device is a
CUDA GPU.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from swapformer.components.softcap import soft_cap
from swapformer.errors import ConfigError, did_you_mean

LOSS_IMPLS = {"torch": None, "liger": "liger-kernel", "cut_cross_entropy": "cut-cross-entropy"}
"""The values of ``loss_impl`` and the pip package each needs (None: none beyond torch)."""
_MODULES = {"liger": "liger_kernel", "cut_cross_entropy": "cut_cross_entropy"}
CHUNK_LOGITS = 2**25
"""Logits per chunk when ``loss_chunk`` is None: 128 MiB of fp32 (256 tokens at a 128k vocabulary)."""


def check_loss_options(loss_chunk: object, loss_impl: object) -> list[str]:
    """The problems of ``loss_chunk`` and ``loss_impl``, one line each (none: they are fine)."""
    problems = []
    if loss_chunk is not None and (
        isinstance(loss_chunk, bool) or not isinstance(loss_chunk, int) or loss_chunk < 0
    ):
        problems.append(
            f"loss_chunk={loss_chunk!r} must be a whole number >= 0: tokens per chunk of the LM loss, 0 for the "
            "full logits, or null to size chunks from the vocabulary"
        )
    if loss_impl not in LOSS_IMPLS:
        problems.append(
            f"loss_impl={loss_impl!r} is unknown{did_you_mean(str(loss_impl), LOSS_IMPLS)}; choose one of "
            f"{', '.join(LOSS_IMPLS)}"
        )
    elif LOSS_IMPLS[loss_impl] is not None and importlib.util.find_spec(_MODULES[loss_impl]) is None:
        problems.append(
            f"loss_impl={loss_impl!r} needs the {LOSS_IMPLS[loss_impl]} package, which is not installed: "
            f"pip install {LOSS_IMPLS[loss_impl]}, or use loss_impl: torch"
        )
    return problems


def check_loss_device(loss_impl: str, device: torch.device) -> None:
    """A one-line ConfigError where ``loss_impl`` cannot run on ``device`` (the fused kernels are Triton's)."""
    if loss_impl != "torch" and device.type != "cuda":
        raise ConfigError(
            f"loss_impl={loss_impl!r} runs on CUDA GPUs only and this run is on {device.type}: use loss_impl: torch"
        )


def chunk_tokens(loss_chunk: int | None, vocab_size: int) -> int:
    """Tokens per chunk: ``loss_chunk``, or (None) as many as make :data:`CHUNK_LOGITS` logits."""
    return max(1, CHUNK_LOGITS // vocab_size) if loss_chunk is None else loss_chunk


class LMLoss(NamedTuple):
    """What the loss of a step gives the metrics.

    Attributes:
        loss: mean cross-entropy (label-smoothed) over the counted tokens; what the gradient is taken of.
        nll: mean negative log-likelihood of the counted tokens, detached (perplexity).
        count: counted tokens, a 0-d tensor.
        predictions: the argmax of the logits, None where not asked for.
        labels: the labels ``predictions`` are scored against (accuracy ignores the ignored ones).
    """

    loss: Tensor
    nll: Tensor
    count: Tensor
    predictions: Tensor | None
    labels: Tensor


def lm_loss(
    hidden: Tensor,
    labels: Tensor,
    *,
    weight: Tensor,
    bias: Tensor | None = None,
    softcap: float | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    chunk: int = 0,
    impl: str = "torch",
    predictions: bool = False,
) -> LMLoss:
    """Cross-entropy of the LM head ``soft_cap(hidden @ weight.T + bias, softcap)`` against ``labels``.

    Args:
        hidden: what the head reads (the last layer's output after the final norm).
        labels: target ids; ``ignore_index`` where nothing is asked.
        weight, bias: the head's (tied or not); ``softcap``: the model's ``logit_softcap``.
        chunk: tokens per chunk; 0 = the full path (the whole logits, as :func:`F.cross_entropy` sees them).
        impl: ``torch``, ``liger`` or ``cut_cross_entropy`` (see the module's docstring).
        predictions: also return the argmax of each counted token's logits (for accuracy).

    Shape:
        hidden ``(N, L, D)``; labels ``(N, L)``; weight ``(V, D)``; bias ``(V,)``. Predictions and labels of the
        result: ``(N·L,)`` on the full path, ``(K,)`` (the K counted tokens) otherwise.
    """
    flat_hidden, flat_labels = hidden.reshape(-1, hidden.size(-1)), labels.reshape(-1)
    if chunk == 0 and impl == "torch":
        return _full(
            flat_hidden, flat_labels, weight, bias, softcap, ignore_index, label_smoothing, predictions
        )
    kept = flat_labels != ignore_index  # the head never sees the rest
    flat_hidden, flat_labels = flat_hidden[kept], flat_labels[kept]  # (K, D), (K,)
    count = kept.sum()
    if impl != "torch":
        loss = _fused(impl, flat_hidden, flat_labels, weight, bias, softcap, label_smoothing)
        if not (predictions or label_smoothing):
            return LMLoss(loss, loss.detach(), count, None, flat_labels)
        with torch.no_grad():  # the metrics, a chunk at a time, from the same formulas as the torch path
            _, nll, argmax = _ChunkedLinearCrossEntropy.apply(
                flat_hidden, weight, bias, flat_labels, softcap, 0.0, chunk or 4096, predictions, False
            )
        return LMLoss(loss, nll if label_smoothing else loss.detach(), count, argmax, flat_labels)
    track = torch.is_grad_enabled()
    loss, nll, argmax = _ChunkedLinearCrossEntropy.apply(
        flat_hidden, weight, bias, flat_labels, softcap, label_smoothing, chunk, predictions, track
    )
    return LMLoss(loss, nll, count, argmax, flat_labels)


def _full(
    hidden: Tensor,
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    softcap: float | None,
    ignore_index: int,
    smoothing: float,
    predictions: bool,
) -> LMLoss:
    """The whole ``(N·L, V)`` logits at once: ``loss_chunk: 0``."""
    logits = soft_cap(F.linear(hidden, weight, bias), softcap)
    loss = F.cross_entropy(logits, labels, ignore_index=ignore_index, label_smoothing=smoothing)
    if smoothing:
        with torch.no_grad():
            nll = F.cross_entropy(logits, labels, ignore_index=ignore_index)
    else:
        nll = loss.detach()
    argmax = logits.detach().argmax(dim=-1) if predictions else None
    return LMLoss(loss, nll, (labels != ignore_index).sum(), argmax, labels)


def _fused(
    impl: str,
    hidden: Tensor,
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    softcap: float | None,
    smoothing: float,
) -> Tensor:
    """The mean loss from an installed fused kernel (the ignored tokens are already dropped)."""
    check_loss_device(impl, hidden.device)
    if impl == "liger":
        module = importlib.import_module("liger_kernel.transformers")
        loss_fn = module.LigerFusedLinearCrossEntropyLoss(label_smoothing=smoothing, softcap=softcap)
        return loss_fn(weight, hidden, labels, bias)
    cut = importlib.import_module("cut_cross_entropy")
    extra = {"label_smoothing": smoothing} if smoothing else {}  # only recent versions take it
    return cut.linear_cross_entropy(hidden, weight, labels, bias=bias, softcap=softcap, **extra)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``soft_cap(hidden @ weight.T + bias)``, its gradients taken chunk by chunk in
    forward (while each chunk's logits exist) and only scaled in backward.

    Shape:
        hidden ``(K, D)``; weight ``(V, D)``; bias ``(V,)``; labels ``(K,)``, none ignored. Returns the mean
        loss and mean NLL (0-d) and the argmax ``(K,)`` (None unless asked for).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        labels: Tensor,
        softcap: float | None,
        smoothing: float,
        chunk: int,
        predictions: bool,
        track: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        count, vocab = labels.numel(), weight.size(0)
        # needs_input_grad is set under no_grad too: ``track`` is the caller's grad mode
        wants = [track and needed for needed in ctx.needs_input_grad[:3]]
        exact = torch.promote_types(weight.dtype, torch.float32)  # softmax and sums: fp32 at least
        grad_hidden = torch.empty_like(hidden) if wants[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=exact, device=weight.device) if wants[1] else None
        grad_bias = torch.zeros(vocab, dtype=exact, device=weight.device) if wants[2] else None
        loss_sum = torch.zeros((), dtype=exact, device=hidden.device)
        nll_sum = torch.zeros((), dtype=exact, device=hidden.device)
        argmax = torch.empty(count, dtype=torch.long, device=hidden.device) if predictions else None
        for start in range(0, count, chunk):
            h, y = hidden[start : start + chunk], labels[start : start + chunk]  # (C, D), (C,)
            z = F.linear(h, weight, bias)  # (C, V), the compute dtype (autocast's)
            compute_dtype = z.dtype
            capped = None if softcap is None else torch.tanh(z.to(exact) / softcap)
            logits = z.to(exact) if capped is None else capped * softcap  # (C, V)
            del z
            target = logits.gather(1, y[:, None])[:, 0]  # (C,)
            mean = logits.mean(dim=-1) if smoothing else None
            if predictions:
                argmax[start : start + chunk] = logits.argmax(dim=-1)
            # log-sum-exp with the exponentials made in place: they become the softmax the gradient needs
            top = logits.amax(dim=-1, keepdim=True)  # (C, 1)
            exp = logits.sub_(top).exp_()  # (C, V); the logits are done with
            total = exp.sum(dim=-1, keepdim=True)
            lse = (top + total.log())[:, 0]
            nll = lse - target
            nll_sum += nll.sum()
            if smoothing:  # (1 - ε)·NLL + ε·mean over the vocabulary of -log p
                loss_sum += ((1 - smoothing) * nll + smoothing * (lse - mean)).sum()
            else:
                loss_sum += nll.sum()
            if not any(wants):
                continue
            # K · d(mean loss)/d logits = softmax - (1 - ε)·onehot - ε/V, then the cap's 1 - tanh²; the 1/K
            # is applied once, in backward
            grad = exp.div_(total)
            grad[torch.arange(y.numel(), device=y.device), y] -= 1 - smoothing
            if smoothing:
                grad -= smoothing / vocab
            if capped is not None:
                grad *= capped.square_().neg_().add_(1)
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0)
            grad = grad.to(compute_dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = grad @ weight.to(compute_dtype)
            if grad_weight is not None:
                grad_weight.addmm_(grad.t().to(exact), h.to(exact))
        ctx.count = count
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        nll_mean = nll_sum / count
        ctx.mark_non_differentiable(*(t for t in (nll_mean, argmax) if t is not None))
        return loss_sum / count, nll_mean, argmax

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor, *unused: Tensor | None
    ) -> tuple:
        if getattr(ctx, "used", False):
            raise RuntimeError(
                "the chunked LM loss takes one backward per forward (it scales its gradients in place): set "
                "loss_chunk: 0 to backward through the same loss twice"
            )
        ctx.used = True
        grads = [
            None if grad is None else grad.mul_(grad_loss.to(grad.dtype) / ctx.count).to(dtype)
            for grad, dtype in zip(ctx.saved_tensors, ctx.dtypes)
        ]
        return (*grads, None, None, None, None, None, None)
