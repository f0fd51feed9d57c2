"""What packing buys and what its document mask costs, in training steps of a small causal LM on CPU (issue 29).

The corpus is instruction-like: documents of 20 to 400 tokens (uniform), each ending with eos, random ids. The
model: 4 layers, 4 heads, d_model 128, d_ff 512, rope, pre-norm, vocabulary 256; one step = forward,
cross-entropy over the labels asked, backward, fused AdamW.

1. Document mask cost. The same packed rows of 1024 tokens (``pack: true``: best-fit,
   ``swapformer.data.packing.pack_best_fit``), batch 4:
   ``document mask`` passes the rows' ``document_ids`` (positions restarting per document; ``sdpa`` gets the
   documents as spans and attends each alone, :mod:`swapformer.components.attention.documents`) against
   ``no mask``, which passes nothing (the kernels' fused causal path: the cheapest peer). ``dense mask`` is the
   same model on the dense block-diagonal ``(N, 1, L, L)`` mask (the path before spans), for comparison.
   Target: document mask / no mask <= 1.10.
2. Packing against padding, the same documents in one pass: ``packed`` = best-fit rows of 1024 (batch 4) with
   document masks; ``next_fit`` = the rows cut from the corpus in order (``pack: next_fit``), the same way;
   ``padded`` = one document per row in corpus order, batches of 8 padded to their longest document, with the
   padding mask. All train on every real token of the corpus once; figure: real tokens per second, beside the
   share of each contender's slots that hold a real token (its fill).
   Target: packed / padded >= 1.5.
3. Packing time and fill: ``pack_rows`` (next-fit) and ``pack_best_fit`` over a corpus of ``--setup-documents``
   documents (what ``setup`` adds before training), CPU seconds, rows of 256 to 8192 tokens.

Timed in interleaved rounds (each contender in turn, so a change in the machine's load hits both alike) with the
process's CPU time by default (``--clock wall`` for wall time); medians. The machine's load average (1, 5 and 15
minutes) is printed before and after each part.

    python benchmarks/packing.py [--rounds 5] [--steps 3] [--documents 96] [--threads 2] [--part 1|2|3|both]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import rope  # the interleaved timer of the rope benchmark, beside this script
import torch
import torch.nn.functional as F

from swapformer import build_causal_lm
from swapformer.data.packing import PackedRows, Packing, pack_best_fit, pack_documents, pack_rows

VOCAB, EOS, PAD, IGNORE = 256, 2, 0, -100
SEQ_LEN, PACKED_BATCH, PADDED_BATCH = 1024, 4, 8
SHORTEST, LONGEST = 20, 400
MASK_TARGET, PACKING_TARGET = 1.10, 1.5


def corpus(documents: int, *, seed: int = 0) -> torch.Tensor:
    """A stream of ``documents`` documents of SHORTEST..LONGEST tokens, each ending with eos."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(SHORTEST, LONGEST + 1, (documents,), generator=g).tolist()
    docs = [torch.cat([torch.randint(4, VOCAB, (n - 1,), generator=g), torch.tensor([EOS])]) for n in lengths]
    return torch.cat(docs)


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    sizes = dict(vocab_size=VOCAB, d_model=128, num_heads=4, num_layers=4, d_ff=512, max_seq_len=SEQ_LEN)
    return build_causal_lm({**sizes, "positional": "rope", "norm": "rmsnorm", "dropout": 0.0}).train()


def packed_batches(tokens: torch.Tensor, packing: str = "best_fit") -> list[dict[str, torch.Tensor]]:
    rows = PackedRows(
        tokens=tokens,
        rows=pack_documents(tokens, eos_id=EOS, seq_len=SEQ_LEN, packing=packing),
        seq_len=SEQ_LEN,
        eos_id=EOS,
        pad_id=PAD,
        ignore_id=IGNORE,
        document_ids=True,
    )
    items = [rows[i] for i in range(len(rows))]
    return [
        {key: torch.stack([item[key] for item in items[i : i + PACKED_BATCH]]) for key in items[0]}
        for i in range(0, len(items), PACKED_BATCH)
    ]


def padded_batches(tokens: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """One document per row, batches of PADDED_BATCH padded to their longest; labels: the next token of the
    document, the last (eos) ignored, as packing asks."""
    ends = (tokens == EOS).nonzero().flatten() + 1
    docs = list(torch.tensor_split(tokens, ends[:-1].tolist()))
    batches = []
    for i in range(0, len(docs), PADDED_BATCH):
        group = docs[i : i + PADDED_BATCH]
        width = max(len(d) for d in group)
        ids = torch.full((len(group), width), PAD)
        labels = torch.full((len(group), width), IGNORE)
        mask = torch.zeros(len(group), width, dtype=torch.bool)
        for row, doc in enumerate(group):
            ids[row, : len(doc)], mask[row, : len(doc)] = doc, True
            labels[row, : len(doc) - 1] = doc[1:]
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
    return batches


def dense(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` on the dense document mask: a model without a config keeps it
    (:func:`swapformer.models.inputs.hands_spans`)."""
    model.config = None
    return model


def make_step(model: torch.nn.Module, *, use_documents: bool, use_padding: bool) -> Callable[[dict], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)

    def step(batch: dict[str, torch.Tensor]) -> None:
        logits = model(
            batch["input_ids"],
            batch["attention_mask"] if use_padding else None,
            document_ids=batch["document_ids"] if use_documents else None,
        )
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch["labels"].reshape(-1), ignore_index=IGNORE)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per contender per round (part 1)")
    parser.add_argument("--documents", type=int, default=96, help="documents of the corpus (part 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument(
        "--part", choices=("1", "2", "3", "both"), default="both", help="which measure to run"
    )
    parser.add_argument(
        "--setup-documents", type=int, default=200_000, help="documents of the corpus (part 3)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    tokens = corpus(args.documents)
    packed, next_fit = packed_batches(tokens), packed_batches(tokens, "next_fit")
    padded = padded_batches(tokens)
    real = int(tokens.numel())
    print(
        f"{args.documents} documents of {SHORTEST}-{LONGEST} tokens ({real} tokens): {len(packed)} packed batches "
        f"of {PACKED_BATCH} x {SEQ_LEN} ({len(next_fit)} next-fit), {len(padded)} padded batches of "
        f"{PADDED_BATCH}; 4L 4H d=128 rope, {torch.get_num_threads()} threads, {args.clock} clock, medians of "
        f"{args.rounds} interleaved rounds"
    )
    contenders = {"padded": padded, "next_fit": next_fit, "packed": packed}
    print(
        "fill (real tokens / slots): "
        + ", ".join(f"{n} {real / slots(b):.3f}" for n, b in contenders.items())
    )

    if args.part in ("1", "both"):
        document_mask_cost(packed[0], args.rounds, args.steps, clock)
    if args.part in ("2", "both"):
        packing_against_padding(contenders, real, args.rounds, clock)
    if args.part in ("3", "both"):
        packing_time(args.setup_documents)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def slots(batches: list[dict[str, torch.Tensor]]) -> int:
    return sum(b["input_ids"].numel() for b in batches)


def document_mask_cost(batch: dict[str, torch.Tensor], rounds: int, per_round: int, clock: Callable) -> None:
    steps = {
        "no mask": make_step(build(), use_documents=False, use_padding=False),
        "document mask": make_step(build(), use_documents=True, use_padding=False),
        "dense mask": make_step(dense(build()), use_documents=True, use_padding=False),
    }
    timed = {name: (lambda step=step: step(batch)) for name, step in steps.items()}
    before = load()
    results = rope.time_interleaved(timed, rounds=rounds, per_round=per_round, warmup=2, clock=clock)
    print(
        f"\n1. the same packed rows, batch {PACKED_BATCH} x {SEQ_LEN} ({before}, after: {load()}): {'ms/step':>9}"
    )
    for name, seconds in results.items():
        print(f"   {name:16} {seconds * 1e3:9.1f}")
    ratio = results["document mask"] / results["no mask"]
    verdict = "met" if ratio <= MASK_TARGET else "NOT met"
    print(f"   document mask / no mask: {ratio:.3f} (target <= {MASK_TARGET}: {verdict})")
    print(f"   dense mask / no mask: {results['dense mask'] / results['no mask']:.3f} (before spans)")


def packing_against_padding(
    contenders: dict[str, list[dict]], real: int, rounds: int, clock: Callable
) -> None:
    passes = {
        name: (make_step(build(), use_documents=name != "padded", use_padding=name == "padded"), batches)
        for name, batches in contenders.items()
    }

    def one_pass(step: Callable[[dict], None], batches: list[dict]) -> None:
        for each in batches:
            step(each)

    timed = {name: (lambda s=s, b=b: one_pass(s, b)) for name, (s, b) in passes.items()}
    before = load()
    results = rope.time_interleaved(timed, rounds=rounds, per_round=1, warmup=1, clock=clock)
    print(f"\n2. one pass over the corpus ({real} real tokens; {before}, after: {load()}):")
    print(f"   {'':8} {'s/pass':>8} {'tokens/s':>9} {'slots':>7} {'fill':>6}")
    for name, seconds in results.items():
        used = slots(contenders[name])
        print(f"   {name:8} {seconds:8.2f} {real / seconds:9.0f} {used:7d} {real / used:6.3f}")
    speedup = results["padded"] / results["packed"]
    verdict = "met" if speedup >= PACKING_TARGET else "NOT met"
    print(f"   packed / padded tokens per second: {speedup:.2f}x (target >= {PACKING_TARGET}: {verdict})")
    print(f"   next_fit / padded: {results['padded'] / results['next_fit']:.2f}x (the packing before)")


def packing_time(documents: int) -> None:
    tokens = corpus(documents, seed=1)
    print(f"\n3. packing {documents} documents ({tokens.numel()} tokens), CPU seconds and fill ({load()}):")
    for seq_len in (256, 1024, 4096, 8192):
        start = time.process_time()
        slices = Packing.of_slices(pack_rows(tokens, eos_id=EOS, seq_len=seq_len))
        middle = time.process_time()
        best = pack_best_fit(tokens, eos_id=EOS, seq_len=seq_len)
        end = time.process_time()
        print(
            f"   rows of {seq_len:5d}: next_fit {middle - start:.2f} s, fill {slices.fill(seq_len):.3f}; "
            f"best_fit {end - middle:.2f} s, fill {best.fill(seq_len):.3f}"
        )


if __name__ == "__main__":
    main()
