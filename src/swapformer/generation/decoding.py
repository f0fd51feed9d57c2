"""``generate()`` for every model kind that decodes, with Hugging Face's argument names.

The model supplies its decoding step (``model.decoding(...)``: the step function, the first ids and their mask);
this module checks the arguments and runs the search. It imports no model class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import torch
from torch import Tensor, nn

from swapformer.generation.compiled import CompiledStep
from swapformer.generation.search import Settings, Streamer, as_id_tuple, beam_search, sample_or_greedy


def generate(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
    use_cache: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    streamer: Streamer | None = None,
    compile: bool = False,
) -> Tensor:
    """Generate ids: greedy, sampling, or beam search, with or without the KV cache.

    The model runs in eval mode under ``torch.inference_mode`` (its previous mode is restored).

    Args:
        model: a model with a decoding step, ``model.decoding(input_ids, attention_mask, settings, *,
            use_cache, decoder_start_token_id) -> (step, first ids of every beam, their mask)``:
            :class:`~swapformer.DecoderOnly`, :class:`~swapformer.EncoderDecoder`.
        input_ids: ``(N, P)``. Decoder-only: the prompts, left-padded when their lengths differ. Encoder-decoder:
            the source ids.
        attention_mask: ``(N, P)``, True (or 1) = real token. Encoder-decoder: the source mask (``src_mask``).
        max_new_tokens: most tokens generated per row.
        do_sample: sample from the distribution instead of taking the argmax.
        temperature: divides the logits before sampling (> 0).
        top_k: sample among the ``top_k`` most likely tokens.
        top_p: sample among the fewest most likely tokens whose probability reaches ``top_p``, in (0, 1].
        repetition_penalty: > 1 discourages tokens already present (CTRL); 1 is off.
        num_beams: beams; 1 is greedy or sampling.
        length_penalty: beam scores are divided by ``length ** length_penalty``; > 0 favours longer outputs.
        early_stopping: beam search stops a row once it has ``num_beams`` finished hypotheses (True), when no
            live beam can still win judged at the current length (False) or at the longest length ("never").
        eos_token_id: id, or ids, that end a sequence; rows that ended are padded with ``pad_token_id``. None =
            the model config's ``eos_token_id``; ``[]`` = none, always generate ``max_new_tokens``.
        pad_token_id: the padding id of the prompts and of finished rows; None = the model config's (or 0).
        decoder_start_token_id: first target id of an encoder-decoder; None = the model config's
            ``decoder_start_token_id`` (or its ``bos_token_id``).
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
        ValueError: an empty prompt, right-padded prompts, a length beyond a learned positional table, or an
            argument out of range (each message names the value and the fix).
    """
    config = getattr(model, "config", None)  # the special ids a model carries, as Hugging Face's configs do
    if eos_token_id is None:
        eos_token_id = getattr(config, "eos_token_id", None)
    if pad_token_id is None:
        pad_token_id = getattr(config, "pad_token_id", None) or 0
    if decoder_start_token_id is None:
        decoder_start_token_id = getattr(config, "start_token_id", None)
    # the search arguments carry the names of the Settings fields
    arguments = {**locals(), "eos_token_id": as_id_tuple(eos_token_id)}
    settings = Settings(**{field.name: arguments[field.name] for field in fields(Settings)})
    _check_settings(settings)
    _check_ids(input_ids, attention_mask)
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
        model.train(was_training)


def _check_settings(s: Settings) -> None:
    problems = []
    if not isinstance(s.max_new_tokens, int) or s.max_new_tokens < 1:
        problems.append(f"max_new_tokens={s.max_new_tokens!r} must be an int >= 1")
    if not isinstance(s.num_beams, int) or s.num_beams < 1:
        problems.append(f"num_beams={s.num_beams!r} must be an int >= 1 (1 = no beam search)")
    if s.do_sample and not s.temperature > 0:
        problems.append(
            f"temperature={s.temperature!r} must be > 0 when sampling (for the argmax, do_sample=False)"
        )
    if s.top_k is not None and (not isinstance(s.top_k, int) or s.top_k < 1):
        problems.append(f"top_k={s.top_k!r} must be an int >= 1, or None to keep every token")
    if s.top_p is not None and not 0 < s.top_p <= 1:
        problems.append(f"top_p={s.top_p!r} must be in (0, 1]; 1 (or None) keeps every token")
    if not s.repetition_penalty > 0:
        problems.append(f"repetition_penalty={s.repetition_penalty!r} must be > 0; 1 is no penalty")
    if s.early_stopping not in (True, False, "never"):
        problems.append(f"early_stopping={s.early_stopping!r} must be True, False or 'never'")
    if (s.top_k is not None or s.top_p is not None or s.temperature != 1.0) and not s.do_sample:
        problems.append("temperature, top_k and top_p apply only when sampling: pass do_sample=True")
    if problems:
        raise ValueError("invalid generation arguments: " + "; ".join(problems))


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
