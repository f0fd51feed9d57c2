"""EncoderDecoder: the original Transformer, for sequence-to-sequence tasks (translation); its decoding step,
builder and kind."""

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
from swapformer.models.decoding import check_length, expand_beams, reserve_positions, search
from swapformer.models.generation_defaults import GenerationDefaults
from swapformer.models.saving import SavesPretrained
from swapformer.nn import KVCache, TokenEmbedding, TransformerStack
from swapformer.nn.masks import as_key_padding_mask, causal_self_attention_inputs, self_attention_mask
from swapformer.registry import register_kind

if TYPE_CHECKING:
    from swapformer.generation.search import Settings


class EncoderDecoder(SavesPretrained, nn.Module):
    """Encoder over the source, decoder over the target attending to it, final linear to the vocabulary.

    ::

        src ─▶ src embedding ─▶ [encoder layer × N] ─▶ memory ───────────────┐
                                  self-attention, FFN                        ▼
        tgt ─▶ tgt embedding ─▶ [decoder layer × M] ─▶ final norm? ─▶ lm_head ─▶ logits
                                  causal self-attention, cross-attention(memory), FFN

    Built by :func:`swapformer.build_seq2seq`. Each side owns its positional member (``src_positional`` is
    bidirectional, ``tgt_positional`` causal); the embeddings and self-attention layers of that side use it.

    Shape:
        src_ids ``(N, S)``; tgt_ids ``(N, L)``; src_mask ``(N, S)`` and tgt_mask ``(N, L)``, True = real token;
        memory ``(N, S, D)``; logits ``(N, L, V)``.
    """

    tensor_parallel_plan: ClassVar[dict[str, str]] = {}
    """Under tensor parallelism every rank runs it whole, on the full (replicated) activations."""

    def __init__(
        self,
        *,
        src_embedding: TokenEmbedding,
        tgt_embedding: TokenEmbedding,
        src_positional: PositionalEncoding,
        tgt_positional: PositionalEncoding,
        encoder: TransformerStack,
        decoder: TransformerStack,
        lm_head: nn.Linear,
        logit_softcap: float | None = None,
    ) -> None:
        super().__init__()
        self.generation_config: GenerationDefaults | None = None  # generate()'s defaults (from_hf sets them)
        self.logit_softcap = logit_softcap
        self.src_embedding = src_embedding
        self.tgt_embedding = tgt_embedding
        self.src_positional = src_positional
        self.tgt_positional = tgt_positional
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head

    def encode(
        self, src_ids: Tensor, src_mask: Tensor | None = None, *, losses: dict[str, Tensor] | None = None
    ) -> Tensor:
        """The encoder output ("memory") ``(N, S, D)``."""
        mask, _ = self_attention_mask(src_ids, src_mask, "src_mask", causal=False)
        return self.encoder(self.src_embedding(src_ids), attn_mask=mask, losses=losses)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        *,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        cache: KVCache | None = None,
        losses: dict[str, Tensor] | None = None,
        head: bool = True,
    ) -> Tensor:
        """Logits ``(N, L, V)`` for the target given the encoder output.

        Args:
            tgt_mask: ``(N, L)`` True = real target token; with a ``cache``, ``(N, cached + L)``.
            cache: a :class:`~swapformer.nn.KVCache`: the target tokens continue the cached ones, and the
                cross-attention keys and values of ``memory`` are projected once and kept.
            head: False returns the hidden states ``(N, L, D)`` the LM head would read (see :meth:`forward`).
        """
        source = as_key_padding_mask(src_mask, "src_mask", tuple(memory.shape[:2]))
        mask, is_causal, offset = causal_self_attention_inputs(
            tgt_ids, tgt_mask, "tgt_mask", past_length=0 if cache is None else cache.length
        )
        memory_mask = None if source is None else source[:, None, None, :]  # (N, 1, 1, S)
        x = self.decoder(
            self.tgt_embedding(tgt_ids, offset=offset),
            attn_mask=mask,
            is_causal=is_causal,
            offset=offset,
            memory=memory,
            memory_mask=memory_mask,
            cache=cache,
            losses=losses,
        )
        return soft_cap(self.lm_head(x), self.logit_softcap) if head else x

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        losses: dict[str, Tensor] | None = None,
        head: bool = True,
    ) -> Tensor:
        """Teacher-forced logits ``(N, L, V)``: position i predicts target token i + 1. ``losses``, when given,
        receives the members' auxiliary losses of both stacks by name (:mod:`swapformer.components.auxiliary`).
        ``head=False`` returns the hidden states ``(N, L, D)`` the LM head would read, for a loss that applies
        the head itself, a chunk at a time (:mod:`swapformer.nn.lm_loss`).

        Raises:
            ValueError: ids or masks of the wrong dtype or shape, or ids outside their vocabulary
                (:mod:`swapformer.models.inputs`).
        """
        inputs.check_seq2seq(self, src_ids, tgt_ids, src_mask, tgt_mask)
        memory = self.encode(src_ids, src_mask, losses=losses)
        return self.decode(tgt_ids, memory, src_mask=src_mask, tgt_mask=tgt_mask, losses=losses, head=head)

    def generate(self, input_ids: Tensor, src_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Decode a target for each source ``input_ids`` ``(N, S)``; see :func:`swapformer.generation.decoding`.

        Returns:
            ``(N, 1 + T)``: ``decoder_start_token_id`` followed by up to ``max_new_tokens`` new ids.

        Raises:
            ValueError: bad source ids or mask (:mod:`swapformer.models.inputs`), a special id outside the
                target vocabulary, or a decoding argument out of range.
        """
        inputs.check_seq2seq(self, input_ids, None, src_mask, always=True)
        inputs.check_generate_ids(kwargs, vocab_size=self.tgt_embedding.token.num_embeddings)
        defaults = self.generation_config.settings() if self.generation_config is not None else {}
        inputs.check_processor_ids({**defaults, **kwargs}, vocab_size=self.tgt_embedding.token.num_embeddings)
        return search(self, input_ids, src_mask, **kwargs)

    def decoding(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        settings: Settings,  # swapformer.generation's: max_new_tokens, num_beams
        *,
        use_cache: bool,
        decoder_start_token_id: int | None = None,
    ) -> tuple[Seq2SeqStep, Tensor, None]:
        """The step function of :func:`~swapformer.generation.decoding`: the source ``input_ids`` is encoded once,
        and targets start from ``decoder_start_token_id``."""
        if decoder_start_token_id is None:
            raise ValueError(
                "an encoder-decoder needs decoder_start_token_id, the first target id (the BOS id of the "
                "tokenizer, 1 for swapformer's tokenizers)"
            )
        check_length(self.src_positional, input_ids.size(1), "the source")
        check_length(self.tgt_positional, 1 + settings.max_new_tokens, "1 + max_new_tokens")
        src_mask = None
        if attention_mask is not None:
            src_mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
            if bool(src_mask.all()):
                src_mask = None  # no padding: the kernels' unmasked path
        memory = self.encode(input_ids, src_mask)  # (N, S, D), once
        beams = settings.num_beams
        cache = None
        if use_cache:
            cache = KVCache(len(self.decoder.layers), capacity=1 + settings.max_new_tokens)
            for layer, layer_cache in zip(self.decoder.layers, cache.layers, strict=True):
                # the keys and values of each source once, read by all its beams: no projection (or copy) per beam
                getattr(layer, "remember", lambda *args, **kwargs: None)(memory, layer_cache, repeats=beams)
            reserve_positions(
                [self.tgt_positional, *getattr(self.decoder, "positionals", ())],
                1 + settings.max_new_tokens,
                input_ids.device,
            )
        memory, src_mask = expand_beams(memory, beams), expand_beams(src_mask, beams)
        start = input_ids.new_full((memory.size(0), 1), decoder_start_token_id)
        return Seq2SeqStep(self, memory, src_mask, cache), start, None


class Seq2SeqStep:
    """Next-token logits of an EncoderDecoder's decoder over a fixed encoder output.

    With a cache, every one-token step runs through a plan (:meth:`plan`), as
    :class:`~swapformer.models.causal_lm.CausalStep`'s does for a decoder-only model: the target embedding's
    function, the decoder stack's (:meth:`~swapformer.nn.TransformerStack.decoding_function`: each layer's causal
    self-attention over its cache, cross-attention over the source's keys and values, projected once per source
    before the first step, and feed-forward; the final norm) and the head's, made once per generation. The same
    operators on the same tensors as the modules, so the same numbers; anything else takes the modules' path.
    """

    def __init__(self, model: EncoderDecoder, memory: Tensor, src_mask: Tensor | None, cache: KVCache | None):
        self.model, self.memory, self.src_mask, self.cache = model, memory, src_mask, cache
        self._plan = self.plan()

    def __call__(self, ids: Tensor, attention_mask: Tensor | None, new: int) -> Tensor:
        if self.cache is not None:
            # a compiled step traces the modules themselves: the plan updates the cache in place
            plan = self._plan
            if plan is not None and new == 1 and not torch.compiler.is_compiling():
                return plan(ids[:, -1:], self.cache.length)
            ids = ids[:, -new:]
        return self.model.decode(ids, self.memory, src_mask=self.src_mask, cache=self.cache)[:, -1]

    def plan(self) -> Callable[[Tensor, int], Tensor] | None:
        """``(ids (N, 1), position) -> logits (N, V)`` for one new target token of every row at ``position``, or
        None where there is no cache, the cross-attention keys and values are not cached yet, a member has no
        decoding function, or something hooks the model, its embedding, head or layers."""
        model = self.model
        if self.cache is None or model.training or not plain(model, model.tgt_embedding, model.lm_head):
            return None
        memory_mask = None if self.src_mask is None else self.src_mask[:, None, None, :]  # (N, 1, 1, S)
        make_stack = getattr(model.decoder, "decoding_function", None)
        stack = (
            None
            if make_stack is None
            else make_stack(self.cache, memory=self.memory, memory_mask=memory_mask)
        )
        make_embed = getattr(model.tgt_embedding, "decoding_function", None)
        if stack is None or make_embed is None:
            return None
        embed, head, cap = make_embed(), function_of(model.lm_head), model.logit_softcap

        def step(ids: Tensor, position: int) -> Tensor:
            return soft_cap(head(stack(embed(ids, position), position)[:, -1]), cap)

        return step

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:  # beams of one source share its memory: cross-attention stays
            self.cache.reorder(index, cross_attention=False)


@register_kind(
    "seq2seq",
    defaults={"positional": "sinusoidal", "placement": "post", "ffn": "relu"},
    causal=True,
    source=True,
)
def build_seq2seq(config: ModelConfig | Mapping[str, Any]) -> EncoderDecoder:
    """An encoder-decoder model from a :class:`ModelConfig` or a plain mapping (``kind: seq2seq``).

    ``num_encoder_layers`` / ``num_decoder_layers`` default to ``num_layers``; the source vocabulary to
    ``vocab_size`` unless ``src_vocab_size`` is set; ``share_embeddings`` gives both sides one token table. The
    defaults are the 2017 paper's base model.
    """
    cfg = ModelConfig.coerce(config, kind="seq2seq")
    num_encoder, num_decoder = cfg.encoder_layers, cfg.decoder_layers
    src_positional = builders.build_positional(cfg, bidirectional=True)
    tgt_positional = builders.build_positional(cfg, bidirectional=False)
    tgt_embedding = builders.build_embedding(cfg, cfg.vocab_size, tgt_positional)
    src_embedding = builders.build_embedding(cfg, cfg.src_vocab_size or cfg.vocab_size, src_positional)
    if cfg.share_embeddings:  # one token table; each side keeps its positions and embedding norm
        src_embedding.token.weight = tgt_embedding.token.weight
    depths = {"num_encoder_layers": num_encoder, "num_decoder_layers": num_decoder}
    model = EncoderDecoder(
        src_embedding=src_embedding,
        tgt_embedding=tgt_embedding,
        src_positional=src_positional,
        tgt_positional=tgt_positional,
        encoder=builders.build_stack(
            cfg,
            num_layers=num_encoder,
            cross_attention=False,
            positional=src_positional,
            is_encoder=True,
            **depths,
        ),
        decoder=builders.build_stack(
            cfg, num_layers=num_decoder, cross_attention=True, positional=tgt_positional, **depths
        ),
        lm_head=builders.build_lm_head(cfg, tgt_embedding),
        logit_softcap=cfg.logit_softcap,
    )
    builders.init_weights(model, std=cfg.init_std, num_layers=num_encoder + num_decoder)
    model.config = cfg
    return model
