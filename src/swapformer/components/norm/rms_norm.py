"""`rmsnorm`: root-mean-square norm (Zhang & Sennrich, 2019), torch's ``nn.RMSNorm`` with a faster CPU inference
form that its decoding function shares."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapformer.components.functions import Function, Of


class RMSNorm(nn.RMSNorm):
    """``x / sqrt(mean(x^2) + eps) * gamma``: torch's ``nn.RMSNorm`` (same parameters, same state dict).

    A decoding step (one position per row, ``(..., 1, D)``) on the CPU where nothing needs a gradient runs as the
    layer norm of ``(x, -x)``: the pair has mean zero and x's mean square, so its layer norm is x's RMS norm, one
    broadcast multiply and torch's fused ``layer_norm`` (two kernels) where torch's CPU ``rms_norm`` is a
    composite of eight operators (about 10 against 5.6 us a call at D = 128, which a small model's step pays
    twice per layer: Llama-shape decoding 2.7x -> 3.2x Hugging Face's). It rounds otherwise, within a few float32
    ulps of ``rms_norm``, as a GEMM of one row may round otherwise than one of many; the forward pass and the
    decoding function (:meth:`function`) take the same form for the same input, so a decoding plan gives the
    modules' numbers. Longer inputs, training, other devices, another dtype than the weight's and ``eps=None``
    keep ``rms_norm``.

    Shape:
        x ``(..., D)`` -> ``(..., D)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        one = x.dim() > 1 and x.size(-2) == 1
        if (
            one
            and self._paired_applies(x)
            and not (torch.is_grad_enabled() and (x.requires_grad or self._trains()))
        ):
            return self._paired(x, self._pair_weight())
        return super().forward(x)

    def function(self, of: Of) -> Function | None:
        """The eval-mode forward as a function, what it looks up resolved once: the pair's weight, the signs
        (:mod:`swapformer.components.functions`)."""
        if type(self).forward is not RMSNorm.forward:
            return None
        fused = super().forward
        probe = torch.empty(0, dtype=torch.get_default_dtype() if self.weight is None else self.weight.dtype)
        if not self._paired_applies(probe):
            return fused
        weight, signs, shape, eps, dtype = (
            self._pair_weight(),
            _signs(probe.dtype),
            (2, *self.normalized_shape),
            self.eps,
            probe.dtype,
        )

        def rms_norm(x: Tensor) -> Tensor:
            if x.dtype != dtype or x.device.type != "cpu" or x.dim() < 2 or x.size(-2) != 1:
                return fused(x)
            return torch.layer_norm(x.unsqueeze(-2) * signs, shape, weight, None, eps).select(-2, 0)

        return rms_norm

    def _trains(self) -> bool:
        return self.weight is not None and self.weight.requires_grad

    def _paired_applies(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and self.eps is not None
            and len(self.normalized_shape) == 1
            and (self.weight is None or (x.dtype == self.weight.dtype and self.weight.device.type == "cpu"))
        )

    def _pair_weight(self) -> Tensor | None:
        """The weight for x and for -x, ``(2, D)`` (the second half of the output is dropped)."""
        return None if self.weight is None else self.weight.detach().expand(2, -1).contiguous()

    def _paired(self, x: Tensor, weight: Tensor | None) -> Tensor:
        (width,) = self.normalized_shape
        signs = _signs(x.dtype)  # (2, 1): x and -x, exactly
        return torch.layer_norm(x.unsqueeze(-2) * signs, (2, width), weight, None, self.eps).select(-2, 0)


class UnitOffsetRMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * (1 + w)``, computed in float32 (Gemma's norms): the weight is stored as its
    offset from 1, so it starts at zero and weight decay pulls the gain towards 1, not 0.

    Shape:
        x ``(..., D)`` -> ``(..., D)``, in x's dtype.
    """

    no_weight_decay = ("weight",)

    def __init__(self, d_model: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, unit_offset=True"


_SIGNS: dict[torch.dtype, Tensor] = {}


def _signs(dtype: torch.dtype) -> Tensor:
    """``[[1], [-1]]`` in ``dtype``, made once (a normal tensor, even when first asked under inference mode)."""
    if dtype not in _SIGNS:
        with torch.inference_mode(False):
            _SIGNS[dtype] = torch.tensor([[1.0], [-1.0]], dtype=dtype)
    return _SIGNS[dtype]
