"""Copy weights between swapformer modules and their torch.nn references."""

from __future__ import annotations

import torch
from torch import nn

from swapformer.nn import MultiHeadAttention


@torch.no_grad()
def copy_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """Load nn.MultiheadAttention's packed in-projection into separate q/k/v projections."""
    for proj, weight, bias in zip(
        (ours.q_proj, ours.k_proj, ours.v_proj), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)
    ):
        proj.weight.copy_(weight)
        proj.bias.copy_(bias)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    ours.out_proj.bias.copy_(ref.out_proj.bias)


@torch.no_grad()
def copy_norm(ours: nn.Module, ref: nn.LayerNorm) -> None:
    ours.weight.copy_(ref.weight)
    ours.bias.copy_(ref.bias)


@torch.no_grad()
def copy_ffn(ours: nn.Module, ref: nn.Module) -> None:
    for name in ("linear1", "linear2"):
        getattr(ours, name).weight.copy_(getattr(ref, name).weight)
        getattr(ours, name).bias.copy_(getattr(ref, name).bias)


def copy_encoder_layer(ours, ref: nn.TransformerEncoderLayer) -> None:
    copy_mha(ours.self_attention.sublayer, ref.self_attn)
    copy_norm(ours.self_attention.norm, ref.norm1)
    copy_ffn(ours.feed_forward.sublayer, ref)
    copy_norm(ours.feed_forward.norm, ref.norm2)


def copy_decoder_layer(ours, ref: nn.TransformerDecoderLayer) -> None:
    copy_mha(ours.self_attention.sublayer, ref.self_attn)
    copy_norm(ours.self_attention.norm, ref.norm1)
    copy_mha(ours.cross_attention.sublayer, ref.multihead_attn)
    copy_norm(ours.cross_attention.norm, ref.norm2)
    copy_ffn(ours.feed_forward.sublayer, ref)
    copy_norm(ours.feed_forward.norm, ref.norm3)
