"""What rotary positions cost in a training step: swapformer's causal LM with ``positional: rope`` vs ``learned``,
beside nanoGPT's ``model.py`` at the same configuration.

nanoGPT's CPU configuration (4 layers, 4 heads, d_model 128, context 64, batch 12, GELU MLP 4x, pre-norm, tied
embeddings, no biases in any Linear or LayerNorm, dropout 0: the shakespeare-char recipe), one training step =
forward + cross-entropy + backward + fused AdamW, the optimizer swapformer's Lightning modules configure. Models
built from the same seed and timed in interleaved rounds so a change in machine load hits them alike:

* ``nanoGPT model.py``: nanoGPT's model design (``benchmarks/nanogpt.py``: fused q/k/v projection, SDPA with
  ``is_causal``, learned positions by ``nn.Embedding``), and a second copy of it built the same way, whose ratio
  to the first is the noise floor of the run (two equal models differ by a few percent in one run);
* ``learned``: absolute positions added to the embeddings (one table lookup per step, nothing in attention);
* ``learned, one q/k/v Linear``: the same model with q, k and v from one ``Linear(D, 3 D)`` as nanoGPT's
  ``c_attn`` (:class:`OneQKVLinear`, a measurement only): what our three projections cost against its one;
* ``rope``: swapformer's rotary member, as the recipes build it;
* ``rope, Llama's formula``: the same model with the rotation written as Hugging Face's Llama writes it,
  ``q * cos + rotate_half(q) * sin`` through autograd, on the same cos/sin table: the cost issue 17 measured.

``--compile`` times the same steps compiled as well: swapformer's models as ``compile: true`` compiles them (each
block, :func:`swapformer.training.distributed.compile_blocks`), nanoGPT's as its ``train.py`` does (the whole
model); the first step's wall time is printed as the compile time. ``--clock cpu`` (the default) times the
process's CPU time, which a shared machine disturbs less than wall time; ``--clock wall`` for wall time.

Targets (issue 31): nanoGPT / learned >= 1.0 (ours at least as fast), rope / learned <= 1.05 eager and <= 1.01
compiled.

Then the rotation alone (queries and keys of one layer, forward + backward) for the same three, and rope's
twelve element-wise kernels bare (no autograd, tables looked up once): rope's cost over no rotation less the bare
kernels is what it adds beyond its arithmetic.

Target: rope / learned <= 1.05 per training step.

Rotation variants tried for issue 17 (one layer's q and k as above, forward + backward, microseconds over no
rotation, 1 thread, medians of interleaved rounds on a loaded 2-core machine; compare within a run only).
Run A: Llama's formula through autograd 1790; halves swapped by roll 840 or by cat 875, then mul + addcmul;
four in-place half-width kernels 535; one full-width multiply + two in-place half-width addcmul_ (kept) 463,
or 727 with an (L, E) table broadcast over heads instead of one repeated over heads. Run B: Llama's formula
1440, the same under a hand-written inverse-rotation backward 1015, complex multiply (view_as_complex needs
an interleaved copy each way) 1570, flip of a (2, E/2) view 1250. Run C: kept 640, two full-width addcmul_ on
views shifted by E/2 (zeros masking the neighbour head) 770. Run D: kept 550, torch._foreach_ over q and k
together 610. Concatenating q and k first was slower in every run. Run E (session 10): kept 191, complex
multiply on features already in pairs (no interleaving copies) 200-204.

    python benchmarks/rope.py [--rounds 7] [--steps 20] [--threads 2] [--clock cpu|wall] [--compile]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from nanogpt import NanoGPT
from torch import nn

from swapformer import build_causal_lm
from swapformer.components.positional import RotaryPositionalEncoding
from swapformer.components.positional.rope import _rotated
from swapformer.nn import MultiHeadAttention

VOCAB, D, LAYERS, HEADS, CONTEXT, BATCH = 65, 128, 4, 4, 64, 12
TARGET, COMPILED_TARGET = 1.05, 1.01


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def llama_rotate(self: RotaryPositionalEncoding, q: torch.Tensor, k: torch.Tensor, *, offset: int = 0):
    """Hugging Face Llama's ``apply_rotary_pos_emb`` on rows of the module's cos/sin table (the peer; what
    swapformer ran before issue 17)."""
    end = offset + q.size(-2)
    if end > self.cos.size(0):
        self._grow(end, q.device)
    cos, sin = self.cos[offset:end].to(q.dtype), self.sin[offset:end].to(q.dtype)  # (L, E)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class LlamaRotary(RotaryPositionalEncoding):
    rotate = llama_rotate


def build(positional: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_causal_lm(
        dict(
            vocab_size=VOCAB,
            d_model=D,
            num_heads=HEADS,
            num_layers=LAYERS,
            d_ff=4 * D,
            max_seq_len=CONTEXT,
            dropout=0.0,
            attention="sdpa",
            positional="rope" if positional == "llama" else positional,
            norm={"name": "layernorm", "bias": False},  # nanoGPT's bias=False, as the shakespeare recipe
            placement="pre",
            ffn={"name": "gelu", "bias": False},
            tie_embeddings=True,
            bias=False,
        )
    )
    if positional == "llama":
        model.positional.__class__ = LlamaRotary  # every layer borrows this one module
    return model


class OneQKVLinear(MultiHeadAttention):
    """Self-attention of a training step with q, k and v from one ``Linear(D, 3 D)``, as nanoGPT's ``c_attn``
    (its weight the three stacked): a measurement of what the three projections cost, not a swapformer option
    (checkpoints name the three). Session 15-16 took the one GEMM for the main difference left."""

    def forward(
        self, x, memory=None, *, attn_mask=None, is_causal=False, offset=0, need_weights=False, cache=None
    ):
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, -1, self.head_dim).transpose(1, 2)  # (N, 3 H, L, E)
        q, k, v = qkv.split(self.num_heads, 1)
        if self.positional is not None:
            q, k = self.positional.rotate(q, k, offset=offset)
        out, _ = self.kernel(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


def one_qkv_linear(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every attention layer an :class:`OneQKVLinear` holding its own three weights stacked."""
    for layer in model.decoder.layers:
        attention = layer.self_attention.sublayer
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        attention.qkv = nn.Linear(D, 3 * D, bias=False)
        with torch.no_grad():
            attention.qkv.weight.copy_(torch.cat([p.weight for p in projections]))
        del attention.q_proj, attention.k_proj, attention.v_proj
        attention.__class__ = OneQKVLinear
    return model


def make_step(
    model: torch.nn.Module, *, vocab: int = VOCAB, batch: int = BATCH, context: int = CONTEXT
) -> Callable[[], None]:
    """One training step of ``model`` (forward, cross-entropy, backward, fused AdamW) on fixed random tokens."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(vocab, (batch, context), generator=g)
    y = torch.randint(vocab, (batch, context), generator=g)

    def step() -> None:
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def make_rotation(rotate: Callable | None) -> Callable[[], None]:
    """Forward + backward of one layer's rotation, q and k laid out as attention hands them over."""
    g = torch.Generator().manual_seed(0)
    shape = (BATCH, CONTEXT, HEADS, D // HEADS)
    q_proj, k_proj = (torch.randn(shape, generator=g, requires_grad=True) for _ in range(2))
    grad = torch.randn(shape, generator=g).transpose(1, 2)

    def step() -> None:
        q, k = q_proj.transpose(1, 2), k_proj.transpose(1, 2)  # (N, H, L, E) views, as in attention
        if rotate is not None:
            q, k = rotate(q, k)
        torch.autograd.backward((q, k), (grad, grad))

    return step


def make_bare_rotation(rope: RotaryPositionalEncoding) -> Callable[[], None]:
    """The kernels of ``rope``'s rotation alone: q and k rotated, then two gradients rotated back, as its forward
    and backward run them, on tables looked up once, without autograd: ``rope``'s row less this one is what the
    rotation costs beyond its arithmetic (the hook's lookups, the autograd node, the allocations)."""
    g = torch.Generator().manual_seed(0)
    shape = (BATCH, CONTEXT, HEADS, D // HEADS)
    q, k, grad = (torch.randn(shape, generator=g).transpose(1, 2) for _ in range(3))
    rope.rotate(q, k)  # grow the tables
    cos, sin = rope._table(q, 0, CONTEXT)

    def step() -> None:
        _rotated(q, cos, sin, 1.0), _rotated(k, cos, sin, 1.0)
        _rotated(grad, cos, sin, -1.0), _rotated(grad, cos, sin, -1.0)

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]],
    *,
    rounds: int,
    per_round: int,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each entry, timed in alternating rounds of ``per_round`` calls after
    ``warmup`` calls each; ``clock`` is wall time, or e.g. ``time.process_time`` on a shared machine.

    Each round takes the entries in a new order (shuffled, seeded): in a fixed order an entry always follows the
    same other one, whose caches and freed memory it inherits, and on a shared 2-core machine that bias was as
    large as the 1-2% differences measured here (session 17: the entry timed right after nanoGPT's model read
    100-200 us per attention layer slower in a fixed order, and level with it in shuffled ones)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order, shuffle = list(steps), random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            step = steps[name]
            for _ in range(per_round):
                start = clock()
                step()
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def make_nanogpt_step(*, compile: bool = False) -> Callable[[], None]:
    """:func:`make_step` for nanoGPT's model, whose forward takes the targets and returns the loss."""
    torch.manual_seed(0)
    model = NanoGPT(vocab_size=VOCAB, d_model=D, num_heads=HEADS, num_layers=LAYERS, context=CONTEXT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    forward = torch.compile(model) if compile else model  # as nanoGPT's train.py compiles it
    g = torch.Generator().manual_seed(0)
    x = torch.randint(VOCAB, (BATCH, CONTEXT), generator=g)
    y = torch.randint(VOCAB, (BATCH, CONTEXT), generator=g)

    def step() -> None:
        forward(x, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def compiled(positional: str) -> torch.nn.Module:
    """:func:`build` with each block compiled, as ``compile: true`` does."""
    from swapformer.training.distributed import compile_blocks

    model = build(positional)
    compile_blocks(model)
    return model


def first_call(steps: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Wall seconds of each entry's first call (for a compiled model: the compilation)."""
    seconds = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
    return seconds


def report(results: dict[str, float], clock: str, first: dict[str, float] | None = None) -> None:
    base, nano = results["learned"], results["nanoGPT model.py"]
    print(f"{'model':28} {f'ms/step ({clock})':>16} {'/ learned':>10} {'nanoGPT / this':>15}", end="")
    print(f" {'first step s':>13}" if first else "")
    for name, seconds in results.items():
        row = f"{name:28} {seconds * 1e3:16.2f} {seconds / base:9.3f}x {nano / seconds:14.3f}x"
        print(row + (f" {first[name]:13.1f}" if first else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="calls per contender per round")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--compile", action="store_true", help="also the compiled steps")
    parser.add_argument("--no-rotation", action="store_true", help="leave out the rotation alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"training step, batch {BATCH} x {CONTEXT}, {LAYERS}L {HEADS}H d={D}, no biases, fused AdamW, "
        f"{torch.get_num_threads()} threads, {args.clock} clock, median of {args.rounds} interleaved rounds x "
        f"{args.steps} steps"
    )
    names = {"learned": "learned", "rope": "rope", "llama": "rope, Llama's formula"}
    steps = {"nanoGPT model.py": make_nanogpt_step(), "nanoGPT model.py, 2nd copy": make_nanogpt_step()}
    steps.update({names[p]: make_step(build(p)) for p in names})
    steps["learned, one q/k/v Linear"] = make_step(one_qkv_linear(build("learned")))
    results = time_interleaved(steps, rounds=args.rounds, per_round=args.steps, clock=clock)
    report(results, args.clock)
    ratio, nano = results["rope"] / results["learned"], results["nanoGPT model.py"] / results["learned"]
    floor = results["nanoGPT model.py, 2nd copy"] / results["nanoGPT model.py"]
    print(f"rope / learned: {ratio:.3f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"nanoGPT / learned: {nano:.3f} (target >= 1.0: {'met' if nano >= 1.0 else 'NOT met'}); ", end="")
    print(f"noise floor, nanoGPT's 2nd copy / 1st: {floor:.3f}")
    one = results["learned, one q/k/v Linear"] / results["learned"]
    print(f"learned with one q/k/v Linear / learned: {one:.3f} (what the three projections cost)")

    if args.compile:
        steps = {
            "nanoGPT model.py": make_nanogpt_step(compile=True),
            "learned": make_step(compiled("learned")),
            "rope": make_step(compiled("rope")),
        }
        first = first_call(steps)
        results = time_interleaved(steps, rounds=args.rounds, per_round=args.steps, clock=clock)
        print(
            "\ncompiled (swapformer: each block, as compile: true; nanoGPT: the whole model, as its train.py)"
        )
        report(results, args.clock, first)
        ratio = results["rope"] / results["learned"]
        met = "met" if ratio <= COMPILED_TARGET else "NOT met"
        print(f"compiled rope / learned: {ratio:.3f} (target <= {COMPILED_TARGET}: {met})")

    if args.no_rotation:
        return
    rope = RotaryPositionalEncoding(head_dim=D // HEADS)
    rotations = {
        "no rotation": make_rotation(None),
        "rope": make_rotation(rope.rotate),
        "rope, Llama's formula": make_rotation(lambda q, k: llama_rotate(rope, q, k)),
        "rope's kernels, bare": make_bare_rotation(rope),
    }
    results = time_interleaved(rotations, rounds=args.rounds, per_round=5 * args.steps, clock=clock)
    floor = results["no rotation"]
    print(f"\nrotation of one layer's q and k {(BATCH, HEADS, CONTEXT, D // HEADS)}, forward + backward")
    print(f"{'':24} {'us/call':>9} {'us over none':>13}")
    for name, seconds in results.items():
        over = seconds if name == "rope's kernels, bare" else seconds - floor  # (no autograd: no floor)
        print(f"{name:24} {seconds * 1e6:9.1f} {over * 1e6:13.1f}")
    beyond = results["rope"] - floor - results["rope's kernels, bare"]
    print(f"rope beyond its kernels (lookups, autograd node, allocations): {beyond * 1e6:.1f} us per layer")


if __name__ == "__main__":
    main()
