"""Plain decoding loops without a KV cache: each step re-runs the decoder on the whole prefix.

Simple and obviously correct; a later generation package replaces them with cached versions and must match
these outputs token for token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from swapformer.models.causal_lm import DecoderOnly
from swapformer.models.seq2seq import EncoderDecoder


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoder,
    src_ids: Tensor,
    src_mask: Tensor | None = None,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    max_len: int = 64,
) -> Tensor:
    """Greedy decoding: encode once, then repeatedly decode the growing target and append its argmax.

    A sequence stops at its first ``eos_id``; later positions hold ``pad_id``. The loop ends when every
    sequence has stopped or after ``max_len`` new tokens.

    Args:
        model: the encoder-decoder.
        src_ids: source ids ``(N, S)``.
        src_mask: ``(N, S)``, True = real token, or None.
        bos_id, eos_id, pad_id: special ids.
        max_len: most tokens generated per sequence (eos included).

    Returns:
        Generated ids ``(N, T)``, ``T <= max_len``, without the leading bos; eos kept where produced.
    """
    memory = model.encode(src_ids, src_mask)  # (N, S, D)
    n = src_ids.size(0)
    tgt = torch.full((n, 1), bos_id, dtype=torch.long, device=src_ids.device)
    done = torch.zeros(n, dtype=torch.bool, device=src_ids.device)
    for _ in range(max_len):
        logits = model.decode(tgt, memory, src_mask=src_mask)  # (N, L, V)
        next_id = logits[:, -1].argmax(dim=-1)  # (N,)
        next_id = torch.where(done, torch.full_like(next_id, pad_id), next_id)
        tgt = torch.cat([tgt, next_id[:, None]], dim=1)
        done |= next_id == eos_id
        if bool(done.all()):
            break
    return tgt[:, 1:]


@torch.no_grad()
def sample(
    model: DecoderOnly,
    prompt_ids: Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    max_context: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue ``prompt_ids`` ``(N, L)`` by ``max_new_tokens`` tokens; ``temperature=0`` means greedy.

    Args:
        model: the causal LM.
        prompt_ids: ``(N, L)`` prompt, no padding.
        max_new_tokens: tokens to add.
        temperature: softmax temperature; 0 picks the argmax.
        top_k: keep only the ``top_k`` most likely tokens before sampling.
        eos_id: stop once every row has produced it (rows that stop early keep generating; trim with eos).
        max_context: crop the prefix to its last ``max_context`` tokens (a learned positional table's size).
        generator: random generator for reproducible samples.

    Returns:
        ``(N, L + T)``: the prompt followed by the new tokens.
    """
    ids = prompt_ids
    for _ in range(max_new_tokens):
        context = ids if max_context is None else ids[:, -max_context:]
        logits = model(context)[:, -1].float()  # (N, V)
        if temperature <= 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.size(-1):
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, next_id], dim=1)
        if eos_id is not None and bool((ids[:, prompt_ids.size(1) :] == eos_id).any(dim=1).all()):
            break
    return ids


def strip_after_eos(ids: list[int], eos_id: int) -> list[int]:
    """Tokens before the first ``eos_id``."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
