"""EncoderDecoder: the original Transformer, for sequence-to-sequence tasks (translation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from swapformer.nn.blocks import TransformerStack
from swapformer.nn.embedding import TokenEmbedding
from swapformer.nn.masks import as_key_padding_mask, causal_self_attention_inputs, self_attention_mask

if TYPE_CHECKING:
    from swapformer.nn.cache import KVCache


class EncoderDecoder(nn.Module):
    """Encoder over the source, decoder over the target attending to it, final linear to the vocabulary.

    ::

        src ─▶ src embedding ─▶ [encoder layer × N] ─▶ memory ───────────────┐
                                  self-attention, FFN                        ▼
        tgt ─▶ tgt embedding ─▶ [decoder layer × M] ─▶ final norm? ─▶ lm_head ─▶ logits
                                  causal self-attention, cross-attention(memory), FFN

    Built by :func:`swapformer.build_seq2seq`.

    Shape:
        src_ids ``(N, S)``; tgt_ids ``(N, L)``; src_mask ``(N, S)`` and tgt_mask ``(N, L)``, True = real token;
        memory ``(N, S, D)``; logits ``(N, L, V)``.
    """

    def __init__(
        self,
        *,
        src_embedding: TokenEmbedding,
        tgt_embedding: TokenEmbedding,
        encoder: TransformerStack,
        decoder: TransformerStack,
        lm_head: nn.Linear,
    ) -> None:
        super().__init__()
        self.src_embedding = src_embedding
        self.tgt_embedding = tgt_embedding
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """The encoder output ("memory") ``(N, S, D)``."""
        positional = self.src_embedding.positional
        mask, _ = self_attention_mask(src_ids, src_mask, "src_mask", positional=positional, causal=False)
        return self.encoder(self.src_embedding(src_ids), attn_mask=mask, positional=positional)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        *,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Logits ``(N, L, V)`` for the target given the encoder output.

        Args:
            tgt_mask: ``(N, L)`` True = real target token; with a ``cache``, ``(N, cached + L)``.
            cache: a :class:`~swapformer.generation.KVCache`: the target tokens continue the cached ones, and the
                cross-attention keys and values of ``memory`` are projected once and kept.
        """
        source = as_key_padding_mask(src_mask, "src_mask", tuple(memory.shape[:2]))
        positional = self.tgt_embedding.positional
        mask, is_causal, offset = causal_self_attention_inputs(
            tgt_ids,
            tgt_mask,
            "tgt_mask",
            positional=positional,
            past_length=0 if cache is None else cache.length,
        )
        memory_mask = None if source is None else source[:, None, None, :]  # (N, 1, 1, S)
        x = self.decoder(
            self.tgt_embedding(tgt_ids, offset=offset),
            attn_mask=mask,
            is_causal=is_causal,
            positional=positional,
            offset=offset,
            memory=memory,
            memory_mask=memory_mask,
            cache=cache,
        )
        return self.lm_head(x)

    def forward(
        self, src_ids: Tensor, tgt_ids: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits ``(N, L, V)``: position i predicts target token i + 1."""
        return self.decode(tgt_ids, self.encode(src_ids, src_mask), src_mask=src_mask, tgt_mask=tgt_mask)

    def generate(self, input_ids: Tensor, src_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Decode a target for each source ``input_ids`` ``(N, S)``; see :func:`swapformer.generation.generate`.

        Returns:
            ``(N, 1 + T)``: ``decoder_start_token_id`` followed by up to ``max_new_tokens`` new ids.
        """
        from swapformer.generation import generate

        return generate(self, input_ids, src_mask, **kwargs)
