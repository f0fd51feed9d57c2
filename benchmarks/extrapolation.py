"""Length extrapolation: train the shakespeare-char baby GPT at context 64 with each positional encoding, then
measure the per-token validation loss at longer contexts (64, 128, 256, 512).

    python benchmarks/extrapolation.py [--data ../shared/data/tinyshakespeare/input.txt] [--steps 2000]
        [--lengths 64 128 256 512] [--out docs/assets/extrapolation.png] [--device cpu]

Every model has the sizes and optimizer of recipes/causal_lm/shakespeare-char.yaml (4 layers, 4 heads, d=128,
pre-norm, GELU, tied, no biases; AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1, warmup 100 then cosine to
1e-4, gradient clipping 1.0; batches of 12 x 64 at random offsets) and sees the same batches from the same seed;
only the positional member differs. A plain loop trains them (the recipe's optimizer and schedule, no Lightning).

Evaluation. The same stretch of validation text, ``--windows`` chunks of the longest length spread evenly over
the validation split, is cut into non-overlapping windows of each length (as in Press et al., 2022): a length-L
score is the mean next-token loss over the same tokens, each seen with up to L tokens of context. A model that
extrapolates gets lower loss with more context; one that does not gets higher. The second table splits the
longest length's loss by the position of the predicted token; positions from 64 on were never trained.

``sinusoidal:scaled`` is ``sinusoidal`` with the token embeddings multiplied by sqrt(D) (Vaswani et al., section
3.4). The recipe does not scale (GPT style), and then the fixed sinusoids, of order 1, swamp token embeddings
initialized at std 0.02; the scaled row shows how much of sinusoidal's result is that mismatch.

``learned`` gets a table of max(lengths) rows of which training only ever reaches the first 64; rows 64 and up
keep their initialization (no gradient reaches them and embeddings get no weight decay). That is the lecture's
claim made concrete: a learned table has nothing to say about positions it never saw.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "../shared/data/tinyshakespeare/input.txt"
POSITIONALS = ("sinusoidal", "sinusoidal:scaled", "learned", "rope", "alibi", "t5_relative", "none")
SCALED = (
    ":scaled"  # a suffix: the same member with token embeddings multiplied by sqrt(D), as in Vaswani et al.
)
TRAIN_CONTEXT, BATCH_SIZE, SEED = 64, 12, 1337
MODEL = dict(d_model=128, num_heads=4, num_layers=4, d_ff=512, dropout=0.0, attention="sdpa", norm="layernorm",
             placement="pre", ffn="gelu", tie_embeddings=True, bias=False)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"tiny shakespeare input.txt (default: {DEFAULT_DATA}, from the repo)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (default 2000)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--windows", type=int, default=64, help="chunks of the longest length evaluated (64)")
    parser.add_argument(
        "--positional",
        nargs="+",
        default=list(POSITIONALS),
        help="members to compare; NAME:scaled also multiplies token embeddings by sqrt(D)",
    )
    parser.add_argument("--out", default="docs/assets/extrapolation.png", help="the plot (PNG); '' for none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--max-chars", type=int, help="read at most this many characters (quick runs)")
    args = parser.parse_args(argv)
    longest = max(args.lengths)
    if any(longest % length for length in args.lengths):
        parser.error(f"every length must divide the longest ({longest}), so each scores the same tokens")
    if args.steps < 1 or args.windows < 1:
        parser.error("--steps and --windows must be at least 1")
    return args


def load_data(args: argparse.Namespace):
    """The shakespeare-char data module, set up (char tokenizer fitted on the training 90%)."""
    from swapformer.data import CausalLMDataModule

    path = Path(args.data)
    path = path if path.is_absolute() or path.exists() else REPO / path
    if not path.is_file():
        raise SystemExit(
            f"tiny shakespeare not found at {path}; pass --data path/to/input.txt (the file is "
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt)"
        )
    data = CausalLMDataModule(
        path=str(path),
        tokenizer="char",
        seq_len=TRAIN_CONTEXT,
        batch_size=BATCH_SIZE,
        val_fraction=0.1,
        max_chars=args.max_chars,
        train_samples_per_epoch=args.steps * BATCH_SIZE,
        seed=SEED,
    )
    data.setup("fit")
    return data


def train(positional: str, data, args: argparse.Namespace) -> tuple[torch.nn.Module, float, float]:
    """One model trained for ``args.steps``; returns it, its last training loss and the seconds taken."""
    from swapformer import build_causal_lm
    from swapformer.training.optim import param_groups, schedule_fn

    torch.manual_seed(SEED)
    model = build_causal_lm(
        dict(
            MODEL,
            vocab_size=data.vocab_size,
            positional=positional.removesuffix(SCALED),
            scale_embeddings=positional.endswith(SCALED),
            max_seq_len=max(args.lengths),
        )
    ).to(args.device)
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, weight_decay=0.1)]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))
    warmup = min(100, max(1, args.steps // 10))
    schedule = schedule_fn(
        "warmup_cosine", warmup_steps=warmup, total_steps=args.steps, d_model=128, min_lr_ratio=0.1
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, losses = time.perf_counter(), []
    # the seeded sampler gives every model the same offsets
    for step, batch in enumerate(data.train_dataloader()):
        if step == args.steps:
            break
        ids, labels = batch["input_ids"].long().to(args.device), batch["labels"].long().to(args.device)
        logits = model(ids)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    recent = sum(losses[-50:]) / len(losses[-50:])
    return model.eval(), recent, time.perf_counter() - start


def evaluation_chunks(val: torch.Tensor, *, longest: int, windows: int) -> torch.Tensor:
    """``(K, longest + 1)`` stretches of validation tokens at evenly spaced, non-overlapping starts."""
    available = (val.numel() - 1) // longest
    if available < 1:
        raise SystemExit(f"the validation split has {val.numel()} tokens, fewer than {longest + 1}")
    count = min(windows, available)
    stride = (val.numel() - longest - 1) // max(1, count - 1)
    starts = [i * stride for i in range(count)]
    return torch.stack([val[s : s + longest + 1] for s in starts]).long()


@torch.no_grad()
def evaluate(model, chunks: torch.Tensor, lengths: list[int], device: str) -> dict[int, torch.Tensor]:
    """Per-token losses ``(K, longest)`` of each length: each chunk cut into windows of that length."""
    longest = chunks.size(1) - 1
    result = {}
    for length in lengths:
        inputs = chunks[:, :-1].reshape(-1, length)  # (K * longest / length, length)
        targets = chunks[:, 1:].reshape(-1, length)
        losses = []
        for batch in range(0, inputs.size(0), 16):
            x, y = inputs[batch : batch + 16].to(device), targets[batch : batch + 16].to(device)
            logits = model(x)
            losses.append(F.cross_entropy(logits.transpose(1, 2), y, reduction="none").float().cpu())
        result[length] = torch.cat(losses).reshape(-1, longest)
    return result


def buckets(longest: int) -> list[tuple[int, int]]:
    """[0, 64), [64, 128), [128, 256), ... up to ``longest``: the trained context, then doublings."""
    edges = [0, TRAIN_CONTEXT]
    while edges[-1] < longest:
        edges.append(min(2 * edges[-1], longest))
    return list(itertools.pairwise(edges))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def plot(results: dict[str, dict[int, torch.Tensor]], lengths: list[int], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max(lengths)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, losses in results.items():
        (line,) = left.plot(lengths, [losses[n].mean().item() for n in lengths], marker="o", label=name)
        by_position = losses[longest].mean(0)  # (longest,) mean over windows
        width = 16
        smooth = by_position[: longest // width * width].reshape(-1, width).mean(1)
        right.plot(
            torch.arange(smooth.numel()) * width + width / 2, smooth, color=line.get_color(), label=name
        )
    left.set_xscale("log", base=2)
    left.set_xticks(lengths, [str(n) for n in lengths])
    left.set_xlabel("evaluation length (tokens)")
    left.set_ylabel("mean validation loss (nats / char)")
    left.set_title("loss over the same tokens, with more context")
    for axis in (left, right):
        axis.axvline(TRAIN_CONTEXT, color="grey", linestyle="--", linewidth=1)
        axis.grid(alpha=0.3)
    right.set_xlabel(f"position in a {longest}-token window (mean of {width})")
    right.set_ylabel("validation loss (nats / char)")
    right.set_title(f"loss by position at length {longest}")
    right.text(TRAIN_CONTEXT, 0.98, " trained context", transform=right.get_xaxis_transform(), va="top",
               color="grey")  # fmt: skip
    left.legend(fontsize=8)
    fig.suptitle(f"trained at context {TRAIN_CONTEXT} on tiny shakespeare (chars), evaluated longer")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = sorted(args.lengths)
    data = load_data(args)
    chunks = evaluation_chunks(data.val_tokens, longest=lengths[-1], windows=args.windows)
    print(
        f"{args.steps} steps of {BATCH_SIZE} x {TRAIN_CONTEXT} per model; evaluating {chunks.size(0)} chunks of "
        f"{lengths[-1]} validation tokens ({chunks.size(0) * lengths[-1]:,} tokens) at lengths {lengths}",
        flush=True,
    )
    results: dict[str, dict[int, torch.Tensor]] = {}
    summary = []
    for name in args.positional:
        model, train_loss, seconds = train(name, data, args)
        results[name] = evaluate(model, chunks, lengths, args.device)
        means = {n: results[name][n].mean().item() for n in lengths}
        summary.append((name, train_loss, seconds))
        print(
            f"{name:<17} train loss {train_loss:.3f} ({seconds:.0f} s); "
            + ", ".join(f"L={n}: {means[n]:.3f}" for n in lengths),
            flush=True,
        )
    rows = []
    for name, train_loss, _ in summary:
        means = [results[name][n].mean().item() for n in lengths]
        rows.append(
            [f"`{name}`", f"{train_loss:.3f}", *(f"{m:.3f}" for m in means), f"{means[-1] / means[0]:.2f}"]
        )
    print("\nmean validation loss (nats/char) over the same tokens, by evaluation length (trained at 64):\n")
    header = ["positional", "train loss", *(f"L={n}" for n in lengths), f"L={lengths[-1]} / L={lengths[0]}"]
    print(table(header, rows))
    spans = buckets(lengths[-1])
    rows = [
        [f"`{name}`", *(f"{results[name][lengths[-1]][:, a:b].mean().item():.3f}" for a, b in spans)]
        for name in results
    ]
    print(f"\nloss at length {lengths[-1]} by position of the predicted token:\n")
    print(table(["positional", *(f"{a}-{b - 1}" for a, b in spans)], rows))
    if args.out:
        plot(results, lengths, args.out)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
