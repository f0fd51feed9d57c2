"""`t5_relative`: T5's bucketed relative position bias (Raffel et al., 2020, "Exploring the Limits of Transfer
Learning with a Unified Text-to-Text Transformer", section 2.1)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from swapformer.components.positional.base import PositionalEncoding, heads_split
from swapformer.errors import ConfigError
from swapformer.registry import Capabilities


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """Bucket of each ``key - query`` distance: exact for small distances, logarithmic up to ``max_distance``,
    then one shared bucket (Mesh TensorFlow's function, as Hugging Face's ``T5Attention`` computes it).

    Bidirectional: half the buckets for keys after the query, half for keys before. Unidirectional: keys after
    the query all share bucket 0 (a causal mask hides them anyway) and every bucket serves the past.

    Shape:
        relative_position: any shape, integer; output: the same shape, values in ``[0, num_buckets)``.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp_min(0)
    max_exact = num_buckets // 2
    # log-spaced buckets between max_exact and max_distance; the clamp keeps log() finite where distance is small
    large = (
        max_exact
        + (
            torch.log(distance.clamp_min(1).float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = large.clamp_max(num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class T5RelativePositionBias(PositionalEncoding):
    """A learned scalar per head and distance bucket, added to the attention scores::

        score_ij = q_i . k_j / sqrt(E) + b[h, bucket(j - i)]

    Computed once per forward pass and shared by every layer of the stack, as in T5 (each stack has its own
    table). T5 adds it only to self-attention; so does swapformer.

    Direction: an encoder's buckets are bidirectional, a decoder's (and a causal LM's) unidirectional, as in T5.
    The builder sets ``bidirectional`` from where the member sits (``True`` for an encoder, ``False`` for a causal
    stack); an explicit ``{name: t5_relative, bidirectional: ...}`` wins. Built by hand, it defaults to ``True``.

    The bias is a float score mask, so the kernel must add one (``math``, ``sdpa``, ``sliding_window``; not
    ``linear``: refused at config time, see :mod:`swapformer.compat`).

    Args:
        num_heads: attention heads H.
        num_buckets: distance buckets (32 in T5).
        max_distance: distances from here on share the last bucket (128 in T5).
        bidirectional: separate buckets for keys after the query.

    Raises:
        ConfigError: fewer than 4 buckets (bidirectional) or 2 (unidirectional), or max_distance not above the
            exact range.

    Shape:
        bias ``(H, L, S)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(adds_score_bias=True, relative=True)

    def tensor_parallel_plan(self, *, size: int) -> dict[str, str]:
        """Under tensor parallelism the table is split column-wise, one block of heads a rank (the block W_q's
        column-wise split gives it): ``bias`` is ``(H / size, L, S)`` and each rank learns its heads' columns.

        Raises:
            ConfigError: ``size`` does not divide H.
        """
        return {"table": "colwise"} if heads_split(self.num_heads, size, "t5_relative") > 1 else {}

    def __init__(
        self, *, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True
    ) -> None:
        super().__init__()
        exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
        if exact < 1 or max_distance <= exact:
            raise ConfigError(
                f"t5_relative needs num_buckets >= {4 if bidirectional else 2} and max_distance above the exact "
                f"range, got num_buckets={num_buckets}, max_distance={max_distance}; T5 uses 32 and 128"
            )
        self.num_heads, self.num_buckets, self.max_distance = num_heads, num_buckets, max_distance
        self.bidirectional = bidirectional
        self.table = nn.Embedding(num_buckets, num_heads)

    def bias(
        self, length: int, source_length: int, *, offset: int = 0, device: torch.device | None = None
    ) -> Tensor:
        device = self.table.weight.device if device is None else device
        query = torch.arange(offset, offset + length, device=device)[:, None]  # (L, 1)
        key = torch.arange(source_length, device=device)[None, :]  # (1, S)
        bucket = relative_position_bucket(
            key - query,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )  # (L, S)
        return self.table(bucket).permute(2, 0, 1)  # (H, L, S)

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
            f"bidirectional={self.bidirectional}"
        )
