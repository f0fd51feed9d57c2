"""DecoderOnly: a causal language model (GPT, Llama)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from swapformer.nn.blocks import TransformerStack
from swapformer.nn.embedding import TokenEmbedding
from swapformer.nn.masks import causal_self_attention_inputs

if TYPE_CHECKING:
    from swapformer.nn.cache import KVCache


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

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, *, cache: KVCache | None = None
    ) -> Tensor:
        """Output of the last layer (after the final norm), before the LM head: ``(N, L, D)``."""
        mask, is_causal, offset = causal_self_attention_inputs(
            input_ids,
            attention_mask,
            "attention_mask",
            positional=self.positional,
            past_length=0 if cache is None else cache.length,
        )
        x = self.embedding(input_ids, offset=offset)
        return self.decoder(
            x, attn_mask=mask, is_causal=is_causal, positional=self.positional, offset=offset, cache=cache
        )

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, *, cache: KVCache | None = None
    ) -> Tensor:
        """Next-token logits ``(N, L, V)`` for every position.

        Args:
            input_ids: ``(N, L)`` token ids; left or right padding allowed.
            attention_mask: True (or 1) = real token, ``(N, L)``; with a ``cache``, ``(N, cached + L)``.
            cache: a :class:`~swapformer.generation.KVCache`; the tokens continue the cached ones and are
                appended to it.
        """
        return self.lm_head(self.hidden_states(input_ids, attention_mask, cache=cache))

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Continue ``input_ids``; see :func:`swapformer.generation.generate` for every argument.

        Returns:
            ``(N, P + T)``: the (left-padded) prompt followed by up to ``max_new_tokens`` new ids.
        """
        from swapformer.generation import generate

        return generate(self, input_ids, attention_mask, **kwargs)
