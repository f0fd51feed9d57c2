"""Decoding loops: greedy, sampling and beam search over a step function.

A step function returns the next-token logits of every row given the ids so far::

    step(ids, attention_mask, new) -> logits (N, V)

``new`` is how many of the last ids it has not seen yet: the whole prompt at the first call, then 1. A cached step
runs only those; an uncached one runs all of ``ids``. ``step.reorder(index)`` keeps rows ``index`` of its state
(beam search). :mod:`swapformer.generation.decoding` builds these for the two model kinds; any callable of this
shape works, which is how the tests search a hand-written toy model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from swapformer.generation.processors import (
    bad_words,
    block_tokens,
    force_tokens,
    no_repeat_ngram,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)

_BLOCKED = -1.0e9  # a score no live hypothesis reaches, used instead of -inf so sums stay finite


class Step(Protocol):
    def __call__(self, ids: Tensor, attention_mask: Tensor | None, new: int) -> Tensor: ...

    def reorder(self, index: Tensor) -> None: ...


class Streamer(Protocol):
    """Receives tokens as they are chosen (the protocol of Hugging Face's ``TextStreamer``)."""

    def put(self, value: Tensor) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The checked decoding arguments (see :func:`swapformer.generation.decoding`).

    ``min_new_tokens``: new tokens before an eos may come (``min_length`` already turned into a count of new
    tokens); ``begin_suppress_tokens`` are blocked at the first new token only.
    """

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int = 0
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    forced_bos_token_id: int | None = None
    forced_eos_token_id: tuple[int, ...] = ()

    @property
    def processed(self) -> bool:
        """Whether :meth:`process` may change greedy logits (greedy without it takes them as they are)."""
        return (
            self.do_sample
            or self.repetition_penalty != 1.0
            or bool(self.min_new_tokens or self.no_repeat_ngram_size or self.bad_words_ids)
            or bool(self.suppress_tokens or self.begin_suppress_tokens or self.forced_eos_token_id)
            or self.forced_bos_token_id is not None
        )

    def process(self, logits: Tensor, ids: Tensor, prompt_length: int, max_length: int) -> Tensor:
        """The logits processors, in Hugging Face's order: repetition penalty, no-repeat n-grams, bad words, the
        minimum length, forced BOS and EOS, suppressed tokens; then (when sampling) temperature, top-k and top-p.

        ``ids`` ``(N, T)`` are the ids so far, the first ``prompt_length`` of them given (a decoder-only prompt, or
        an encoder-decoder's start id); ``max_length`` is where the output ends (prompt + ``max_new_tokens``).
        """
        length = ids.size(1)
        if self.repetition_penalty != 1.0:
            logits = repetition_penalty(logits, ids, self.repetition_penalty)
        if self.no_repeat_ngram_size:
            logits = no_repeat_ngram(logits, ids, self.no_repeat_ngram_size)
        if self.bad_words_ids:
            logits = bad_words(logits, ids, self.bad_words_ids)
        if length - prompt_length < self.min_new_tokens:
            logits = block_tokens(logits, self.eos_token_id)
        if self.forced_bos_token_id is not None and length == 1:
            logits = force_tokens(logits, (self.forced_bos_token_id,))
        if self.forced_eos_token_id and length == max_length - 1:
            logits = force_tokens(logits, self.forced_eos_token_id)
        logits = block_tokens(logits, self.suppress_tokens)
        # transformers starts the suppression one token later when a forced BOS takes the first place
        begin = prompt_length + (prompt_length == 1 and self.forced_bos_token_id is not None)
        if length == begin:
            logits = block_tokens(logits, self.begin_suppress_tokens)
        if self.do_sample:
            if self.temperature != 1.0:
                logits = logits / self.temperature
            if self.top_k is not None:
                logits = top_k_filter(logits, self.top_k)
            if self.top_p is not None:
                logits = top_p_filter(logits, self.top_p)
        return logits


def sample_or_greedy(
    step: Step,
    prompt: Tensor,
    attention_mask: Tensor | None,
    settings: Settings,
    *,
    generator: torch.Generator | None = None,
    streamer: Streamer | None = None,
) -> Tensor:
    """Pick one token per step, the argmax or a sample, until every row has produced an eos or the budget ends.

    Rows that finish early are filled with ``pad_token_id``.

    Returns:
        ``(N, P + T)``: the prompt and ``T <= max_new_tokens`` new ids.
    """
    batch, prompt_length = prompt.shape
    total = prompt_length + settings.max_new_tokens
    ids = _extend(prompt, total, settings.pad_token_id)
    mask = _extend(attention_mask, total, 1)
    eos = torch.tensor(settings.eos_token_id, device=prompt.device) if settings.eos_token_id else None
    unfinished = torch.ones(batch, dtype=torch.bool, device=prompt.device)
    # greedy without a processor leaves the logits as they are: skip them
    processed = settings.processed
    end, new = prompt_length, prompt_length
    for _ in range(settings.max_new_tokens):
        logits = step(ids[:, :end], None if mask is None else mask[:, :end], new)  # (N, V)
        if logits.dtype != torch.float32:  # .float() on float32 would still be a call per token
            logits = logits.float()
        if processed:
            logits = settings.process(logits, ids[:, :end], prompt_length, total)
        if settings.do_sample:
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
        else:
            token = logits.argmax(dim=-1)
        if eos is not None:
            token = torch.where(unfinished, token, settings.pad_token_id)
        ids[:, end] = token
        end, new = end + 1, 1
        if streamer is not None:
            streamer.put(token)
        if eos is not None:
            unfinished &= ~torch.isin(token, eos)
            if not bool(unfinished.any()):
                break
    if streamer is not None:
        streamer.end()
    return ids[:, :end]


def beam_search(
    step: Step,
    prompt: Tensor,
    attention_mask: Tensor | None,
    settings: Settings,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Beam search with Hugging Face's scoring and stopping rules, so its results can be compared with theirs.

    ``prompt`` holds ``num_beams`` identical rows per input, ``(N * B, P)``. At each step every live beam's
    log-probabilities are added to its score; of the ``B * V`` continuations the best ``K = max(2, 1 + #eos) * B``
    are kept (sampled instead when ``do_sample``). Continuations ending in an eos among the first ``B`` become
    finished hypotheses, scored ``sum log p / generated_length ** length_penalty``; the best ``B`` others stay
    live. A row stops when it has ``B`` finished hypotheses and ``early_stopping=True``, or when no live beam can
    beat its worst finished one (``False``: judged at the current length; ``"never"``: at the longest possible
    length when ``length_penalty > 0``), or at ``max_new_tokens``, where live beams are finished as they are.

    Returns:
        ``(N, P + T)``: each input's best hypothesis, padded with ``pad_token_id``.
    """
    beams = settings.num_beams
    flat_batch, prompt_length = prompt.shape
    batch = flat_batch // beams
    total = prompt_length + settings.max_new_tokens
    device = prompt.device
    eos = torch.tensor(settings.eos_token_id or (-1,), device=device)
    candidates = max(2, 1 + len(settings.eos_token_id)) * beams

    running = _extend(prompt, total, settings.pad_token_id).view(batch, beams, total)
    running_scores = torch.full((batch, beams), _BLOCKED, device=device)
    running_scores[:, 0] = 0.0  # the beams start identical: let only the first one expand at step 1
    finished = running.clone()
    finished_scores = torch.full((batch, beams), _BLOCKED, device=device)
    finished_flags = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    finished_lengths = torch.full((batch, beams), prompt_length, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    first_beams = torch.arange(candidates, device=device) < beams  # only these may finish
    batch_base = torch.arange(batch, device=device)[:, None] * beams
    mask = _extend(attention_mask, total, 1)
    some_finished = False  # whether a hypothesis has finished (before, none is worth comparing with)

    length, new = prompt_length, prompt_length
    for _ in range(settings.max_new_tokens):
        flat = running[:, :, :length].reshape(flat_batch, length)
        logits = step(flat, None if mask is None else mask[:, :length], new).float()
        log_probs = settings.process(
            torch.log_softmax(logits, dim=-1), flat, prompt_length, total
        )  # (N*B, V)
        vocab = log_probs.size(-1)
        scores = (log_probs.view(batch, beams, vocab) + running_scores[..., None]).view(batch, beams * vocab)
        if settings.do_sample:
            picked = torch.multinomial(torch.softmax(scores, dim=-1), candidates, generator=generator)
            top_scores, order = scores.gather(1, picked).sort(dim=-1, descending=True)
            picked = picked.gather(1, order)
        else:
            top_scores, picked = torch.topk(scores, candidates, dim=-1)  # (N, K)
        origin, token = picked // vocab, picked % vocab
        ends = torch.isin(token, eos)
        if length + 1 == total:
            ends = torch.ones_like(ends)  # the budget is spent: every candidate ends here
        finishing = ends & first_beams

        # the best B candidates that did not end continue
        live_scores = top_scores.add(ends.float(), alpha=_BLOCKED)
        keep = torch.topk(live_scores, beams, dim=-1).indices  # (N, B)
        kept_origin = origin.gather(1, keep)
        continued = running.gather(1, kept_origin[..., None].expand(-1, -1, total))  # (N, B, total)
        continued[:, :, length] = token.gather(1, keep)
        running_scores = live_scores.gather(1, keep)
        beam_index = (kept_origin + batch_base).view(-1)

        # candidates that ended join the finished hypotheses if they beat them; a step where none of the first
        # B candidates ended (most steps) would only merge blocked scores, which never displace a finished one
        if bool(finishing.any()):
            sequences = running.gather(1, origin[..., None].expand(-1, -1, total))  # (N, K, total)
            sequences[:, :, length] = token
            final = top_scores / float(length + 1 - prompt_length) ** settings.length_penalty
            full = finished_flags.all(dim=-1, keepdim=True) & (settings.early_stopping is True)
            final = final + (full | ~improvable).float() * _BLOCKED + (~finishing).float() * _BLOCKED
            merged = torch.topk(torch.cat((finished_scores, final), dim=1), beams, dim=-1).indices
            finished = torch.cat((finished, sequences), dim=1).gather(
                1, merged[..., None].expand(-1, -1, total)
            )
            finished_scores = torch.cat((finished_scores, final), dim=1).gather(1, merged)
            finished_flags = torch.cat((finished_flags, finishing), dim=1).gather(1, merged)
            finished_lengths = torch.cat(
                (finished_lengths, torch.full_like(final, length + 1, dtype=finished_lengths.dtype)), dim=1
            ).gather(1, merged)
            some_finished = True
        running = continued

        step.reorder(beam_index)
        length, new = length + 1, 1
        if settings.early_stopping == "never" and settings.length_penalty > 0:
            best_length = total - prompt_length
        else:
            best_length = length - prompt_length
        best_possible = running_scores[:, :1] / float(best_length) ** settings.length_penalty
        if some_finished:
            worst_finished = torch.where(
                finished_flags, finished_scores.min(dim=-1, keepdim=True).values, _BLOCKED
            )
            improvable &= (best_possible > worst_finished).any(dim=-1, keepdim=True)
            all_full = bool(finished_flags.all()) and settings.early_stopping is True
            if not bool(improvable.any()) or all_full or bool(ends.all()):
                break
        else:  # no hypothesis finished yet: every worst finished score is the blocked one
            improvable &= best_possible > _BLOCKED
            if not bool(improvable.any()):
                break
    width = int(finished_lengths[:, 0].max())
    return finished[:, 0, :width]


def _extend(prefix: Tensor | None, total: int, fill: int) -> Tensor | None:
    """``prefix`` ``(N, P)`` followed by ``fill`` up to ``(N, total)``: preallocated, no per-step concatenation."""
    if prefix is None:
        return None
    out = prefix.new_full((prefix.size(0), total), fill)
    out[:, : prefix.size(1)] = prefix
    return out


def as_id_tuple(value: int | Sequence[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)
