"""DecoderOnly: a causal language model (GPT, Llama), its decoding step, its builder and its kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from swapformer.components.functions import function_of, plain
from swapformer.components.positional.base import PositionalEncoding
from swapformer.components.softcap import soft_cap
from swapformer.config import ModelConfig
from swapformer.models import builders, inputs
from swapformer.models.decoding import (
    check_left_padded,
    check_length,
    expand_beams,
    reserve_positions,
    search,
)
from swapformer.models.generation_defaults import GenerationDefaults
from swapformer.models.saving import SavesPretrained
from swapformer.nn import KVCache, TokenEmbedding, TransformerStack
from swapformer.nn.masks import causal_self_attention_inputs, document_attention_inputs
from swapformer.registry import register_kind

if TYPE_CHECKING:
    from swapformer.generation.search import Settings


class DecoderOnly(SavesPretrained, nn.Module):
    """Embedding, a stack of causal self-attention layers, and the final linear layer to the vocabulary.

    ::

        ids ─▶ embedding (+ positions) ─▶ [layer × N] ─▶ final norm? ─▶ lm_head ─▶ logits
                                              causal self-attention, feed-forward

    Built by :func:`swapformer.build_causal_lm`. ``softmax(logits)`` is the next-token distribution; the
    softmax itself lives in the loss (cross-entropy) and in decoding.

    Args:
        embedding: token embedding; adds ``positional``'s absolute positions.
        positional: the positional member, owned here and used by the embedding (``embed``), every
            self-attention layer (``rotate``) and the mask (``bias``).
        decoder: stack of layers without cross-attention.
        lm_head: ``Linear(D, V)``; tied to the embedding when ``tie_embeddings``.
        logit_softcap: soft-cap the logits, ``cap * tanh(logits / cap)`` (Gemma 2); None = none.

    Shape:
        input_ids ``(N, L)``; attention_mask ``(N, L)``, True = real token; document_ids ``(N, L)``;
        logits ``(N, L, V)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self,
        *,
        embedding: TokenEmbedding,
        positional: PositionalEncoding,
        decoder: TransformerStack,
        lm_head: nn.Linear,
        logit_softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.generation_config: GenerationDefaults | None = None  # generate()'s defaults (from_hf sets them)
        self.logit_softcap = logit_softcap
        self.embedding = embedding
        self.positional = positional
        self.decoder = decoder
        self.lm_head = lm_head

    def hidden_states(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        losses: dict[str, Tensor] | None = None,
        document_ids: Tensor | None = None,
    ) -> Tensor:
        """Output of the last layer (after the final norm), before the LM head: ``(N, L, D)``."""
        if document_ids is not None:  # packed rows: attention within each document, positions restart
            mask, is_causal, offset = document_attention_inputs(
                input_ids,
                attention_mask,
                document_ids,
                "attention_mask",
                causal=True,
                spans=inputs.hands_spans(self),
            )
        else:
            mask, is_causal, offset = causal_self_attention_inputs(
                input_ids, attention_mask, "attention_mask", past_length=0 if cache is None else cache.length
            )
        x = self.embedding(input_ids, offset=offset)
        return self.decoder(x, attn_mask=mask, is_causal=is_causal, offset=offset, cache=cache, losses=losses)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        losses: dict[str, Tensor] | None = None,
        head: bool = True,
        document_ids: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits ``(N, L, V)`` for every position.

        Args:
            input_ids: ``(N, L)`` token ids; left or right padding allowed.
            attention_mask: True (or 1) = real token, ``(N, L)``; with a ``cache``, ``(N, cached + L)``.
            document_ids: ``(N, L)`` integers, one per token, equal within a document of a packed row (a data
                module's ``pack: true``): a token attends only within its document, and positions restart at
                each document's first token, so each document's logits are those of the document alone.
            cache: a :class:`~swapformer.nn.KVCache`; the tokens continue the cached ones and are appended to it.
            losses: a dict that receives the auxiliary losses members add (:mod:`swapformer.components.auxiliary`),
                by name; the training tasks add them to the loss.
            head: False returns the hidden states ``(N, L, D)`` the LM head would read, for a loss that applies
                the head itself, a chunk at a time (:mod:`swapformer.nn.lm_loss`).

        Raises:
            ValueError: ids or mask of the wrong dtype or shape, or ids outside the vocabulary
                (:mod:`swapformer.models.inputs`).
        """
        inputs.check_causal(self, input_ids, attention_mask, past_length=0 if cache is None else cache.length)
        inputs.check_document_ids(self, document_ids, input_ids, cached=cache is not None)
        hidden = self.hidden_states(
            input_ids, attention_mask, cache=cache, losses=losses, document_ids=document_ids
        )
        if not head:
            return hidden
        return soft_cap(self.lm_head(hidden), self.logit_softcap)

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Continue ``input_ids``; see :func:`swapformer.generation.decoding` for every argument.

        Returns:
            ``(N, P + T)``: the (left-padded) prompt followed by up to ``max_new_tokens`` new ids.

        Raises:
            ValueError: bad prompt ids or mask (:mod:`swapformer.models.inputs`), a special id outside the
                vocabulary, or a decoding argument out of range.
        """
        inputs.check_causal(self, input_ids, attention_mask, always=True)
        inputs.check_generate_ids(kwargs, vocab_size=self.embedding.token.num_embeddings)
        defaults = self.generation_config.settings() if self.generation_config is not None else {}
        inputs.check_processor_ids({**defaults, **kwargs}, vocab_size=self.embedding.token.num_embeddings)
        return search(self, input_ids, attention_mask, **kwargs)

    def decoding(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        settings: Settings,  # swapformer.generation's: max_new_tokens, num_beams
        *,
        use_cache: bool,
        decoder_start_token_id: int | None = None,
    ) -> tuple[CausalStep, Tensor, Tensor | None]:
        """The step function of :func:`~swapformer.generation.decoding`: the prompts (left-padded) continue."""
        mask = None
        if attention_mask is not None:
            mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
            check_left_padded(mask)
            if bool(mask.all()):
                mask = None  # no padding: the fast path
        length = input_ids.size(1) + settings.max_new_tokens
        check_length(self.positional, length, "prompt + max_new_tokens")
        cache = None
        if use_cache:
            cache = KVCache(len(self.decoder.layers), capacity=length)
            reserve_positions(
                [self.positional, *getattr(self.decoder, "positionals", ())], length, input_ids.device
            )
        beams = settings.num_beams
        return CausalStep(self, cache), expand_beams(input_ids, beams), expand_beams(mask, beams)


class CausalStep:
    """Next-token logits of a DecoderOnly, with a KV cache or re-running the prefix.

    A one-token step without a padding mask runs through a plan (:meth:`plan`) where every member has a function
    (:mod:`swapformer.components.functions`) and nothing is hooked: the embedding's, the stack's
    (:meth:`~swapformer.nn.TransformerStack.decoding_function`: each layer's, the final norm's) and the head's,
    made once per generation instead of calling the modules at every token. The same operators on the same
    tensors, so the same numbers; anything else takes the modules' path.
    """

    def __init__(self, model: DecoderOnly, cache: KVCache | None) -> None:
        self.model, self.cache = model, cache
        self._plan = self.plan()

    def __call__(self, ids: Tensor, attention_mask: Tensor | None, new: int) -> Tensor:
        if self.cache is None:
            hidden = self.model.hidden_states(ids, attention_mask)
        else:
            # a compiled step traces the modules themselves: the plan updates the cache in place
            plan = self._plan
            if plan is not None and new == 1 and attention_mask is None and not torch.compiler.is_compiling():
                return plan(ids[:, -1:], self.cache.length)
            hidden = self.model.hidden_states(ids[:, -new:], attention_mask, cache=self.cache)
        logits = self.model.lm_head(hidden[:, -1])  # (N, V): only the last position is needed
        return soft_cap(logits, self.model.logit_softcap)

    def plan(self) -> Callable[[Tensor, int], Tensor] | None:
        """``(ids (N, 1), position) -> logits (N, V)`` for one new token of every row at ``position`` (no padding),
        or None where a member has no decoding function, has a hook, or adds a score bias (ALiBi, T5's)."""
        model = self.model
        if self.cache is None or model.training or not plain(model, model.embedding, model.lm_head):
            return None
        stack = getattr(model.decoder, "decoding_function", lambda cache: None)(self.cache)
        if stack is None:
            return None
        make_embed = getattr(model.embedding, "decoding_function", None)
        if make_embed is not None:
            embed = make_embed()
        else:  # another embedding: its forward
            forward = function_of(model.embedding)

            def embed(ids: Tensor, position: int) -> Tensor:
                return forward(ids, offset=position)

        head, cap = function_of(model.lm_head), model.logit_softcap

        def step(ids: Tensor, position: int) -> Tensor:
            return soft_cap(head(stack(embed(ids, position), position)[:, -1]), cap)

        return step

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


@register_kind(
    "causal_lm", defaults={"positional": "sinusoidal", "placement": "pre", "ffn": "gelu"}, causal=True
)
def build_causal_lm(config: ModelConfig | Mapping[str, Any]) -> DecoderOnly:
    """A decoder-only causal LM from a :class:`ModelConfig` or a plain mapping (``kind: causal_lm``).

    Example:
        >>> import torch
        >>> model = build_causal_lm({"vocab_size": 100, "d_model": 64, "num_heads": 4, "num_layers": 2,
        ...                          "d_ff": 128, "positional": "rope", "norm": "rmsnorm", "placement": "pre",
        ...                          "ffn": "swiglu"})
        >>> model(torch.randint(100, (2, 10))).shape
        torch.Size([2, 10, 100])
    """
    cfg = ModelConfig.coerce(config, kind="causal_lm")
    positional = builders.build_positional(cfg, bidirectional=False)
    embedding = builders.build_embedding(cfg, cfg.vocab_size, positional)
    model = DecoderOnly(
        embedding=embedding,
        positional=positional,
        decoder=builders.build_stack(
            cfg, num_layers=cfg.num_layers, cross_attention=False, positional=positional
        ),
        lm_head=builders.build_lm_head(cfg, embedding),
        logit_softcap=cfg.logit_softcap,
    )
    builders.init_weights(model, std=cfg.init_std, num_layers=cfg.num_layers)
    model.config = cfg
    return model
