"""``generate()`` for every model kind that decodes, with Hugging Face's argument names.

The model supplies its decoding step (``model.decoding(...)``: the step function, the first ids and their mask);
this module checks the arguments and runs the search. It imports no model class.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from swapformer.generation.compiled import CompiledStep
from swapformer.generation.resolve import DEFAULT, resolve
from swapformer.generation.search import Streamer, beam_search, sample_or_greedy


def generate(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int | None = DEFAULT,
    max_length: int | None = DEFAULT,
    min_new_tokens: int | None = DEFAULT,
    min_length: int | None = DEFAULT,
    do_sample: bool = DEFAULT,
    temperature: float = DEFAULT,
    top_k: int | None = DEFAULT,
    top_p: float | None = DEFAULT,
    repetition_penalty: float = DEFAULT,
    num_beams: int = DEFAULT,
    length_penalty: float = DEFAULT,
    early_stopping: bool | str = DEFAULT,
    no_repeat_ngram_size: int = DEFAULT,
    bad_words_ids: Sequence[Sequence[int]] | None = DEFAULT,
    suppress_tokens: Sequence[int] | None = DEFAULT,
    begin_suppress_tokens: Sequence[int] | None = DEFAULT,
    forced_bos_token_id: int | None = DEFAULT,
    forced_eos_token_id: int | Sequence[int] | None = DEFAULT,
    eos_token_id: int | Sequence[int] | None = DEFAULT,
    pad_token_id: int | None = DEFAULT,
    decoder_start_token_id: int | None = DEFAULT,
    use_cache: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    streamer: Streamer | None = None,
    compile: bool = False,
) -> Tensor:
    """Generate ids: greedy, sampling, or beam search, with or without the KV cache.

    The model runs in eval mode under ``torch.inference_mode`` (its previous mode is restored). The decoding
    settings (``max_new_tokens`` to ``decoder_start_token_id``) left out take the model's generation defaults
    (``model.generation_config``, which :func:`~swapformer.from_hf` reads from the checkpoint's
    ``generation_config.json``; what they leave unset falls back to transformers' global defaults), or, for a
    model without defaults, swapformer's: 20 new tokens, greedy, no processor. An argument passed wins for this
    call; ``None`` passed turns off a setting that can be off (``top_k``, ``top_p``, the forced, bad and suppressed
    tokens) and means "the default" for the others. See :mod:`swapformer.generation.resolve`.

    Args:
        model: a model with a decoding step, ``model.decoding(input_ids, attention_mask, settings, *,
            use_cache, decoder_start_token_id) -> (step, first ids of every beam, their mask)``:
            :class:`~swapformer.DecoderOnly`, :class:`~swapformer.EncoderDecoder`.
        input_ids: ``(N, P)``. Decoder-only: the prompts, left-padded when their lengths differ. Encoder-decoder:
            the source ids.
        attention_mask: ``(N, P)``, True (or 1) = real token. Encoder-decoder: the source mask (``src_mask``).
        max_new_tokens: most tokens generated per row (wins over ``max_length``).
        max_length: most ids per output row, counting the prompt (decoder-only) or the start id
            (encoder-decoder), as in transformers.
        min_new_tokens: no eos before this many new tokens.
        min_length: no eos before the output row holds this many ids (counted as ``max_length``).
        do_sample: sample from the distribution instead of taking the argmax.
        temperature: divides the logits before sampling (> 0).
        top_k: sample among the ``top_k`` most likely tokens (0 or None: all).
        top_p: sample among the fewest most likely tokens whose probability reaches ``top_p``, in (0, 1].
        repetition_penalty: > 1 discourages tokens already present (CTRL); 1 is off.
        num_beams: beams; 1 is greedy or sampling.
        length_penalty: beam scores are divided by ``length ** length_penalty``; > 0 favours longer outputs.
        early_stopping: beam search stops a row once it has ``num_beams`` finished hypotheses (True), when no
            live beam can still win judged at the current length (False) or at the longest length ("never").
        no_repeat_ngram_size: no n-gram of this size appears twice in an output row (0: off).
        bad_words_ids: id sequences never generated (the last id of each is blocked after the others).
        suppress_tokens: ids never generated.
        begin_suppress_tokens: ids not generated as the first new token.
        forced_bos_token_id: the id forced as the first token after an encoder-decoder's start id.
        forced_eos_token_id: the id (or one of the ids) forced as the last token when the budget ends.
        eos_token_id: id, or ids, that end a sequence; rows that ended are padded with ``pad_token_id``. None =
            the generation defaults', else the model config's ``eos_token_id``; ``[]`` = none, always generate
            the whole budget.
        pad_token_id: the padding id of the prompts and of finished rows; None = the generation defaults' (else,
            as transformers, the first eos id), or for a model without defaults the model config's (else 0).
        decoder_start_token_id: first target id of an encoder-decoder; None = the generation defaults', else
            the model config's ``decoder_start_token_id`` (or its ``bos_token_id``).
        use_cache: keep keys and values between steps (fast); False re-runs the whole prefix every step.
        seed: seeds a private generator, so sampling repeats exactly without touching the global RNG.
        generator: or pass your own.
        streamer: ``put(tokens)`` gets each step's ``(N,)`` new ids, then ``end()`` (greedy and sampling).
        compile: run the one-token decoding steps as one ``torch.compile`` graph (needs ``use_cache``). The first
            call per model compiles (seconds to a minute on a CPU). On a CPU, a decoder-only model of built-in
            members decodes faster without it (its eager steps run a plan of the members' functions, see
            :class:`~swapformer.models.causal_lm.CausalStep`; figures in ``docs/benchmarks.md``). Other models
            (plug-in members, encoder-decoders) have not been measured against it.

    Returns:
        Decoder-only: ``(N, P + T)``, the prompts then the new ids. Encoder-decoder: ``(N, 1 + T)``, the start id
        then the new ids. ``T <= max_new_tokens``.

    Raises:
        ValueError: an empty prompt, right-padded prompts, a length beyond a learned positional table, an
            argument out of range, or generation defaults with a setting swapformer cannot apply (each message
            names the value and the fix).
    """
    arguments = {name: value for name, value in locals().items() if name in SETTING_NAMES}
    _check_ids(input_ids, attention_mask)
    settings, decoder_start_token_id = resolve(model, input_ids, arguments)
    if compile and not use_cache:
        raise ValueError("compile=True compiles the cached one-token step: pass use_cache=True (the default)")
    if seed is not None:
        if generator is not None:
            raise ValueError("pass seed or generator, not both")
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    decoding = getattr(model, "decoding", None)
    if not callable(decoding):
        raise TypeError(
            f"{type(model).__name__} does not decode left to right: generate() needs a model with a decoding step "
            "(a causal LM or a seq2seq model)"
        )
    was_training = model.training
    # a model already all in eval mode (the usual case) skips the two walks that set every module's flag and call
    # its train(): about 0.5 ms each for the 194 modules of a 4 + 4 layer encoder-decoder
    switch = any(module.training for module in model.modules())
    if switch:
        model.eval()
    try:
        with torch.inference_mode():
            step, prompt, mask = decoding(
                input_ids,
                attention_mask,
                settings,
                use_cache=use_cache,
                decoder_start_token_id=decoder_start_token_id,
            )
            if compile:
                step = CompiledStep(step)
            if settings.num_beams > 1:
                return beam_search(step, prompt, mask, settings, generator=generator)
            return sample_or_greedy(step, prompt, mask, settings, generator=generator, streamer=streamer)
    finally:
        if switch:
            model.train(was_training)


SETTING_NAMES = frozenset(inspect.signature(generate).parameters) - {
    "model",
    "input_ids",
    "attention_mask",
    "use_cache",
    "seed",
    "generator",
    "streamer",
    "compile",
}
"""The decoding settings of :func:`generate`: those a model's generation defaults may set."""


def _check_ids(input_ids: Tensor, attention_mask: Tensor | None) -> None:
    if input_ids.dim() != 2 or input_ids.size(1) == 0 or input_ids.size(0) == 0:
        raise ValueError(
            f"input_ids has shape {tuple(input_ids.shape)}: pass a non-empty (N, L) batch of token ids; to start "
            "from nothing, give a one-token prompt such as the BOS id"
        )
    if attention_mask is not None:
        if tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}"
            )
        empty = (~(attention_mask != 0).any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"rows {empty} of the attention mask hold no real token: every prompt needs one")


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int = 0) -> tuple[Tensor, Tensor]:
    """Token lists of different lengths as left-padded ``(input_ids, attention_mask)`` for decoder-only models."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("left_pad needs at least one sequence, each with at least one token")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq) :] = True
    return ids, mask
