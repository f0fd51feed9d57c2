"""EncoderOnly: a bidirectional encoder with an LM head, trained to fill in masked tokens (BERT); its builder and
kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from swapformer.components.positional.base import PositionalEncoding
from swapformer.components.softcap import soft_cap
from swapformer.config import ModelConfig
from swapformer.models import builders, inputs
from swapformer.models.saving import SavesPretrained
from swapformer.nn import TokenEmbedding, TransformerStack
from swapformer.nn.masks import document_attention_inputs, left_padding_offset, self_attention_mask
from swapformer.registry import register_kind


class EncoderOnly(SavesPretrained, nn.Module):
    """Embedding, a stack of self-attention layers that see the whole sequence, and the final linear layer.

    ::

        ids ─▶ embedding (+ types? + positions) ─▶ [layer × N] ─▶ final norm? ─▶ head transform? ─▶ lm_head
                                                   bidirectional self-attention, feed-forward

    Built by :func:`swapformer.build_masked_lm`. Every position sees every real token, so position i's logits
    predict token i itself: trained on inputs with some tokens masked, they fill the masks in.

    Shape:
        input_ids ``(N, L)``; attention_mask ``(N, L)``, True = real token; token_type_ids ``(N, L)``;
        logits ``(N, L, V)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self,
        *,
        embedding: TokenEmbedding,
        positional: PositionalEncoding,
        encoder: TransformerStack,
        lm_head: nn.Linear,
        logit_softcap: float | None = None,
        head_transform: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.logit_softcap = logit_softcap
        self.embedding = embedding
        self.positional = positional
        self.encoder = encoder
        self.head_transform = head_transform
        self.lm_head = lm_head

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        token_type_ids: Tensor | None = None,
        losses: dict[str, Tensor] | None = None,
        head: bool = True,
        document_ids: Tensor | None = None,
    ) -> Tensor:
        """Logits ``(N, L, V)`` of the token at every position, padding (False in ``attention_mask``) unseen.
        Rows may be padded on either side: positions count from each row's first real token. ``losses``, when
        given, receives the members' auxiliary losses by name (:mod:`swapformer.components.auxiliary`).
        ``token_type_ids`` picks each token's row of the token-type table (``token_types``); None: row 0.
        ``head=False`` returns the hidden states ``(N, L, D)`` the LM head would read (after the head transform), for a loss that applies
        the head itself, a chunk at a time (:mod:`swapformer.nn.lm_loss`). ``document_ids`` ``(N, L)`` (packed
        rows): a token sees only its own document, and positions restart at each document's first token.

        Raises:
            ValueError: ids, mask or token types of the wrong dtype or shape, ids outside the vocabulary, or
                token types outside the table (:mod:`swapformer.models.inputs`).
        """
        inputs.check_masked(self, input_ids, attention_mask, token_type_ids)
        inputs.check_document_ids(self, document_ids, input_ids)
        if document_ids is not None:
            mask, _, offset = document_attention_inputs(
                input_ids,
                attention_mask,
                document_ids,
                "attention_mask",
                causal=False,
                spans=inputs.hands_spans(self),
            )
        else:
            mask, _ = self_attention_mask(input_ids, attention_mask, "attention_mask", causal=False)
            offset = left_padding_offset(None if attention_mask is None else attention_mask != 0)
        x = self.embedding(input_ids, offset=offset, token_type_ids=token_type_ids)
        x = self.encoder(x, attn_mask=mask, offset=offset, losses=losses)
        if self.head_transform is not None:  # per token, before the head: part of what a chunked loss reads
            x = self.head_transform(x)
        return soft_cap(self.lm_head(x), self.logit_softcap) if head else x


@register_kind(
    "masked_lm",
    defaults={"positional": "learned", "placement": "post", "ffn": "gelu"},
    causal=False,
    generates=False,
)
def build_masked_lm(config: ModelConfig | Mapping[str, Any]) -> EncoderOnly:
    """A bidirectional masked LM from a :class:`ModelConfig` or a plain mapping (``kind: masked_lm``).

    The defaults are BERT's choices: post-norm, GELU, learned positions. ``token_types`` adds a token-type
    table to the embedding and ``lm_head_transform`` a dense layer, activation and norm before the output layer.

    Example:
        >>> import torch
        >>> model = build_masked_lm({"vocab_size": 100, "d_model": 32, "num_heads": 4, "num_layers": 2})
        >>> model(torch.randint(100, (2, 10))).shape
        torch.Size([2, 10, 100])
    """
    cfg = ModelConfig.coerce(config, kind="masked_lm")
    positional = builders.build_positional(cfg, bidirectional=True)
    embedding = builders.build_embedding(cfg, cfg.vocab_size, positional)
    model = EncoderOnly(
        embedding=embedding,
        positional=positional,
        encoder=builders.build_stack(
            cfg, num_layers=cfg.num_layers, cross_attention=False, positional=positional, is_encoder=True
        ),
        lm_head=builders.build_lm_head(cfg, embedding),
        logit_softcap=cfg.logit_softcap,
        head_transform=builders.build_lm_head_transform(cfg),
    )
    builders.init_weights(model, std=cfg.init_std, num_layers=cfg.num_layers)
    model.config = cfg
    return model
