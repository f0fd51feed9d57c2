"""The checks of the conformance suite: each takes a tiny model built from a :class:`.Combination`
(:func:`build`) and raises :class:`ConformanceFailure` where the model breaks its rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer import layer_specs
from swapformer.compat import Capabilities, capabilities
from swapformer.components.attention.scaled_dot_product import scaled_dot_product
from swapformer.components.attention.sliding_window import band_mask, within_band
from swapformer.components.positional.base import PositionalEncoding
from swapformer.config import ModelConfig
from swapformer.conformance.combination import HEAD_LAYOUTS, Combination
from swapformer.conformance.failure import ConformanceFailure
from swapformer.conformance.mixture import check_mixture
from swapformer.models import build as build_model
from swapformer.nn import KVCache, MultiHeadAttention
from swapformer.registry import ComponentSpec, kind, split_spec

ATOL = RTOL = 1e-5
VOCAB = 13
LENGTH, SOURCE_LENGTH, KERNEL_LENGTH = 7, 6, 6
MEMORIZE_ROWS, MEMORIZE_LENGTH, MEMORIZE_LR, MEMORIZE_STEPS, MEMORIZE_LOSS = 8, 10, 1e-2, 100, 1.0
MASK_TOKEN, HIDDEN = VOCAB - 1, 3  # non-causal kinds memorize the tokens hidden behind it
RELATIVE_LENGTH, RELATIVE_SHIFTS, RELATIVE_TOL = 150, (1, 161), 1e-4

TINY = dict(vocab_size=VOCAB, d_model=16, num_heads=4, num_kv_heads=2, num_layers=2, d_ff=24,
            max_seq_len=16, dropout=0.0, pad_token_id=0, init_std=0.2)  # fmt: skip
"""Every model the suite builds: two layers (a member that keeps state between calls, or that one layer's
output breaks, shows only from the second on), grouped-query attention unless the combination names another
:data:`HEAD_LAYOUTS` entry. ``dropout=0.0`` lets the checks compare batches in training mode too.
``init_std=0.2`` makes logits of order 1: at the default 0.02 they are of order 0.05, and a kernel that leaks
every future token moves them by only ~2e-5, barely above the tolerance."""

JITTER = 1e-2


def build(combination: Combination) -> nn.Module:
    """The tiny model of ``combination`` in eval mode, seeded, so every run builds the same weights (the global
    random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = {**TINY, "num_kv_heads": HEAD_LAYOUTS[combination.heads], **combination.options()}
        return build_model(ModelConfig(**config, kind=combination.kind, **combination.components())).eval()


def _tokens(*shape: int, seed: int) -> Tensor:
    # real tokens avoid the pad id (0), so only the masks can tell padding apart
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def _forward(
    model, ids: Tensor, mask: Tensor | None = None, *, src: Tensor | None = None, src_mask=None
) -> Tensor:
    if kind(model.config.kind).source:
        if src is None:
            src = _tokens(ids.size(0), SOURCE_LENGTH, seed=1)
        return model(src, ids, src_mask=src_mask, tgt_mask=mask)
    return model(ids, attention_mask=mask)


def _expect_close(actual: Tensor, expected: Tensor, what: str) -> None:
    if actual.shape != expected.shape:
        raise ConformanceFailure(f"{what}: shape {tuple(actual.shape)} instead of {tuple(expected.shape)}")
    if not torch.allclose(actual, expected, atol=ATOL, rtol=RTOL, equal_nan=False):
        diff = (actual - expected).abs().nan_to_num(float("inf")).max().item()
        raise ConformanceFailure(f"{what} (max |difference| {diff:.2g} > {ATOL:g})")


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[str]:
    """``model`` in training (dropout is 0 in :data:`TINY`, so outputs stay comparable) or eval mode; yields
    the words a failure message starts with, and leaves the model in eval mode."""
    model.train(training)
    try:
        yield "in training mode, " if training else ""
    finally:
        model.eval()


def check_causality(model: nn.Module) -> None:
    """Row c of a batch changes every target token from position c on: its logits before c must not change,
    in eval mode and in training mode (a kernel may take another path while training).

    One forward pass covers every cut c = 1 .. L-1, so a leak from any later position to any earlier one shows.
    A kind that is not causal must show the opposite: logits before c that do change (every position sees
    every token).
    """
    ids = _tokens(1, LENGTH, seed=0).repeat(LENGTH, 1)  # row c: changed from position c (row 0: unchanged)
    later = torch.arange(LENGTH)[None, :] >= torch.arange(LENGTH)[:, None]
    later[0] = False
    changed = torch.where(later, ids % (VOCAB - 1) + 1, ids)  # every changed token differs from the original
    src = _tokens(1, SOURCE_LENGTH, seed=1).repeat(LENGTH, 1)
    causal = kind(model.config.kind).causal
    for training in (False, True):
        with _mode(model, training) as where, torch.no_grad():
            logits = _forward(model, changed, src=src)  # (L, L, V)
        for cut in range(1, LENGTH):
            if causal:
                what = f"{where}logits before position {cut} changed when the tokens from position {cut} on changed"
                _expect_close(logits[cut, :cut], logits[0, :cut], what)
            elif torch.allclose(logits[cut, :cut], logits[0, :cut], atol=ATOL, rtol=RTOL):
                raise ConformanceFailure(
                    f"{where}logits before position {cut} did not change when the tokens from position {cut} on "
                    f"changed, but kind '{model.config.kind}' is bidirectional"
                )


def check_padding(model: nn.Module) -> None:
    """Logits at real tokens do not depend on padding: a batch with a full row, a right-padded row and a
    left-padded one (sources right-padded) against each row run alone, in eval and in training mode. Padding
    holds random tokens, not the pad id.
    """
    ids = _tokens(3, LENGTH, seed=2)
    columns = torch.arange(LENGTH)
    mask = torch.stack([columns < LENGTH, columns < 3, columns >= 2])  # full; right-padded; left-padded
    src = _tokens(3, SOURCE_LENGTH, seed=3)
    src_lengths = [SOURCE_LENGTH, 2, 4]
    src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor(src_lengths)[:, None]
    for training in (False, True):
        with _mode(model, training) as where, torch.no_grad():
            batch = _forward(model, ids, mask, src=src, src_mask=src_mask)
            for row, padded in enumerate(("full", "right-padded", "left-padded")):
                alone = _forward(
                    model, ids[row : row + 1, mask[row]], src=src[row : row + 1, : src_lengths[row]]
                )
                what = f"{where}the {padded} row's logits differ from the row alone"
                _expect_close(batch[row, mask[row]], alone[0], what)


def check_determinism(model: nn.Module) -> None:
    """Two eval-mode forward passes of the same padded batch give identical logits."""
    ids, src = _tokens(3, LENGTH, seed=10), _tokens(3, SOURCE_LENGTH, seed=11)
    mask = torch.arange(LENGTH)[None, :] < torch.tensor([[LENGTH], [4], [LENGTH]])
    with torch.no_grad():
        first, second = (_forward(model, ids, mask, src=src) for _ in range(2))
    if not torch.equal(first, second):
        diff = (first - second).abs().nan_to_num(float("inf")).max().item()
        raise ConformanceFailure(
            f"two eval-mode forward passes of one input differ (max |difference| {diff:.2g})"
        )


def check_cached_decoding(model: nn.Module) -> None:
    """A KV cache changes nothing: a 3-token prefix then one token at a time gives the logits of one full pass,
    and greedy ``generate`` returns the same ids with and without the cache. A layer whose kernel sees only a
    window of keys (its ``cache_window``) is decoded past that window, also with a left-padded row, and its
    cache must hold no more than the window. An encoder-decoder decodes a padded source and one without a mask:
    a one-token cross-attention step takes another path for each."""
    layer_windows = [_cache_window(layer) for layer in model.decoder.layers]
    windows = [w for w in layer_windows if w is not None]
    # past the widest window, where positions allow: the oldest keys must leave the cache unnoticed
    length = max(LENGTH, min(max(windows, default=0) + 2, model.config.max_seq_len))
    ids, prefix = _tokens(2, length, seed=4), 3
    if kind(model.config.kind).source:
        src = _tokens(2, SOURCE_LENGTH, seed=5)
        src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor([[SOURCE_LENGTH], [3]])
        with torch.no_grad():  # a padded source, and one without a mask: a step attends to each its own way
            steps = [
                (partial(model.decode, memory=model.encode(src, source_mask), src_mask=source_mask), note)
                for source_mask, note in ((src_mask, ""), (None, " (a source without a mask)"))
            ]
        generate_args, options, mask_name = (src, src_mask), {"decoder_start_token_id": 1}, "tgt_mask"
    else:
        steps = [(model, "")]  # step(chunk, cache=...) runs the chunk after the cached tokens
        generate_args, options, mask_name = (ids[:, :prefix],), {}, "attention_mask"
    mask, what = None, "logits decoded with a KV cache differ from one full pass"
    if windows:  # a row left-padded past the prefix: the ring's slots and the mask's columns must agree
        mask = torch.arange(length)[None, :] >= torch.tensor([[0], [prefix + 1]])
        what += " (a row left-padded)"
    masks = [None if mask is None else mask[:, :end] for end in range(length + 1)]
    real = slice(None) if mask is None else mask  # (logits at padding are no one's)
    for step, note in steps:
        cache = KVCache(len(model.decoder.layers))
        with torch.no_grad():
            full = step(ids, cache=None, **{mask_name: masks[length]})
            logits = [step(ids[:, :prefix], cache=cache, **{mask_name: masks[prefix]})]
            logits += [
                step(ids[:, i : i + 1], cache=cache, **{mask_name: masks[i + 1]})
                for i in range(prefix, length)
            ]
        _expect_close(torch.cat(logits, dim=1)[real], full[real], what + note)
    for index, (layer, window) in enumerate(zip(cache.layers, layer_windows, strict=True)):
        held = layer.self_attention.keys
        if window is not None and held is not None and held.size(2) > window:
            raise ConformanceFailure(
                f"the KV cache of layer {index} holds {held.size(2)} tokens after {length}, more than its "
                f"kernel's window of {window}"
            )
    cached = model.generate(*generate_args, max_new_tokens=3, use_cache=True, **options)
    uncached = model.generate(*generate_args, max_new_tokens=3, use_cache=False, **options)
    if not torch.equal(cached, uncached):
        raise ConformanceFailure(
            f"greedy generate gave {cached.tolist()} with the KV cache and {uncached.tolist()} without"
        )


def check_documents(model: nn.Module) -> None:
    """A packed row (documents back to back, told apart by ``document_ids``) gives each document the logits of
    the document alone, in eval and in training mode: no token sees another document, and positions restart at
    each document's first token. Kinds with a source (seq2seq) do not pack."""
    lengths = (3, 1, LENGTH - 4)
    ids = _tokens(1, LENGTH, seed=12)
    document_ids = torch.cat([torch.full((1, n), i) for i, n in enumerate(lengths)], dim=1)
    bounds = torch.tensor((0, *lengths)).cumsum(0).tolist()
    for training in (False, True):
        with _mode(model, training) as where, torch.no_grad():
            packed = model(ids, document_ids=document_ids)
            alone = torch.cat([model(ids[:, a:b]) for a, b in pairwise(bounds)], dim=1)
        _expect_close(packed, alone, f"{where}the documents of a packed row differ from each document alone")


def _cache_window(layer: nn.Module) -> int | None:
    """The keys a layer's KV cache needs to keep: the narrowest window of its attention kernels, or None: all."""
    windows = [m.cache_window() for m in layer.modules() if callable(getattr(m, "cache_window", None))]
    return min((w for w in windows if w is not None), default=None)


def check_fully_padded_rows(model: nn.Module) -> None:
    """A batch with rows that are all padding (target and source) gives finite logits and finite gradients."""
    ids, src = _tokens(3, LENGTH, seed=6), _tokens(3, SOURCE_LENGTH, seed=7)
    mask = torch.arange(LENGTH)[None, :] < torch.tensor([[LENGTH], [0], [3]])
    src_mask = torch.arange(SOURCE_LENGTH)[None, :] < torch.tensor([[SOURCE_LENGTH], [0], [0]])
    model.zero_grad(set_to_none=True)
    try:
        logits = _forward(model, ids, mask, src=src, src_mask=src_mask)
        if not torch.isfinite(logits).all():
            rows = sorted({int(r) for r in (~torch.isfinite(logits)).nonzero()[:, 0]})
            raise ConformanceFailure(f"non-finite logits in rows {rows} (rows 1 and 2 hold padding only)")
        logits.sum().backward()
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        bad = [n for n, grad in grads if not torch.isfinite(grad).all()]
        if bad:
            raise ConformanceFailure(f"non-finite gradients in {', '.join(bad[:3])}{' ...' * (len(bad) > 3)}")
    finally:
        model.zero_grad(set_to_none=True)


def _dead(grad: Tensor | None) -> bool:
    return grad is None or not bool(grad.ne(0).any())


def _dead_head_groups(module: MultiHeadAttention) -> list[str]:
    """Head groups of ``module``'s projections that got no gradient: rows of W_q per query head, of W_k and W_v
    per key/value head, columns of W_o per query head."""
    heads, kv_heads, width = module.num_heads, module.num_kv_heads, module.head_dim
    groups = [("q_proj", module.q_proj.weight.grad, heads, "query head")]
    groups += [(n, getattr(module, n).weight.grad, kv_heads, "key/value head") for n in ("k_proj", "v_proj")]
    out = module.out_proj.weight.grad
    groups.append(("out_proj", None if out is None else out.t(), heads, "query head"))
    dead = []
    for name, grad, count, what in groups:
        if grad is None:
            continue  # reported per tensor
        for head, rows in enumerate(grad.reshape(count, width, -1)):
            if _dead(rows):
                dead.append(f"{name}.weight ({what} {head} of {count})")
    return dead


def check_gradient_flow(model: nn.Module) -> None:
    """After one backward pass of the cross-entropy (:func:`_loss`), every parameter has a nonzero gradient, and
    so does each head's share of every attention projection (per key/value head group for W_k and W_v): a dead,
    detached or zeroed sublayer fails with the parameters it starves.

    The parameters are first jittered (by :data:`JITTER`, in place), so the gradient is taken at a generic point:
    at initialization the biases are zero, a ReLU feed-forward is then scale-invariant, and the gain of a
    ``scalenorm`` whose output only reaches the next norm through it gets an exactly zero gradient.
    """
    ids, src = _tokens(4, LENGTH, seed=12), _tokens(4, SOURCE_LENGTH, seed=13)
    generator = torch.Generator().manual_seed(17)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(JITTER * torch.randn(parameter.shape, generator=generator).to(parameter))
    model.zero_grad(set_to_none=True)
    try:
        _loss(model, ids, src).backward()
        dead = [n for n, p in model.named_parameters() if p.requires_grad and _dead(p.grad)]
        for name, module in model.named_modules():
            if isinstance(module, MultiHeadAttention):
                dead += [f"{name}.{group}" for group in _dead_head_groups(module)]
    finally:
        model.zero_grad(set_to_none=True)
    if dead:
        more = f" and {len(dead) - 3} more" if len(dead) > 3 else ""
        raise ConformanceFailure(f"no gradient reaches {', '.join(dead[:3])}{more}")


def _kernels(model: nn.Module) -> list[tuple[str, str, ComponentSpec, nn.Module]]:
    """Each distinct self-attention kernel of the model: ``(where, member name, member spec, kernel)`` for the
    first layer of each attention spec its layers name (a pattern's local and global types each), so that each
    kernel is held to its own member's declarations and reference; the kernel inside a member that is a whole
    attention layer (``mla``) is that member's."""
    config = model.config
    stacks = {stack: layer_specs.resolve(config, stack) for stack, _ in layer_specs.stack_sizes(config)}
    found: list[tuple[str, str, ComponentSpec, nn.Module]] = []
    for name, module in model.named_modules():
        kernel = getattr(module, "kernel", None)
        if not isinstance(kernel, nn.Module) or "self_attention" not in name:
            continue
        layer = re.match(r"(\w+)\.layers\.(\d+)\.", name)
        specs = stacks.get(layer[1], []) if layer else []
        spec = specs[int(layer[2])].attention if layer and int(layer[2]) < len(specs) else config.attention
        if not any(layer_specs.same_member(spec, seen) for _, _, seen, _ in found):
            found.append((f"{name}.kernel", split_spec(spec, where="attention")[0], spec, kernel))
    return found


def _kernel_cases(kernel_caps: Capabilities) -> Iterator[tuple[str, dict[str, Any]]]:
    """Mask arguments the kernel contract allows: none, causal, key padding (a prefix of the keys, as
    ``linear`` requires) with and without causality, and a float score bias where the kernel takes one."""
    padding = (
        torch.arange(KERNEL_LENGTH)[None, None, None, :]
        < torch.tensor([KERNEL_LENGTH, 3])[:, None, None, None]
    )
    yield "no mask", {}
    yield "is_causal", {"is_causal": True}
    yield "a padding mask", {"attn_mask": padding}
    yield "a padding mask and is_causal", {"attn_mask": padding, "is_causal": True}
    if kernel_caps.accepts_score_bias:
        bias = torch.randn(1, 4, KERNEL_LENGTH, KERNEL_LENGTH, generator=torch.Generator().manual_seed(14))
        yield "a float score bias", {"attn_mask": bias}
        yield "scale=1.0", {"scale": 1.0, "is_causal": True}


def _banded(args: dict[str, Any], window: int | None) -> dict[str, Any]:
    """The kernel case's arguments with the band of a kernel that attends a window of keys (``flex``'s
    ``window``, its ``cache_window``) added to the mask, for the ``math`` reference."""
    if window is None:
        return args
    band = band_mask(KERNEL_LENGTH, KERNEL_LENGTH, window=window)
    return {**args, "attn_mask": within_band(args.get("attn_mask"), band)}


def _kernel_inputs(kv_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(15 + kv_heads)
    query = torch.randn(2, 4, KERNEL_LENGTH, 4, generator=generator)  # (N, H, L, E)
    key, value = (torch.randn(2, kv_heads, KERNEL_LENGTH, 4, generator=generator) for _ in range(2))
    return query, key, value


def check_head_layout(model: nn.Module) -> None:
    """The kernel gives the same output for grouped-query (2 key/value heads) and multi-query (1) attention as
    for multi-head attention with each key/value head repeated for its query heads, under every mask."""
    for where, member, spec, kernel in _kernels(model):
        for kv_heads in (2, 1):
            query, key, value = _kernel_inputs(kv_heads)
            groups = query.size(1) // kv_heads
            repeated = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
            for case, args in _kernel_cases(capabilities("attention", spec)):
                with torch.no_grad():
                    grouped, _ = kernel(query, key, value, **args)
                    full, _ = kernel(query, *repeated, **args)
                what = (
                    f"attention '{member}' ({where}) with {kv_heads} key/value head{'s' * (kv_heads > 1)} for 4 query "
                    f"heads differs from 4 heads with each key/value head repeated, with {case}"
                )
                _expect_close(grouped, full, what)


def check_reference(model: nn.Module) -> None:
    """Members that declare a reference meet it: a kernel declaring ``exact_softmax`` equals the ``math``
    kernel under every mask and head layout; a positional member declaring ``relative`` leaves every attention
    score unchanged when all positions shift by the same amount (by 1 and by 161, over 150 tokens: past the
    T5 buckets' 128, the rotary table's first 64)."""
    positional = model.config.component_name("positional")
    for where, attention, spec, kernel in _kernels(model):
        if not capabilities("attention", spec).exact_softmax:
            continue
        # the same cap and the same sink logits, if any
        reference = partial(
            scaled_dot_product,
            softcap=getattr(kernel, "softcap", None),
            sinks=getattr(kernel, "sinks", None),
        )
        for kv_heads in (4, 2, 1):
            query, key, value = _kernel_inputs(kv_heads)
            for case, args in _kernel_cases(capabilities("attention", spec)):
                banded = _banded(args, getattr(kernel, "cache_window", None))  # a window's band, for math too
                with torch.no_grad():
                    out, expected = (
                        kernel(query, key, value, **args)[0],
                        reference(query, key, value, **banded)[0],
                    )
                what = (
                    f"attention '{attention}' ({where}) declares exact_softmax but differs from the 'math' "
                    f"kernel with {kv_heads} key/value heads and {case}"
                )
                _expect_close(out, expected, what)
    if capabilities("positional", positional).relative:
        member = next(m for m in model.modules() if isinstance(m, PositionalEncoding))
        base = _scores(model, member, shift=0)
        for shift in RELATIVE_SHIFTS:
            moved = _scores(model, member, shift=shift)
            if not torch.allclose(moved, base, atol=RELATIVE_TOL, rtol=RELATIVE_TOL):
                diff = (moved - base).abs().nan_to_num(float("inf")).max().item()
                raise ConformanceFailure(
                    f"positional '{positional}' declares relative but its attention scores over {RELATIVE_LENGTH} "
                    f"tokens change when every position shifts by {shift} (max |difference| {diff:.2g} > "
                    f"{RELATIVE_TOL:g})"
                )


def _scores(model: nn.Module, member: PositionalEncoding, *, shift: int) -> Tensor:
    """Attention scores ``(1, H, L, L)`` of fixed random tokens placed at positions ``shift .. shift + L - 1``,
    through all three positional hooks (``embed``, ``rotate``, ``bias``)."""
    config = model.config
    heads, kv_heads = config.num_heads, config.num_kv_heads or config.num_heads
    width = config.resolved_head_dim  # E: D / H unless head_dim frees it
    generator = torch.Generator().manual_seed(16)
    x = torch.randn(1, RELATIVE_LENGTH, config.d_model, generator=generator)
    w_q = torch.randn(config.d_model, heads * width, generator=generator) / config.d_model**0.5
    w_k = torch.randn(config.d_model, kv_heads * width, generator=generator) / config.d_model**0.5
    with torch.no_grad():
        x = member.embed(x, offset=shift)
        q = (x @ w_q).view(1, RELATIVE_LENGTH, heads, width).transpose(1, 2)  # (1, H, L, E)
        k = (x @ w_k).view(1, RELATIVE_LENGTH, kv_heads, width).transpose(1, 2)  # (1, Hkv, L, E)
        q, k = member.rotate(q, k, offset=shift)
        scores = q @ k.repeat_interleave(heads // kv_heads, 1).transpose(-2, -1) / width**0.5
        bias = member.bias(RELATIVE_LENGTH, shift + RELATIVE_LENGTH, offset=shift)
    return scores if bias is None else scores + bias[..., shift:]


def _loss(model: nn.Module, ids: Tensor, src: Tensor) -> Tensor:
    """Causal kinds: position i predicts token i + 1. Others see every token, so the token at position
    :data:`HIDDEN` of each row is replaced by :data:`MASK_TOKEN` and predicted: every row looks the same there,
    so only a model that attends to the rest of its row can tell the rows apart."""
    if kind(model.config.kind).causal:
        inputs, targets = ids[:, :-1], ids[:, 1:]
    else:
        hidden = torch.arange(ids.size(1))[None, :] == HIDDEN
        inputs, targets = ids.masked_fill(hidden, MASK_TOKEN), ids.masked_fill(~hidden, -100)
    logits = _forward(model, inputs, src=src)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def check_train(model: nn.Module) -> None:
    """AdamW (lr :data:`MEMORIZE_LR`) memorizes one batch of :data:`MEMORIZE_ROWS` rows of random tokens: the
    loss falls to :data:`MEMORIZE_LOSS` within :data:`MEMORIZE_STEPS` steps. Calibrated on the built-ins: the
    slowest needs about 60 steps (seq2seq, ``linear``, post-norm; at lr 3e-2 it diverges), a model whose
    attention outputs zeros stays above 1.6 (with rotary or no positions) and a model whose backward pass is
    wrong climbs. The model is trained in place, so this check runs last; ``--quick`` skips it."""
    ids = _tokens(MEMORIZE_ROWS, MEMORIZE_LENGTH, seed=8) % (MASK_TOKEN - 1) + 1  # never the mask token
    src = _tokens(MEMORIZE_ROWS, SOURCE_LENGTH, seed=9)
    optimizer = torch.optim.AdamW(model.parameters(), lr=MEMORIZE_LR, foreach=True)
    losses = []
    model.train()
    try:
        for _ in range(MEMORIZE_STEPS):
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model, ids, src)
            losses.append(loss.item())
            if losses[-1] <= MEMORIZE_LOSS:
                return
            loss.backward()
            optimizer.step()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    raise ConformanceFailure(
        f"{MEMORIZE_STEPS} AdamW steps did not memorize one batch: the loss went from {losses[0]:.3f} to "
        f"{min(losses):.3f} at best, not below {MEMORIZE_LOSS:g}"
    )


CHECKS: dict[str, Callable[[Any], None]] = {
    "causality": check_causality,
    "padding": check_padding,
    "determinism": check_determinism,
    "cached_decoding": check_cached_decoding,
    "fully_padded_rows": check_fully_padded_rows,
    "documents": check_documents,
    "gradient_flow": check_gradient_flow,
    "head_layout": check_head_layout,
    "reference": check_reference,
    "mixture": check_mixture,
    "train": check_train,
}
"""The checks run on a built model, in order (``builds`` comes first; ``train`` last, as it trains)."""
CHECK_NAMES = ("builds", *CHECKS)
