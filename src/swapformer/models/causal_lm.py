"""DecoderOnly: a causal language model (GPT, Llama)."""

from __future__ import annotations

from torch import Tensor, nn

from swapformer.blocks import TransformerStack
from swapformer.masks import self_attention_mask
from swapformer.models.embedding import TokenEmbedding


class DecoderOnly(nn.Module):
    """Embedding, a stack of causal self-attention layers, and the final linear layer to the vocabulary.

    ::

        ids ─▶ embedding (+ positions) ─▶ [layer × N] ─▶ final norm? ─▶ lm_head ─▶ logits
                                              causal self-attention, feed-forward

    Built by :func:`swapformer.build_causal_lm`. ``softmax(logits)`` is the next-token distribution; the
    softmax itself lives in the loss (cross-entropy) and in decoding.

    Args:
        embedding: token embedding (holds the positional member).
        decoder: stack of layers without cross-attention.
        lm_head: ``Linear(D, V)``; tied to the embedding when ``tie_embeddings``.

    Shape:
        input_ids ``(N, L)``; attention_mask ``(N, L)``, True = real token; logits ``(N, L, V)``.
    """

    def __init__(self, *, embedding: TokenEmbedding, decoder: TransformerStack, lm_head: nn.Linear) -> None:
        super().__init__()
        self.embedding = embedding
        self.decoder = decoder
        self.lm_head = lm_head

    @property
    def positional(self):
        return self.embedding.positional

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Output of the last layer (after the final norm), before the LM head: ``(N, L, D)``."""
        mask, is_causal = self_attention_mask(
            input_ids, attention_mask, "attention_mask", positional=self.positional, causal=True
        )
        x = self.embedding(input_ids)
        return self.decoder(x, attn_mask=mask, is_causal=is_causal, positional=self.positional)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits ``(N, L, V)`` for every position."""
        return self.lm_head(self.hidden_states(input_ids, attention_mask))
