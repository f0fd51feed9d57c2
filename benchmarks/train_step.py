"""Tokens/s of one training step (forward + backward + AdamW): swapformer vs Hugging Face GPT-2, same sizes.

The shakespeare-char configuration (4 layers, 4 heads, d_model 128, context 64, batch 12, GELU MLP 4x, learned
positions, pre-norm, tied embeddings, biases, dropout 0), Hugging Face's ``GPT2LMHeadModel`` built from a
``GPT2Config`` (no download) with ``attn_implementation`` eager and sdpa. Then the whole ``swapformer fit``
loop (data, Lightning, logging) on the shakespeare recipe, to see what the framework costs around the step.

    python benchmarks/train_step.py [--steps 50] [--threads N] [--data ../shared/data/tinyshakespeare/input.txt]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB, D, LAYERS, HEADS, CONTEXT, BATCH = 69, 128, 4, 4, 64, 12


def swapformer_model():
    from swapformer import build_causal_lm

    return build_causal_lm(
        dict(
            vocab_size=VOCAB,
            d_model=D,
            num_heads=HEADS,
            num_layers=LAYERS,
            d_ff=4 * D,
            max_seq_len=CONTEXT,
            dropout=0.0,
            attention="sdpa",
            positional="learned",
            norm="layernorm",
            placement="pre",
            ffn="gelu",
            tie_embeddings=True,
            bias=True,
        )
    )


def hf_model(attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=CONTEXT,
        n_embd=D,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=4 * D,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu",
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config, attn_implementation=attn) if _accepts_attn() else GPT2LMHeadModel(config)


def _accepts_attn() -> bool:
    import inspect

    from transformers import GPT2LMHeadModel

    return "attn_implementation" in inspect.signature(GPT2LMHeadModel.__init__).parameters


def time_steps(model, forward, steps: int, warmup: int = 5) -> float:
    """Median seconds per step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, VOCAB, (BATCH, CONTEXT), generator=g)
    y = torch.randint(4, VOCAB, (BATCH, CONTEXT), generator=g)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        logits = forward(model, x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_loop(data: str, steps: int) -> tuple[float, float]:
    """(tokens/s of training steps, wall seconds) of ``swapformer fit`` on the shakespeare recipe."""
    import tempfile

    from swapformer.cli import run
    from swapformer.lightning import TokenThroughput

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "causal_lm" / "shakespeare-char.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cli = run(
            [
                "fit",
                "--config",
                str(recipe),
                f"--data.init_args.path={Path(data).resolve()}",
                f"--trainer.max_steps={steps}",
                "--trainer.limit_val_batches=0",
                "--trainer.logger=false",
                "--trainer.enable_checkpointing=false",
                "--trainer.enable_progress_bar=false",
                f"--trainer.default_root_dir={tmp}",
                "--trainer.callbacks=[{class_path: swapformer.lightning.TokenThroughput}]",
            ]
        )
        wall = time.perf_counter() - start
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, TokenThroughput))
    return monitor.tokens_per_second, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", default="../shared/data/tinyshakespeare/input.txt")
    parser.add_argument("--fit-steps", type=int, default=300)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens = BATCH * CONTEXT
    results = {"swapformer (sdpa)": time_steps(swapformer_model(), lambda m, x: m(x), args.steps)}
    for attn in ("eager", "sdpa"):
        results[f"HF GPT2LMHeadModel ({attn})"] = time_steps(
            hf_model(attn), lambda m, x: m(x).logits, args.steps
        )
    base = results["swapformer (sdpa)"]
    print(
        f"\ntraining step, batch {BATCH} x {CONTEXT}, {LAYERS}L {HEADS}H d={D}, {torch.get_num_threads()} threads"
    )
    print(f"{'model':32} {'ms/step':>9} {'tokens/s':>10} {'time / swapformer':>18}")
    for name, seconds in results.items():
        print(f"{name:32} {seconds * 1e3:9.2f} {tokens / seconds:10,.0f} {seconds / base:17.2f}x")
    if Path(args.data).exists():
        rate, wall = fit_loop(args.data, args.fit_steps)
        print(
            f"\nswapformer fit, {args.fit_steps} steps end to end: {wall:.1f} s wall (startup and data included), "
            f"{rate:,.0f} tokens/s in training steps = {rate / (tokens / base):.2f}x the bare step"
        )


if __name__ == "__main__":
    main()
