"""Tokens/s of one training step (forward + backward + AdamW): swapformer vs Hugging Face GPT-2, same sizes.

The shakespeare-char configuration (4 layers, 4 heads, d_model 128, context 64, batch 12, GELU MLP 4x, learned
positions, pre-norm, tied embeddings, biases, dropout 0). Peers, all built here with no download:

* Hugging Face's ``GPT2LMHeadModel`` from a ``GPT2Config``, with ``attn_implementation`` eager and sdpa;
* a minimal GPT in plain PyTorch with nanoGPT's architecture (fused q/k/v projection, ``F.scaled_dot_product_attention``
  with ``is_causal``, ``nn.GELU``, ``nn.LayerNorm``), written below: the leanest eager implementation of the same
  model, to show how much of a step any implementation can still save.

Two optimizer settings, each in the same loop for every model: torch's default ``AdamW`` (a per-tensor loop on
CPU), and fused ``AdamW``, which is both Hugging Face Trainer's default (``adamw_torch_fused``) and what
swapformer's Lightning modules configure. Models are timed in interleaved rounds so a change in machine load
hits all of them alike. Then the whole ``swapformer fit`` loop (data, Lightning, logging) on the shakespeare
recipe, to see what the framework costs around the step.

    python benchmarks/train_step.py [--rounds 5] [--steps 20] [--compile] [--threads N] [--data PATH] [--fit-steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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


class MinimalGPT(nn.Module):
    """nanoGPT's architecture in plain PyTorch: the leanest eager implementation of the same model."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(CONTEXT, D)
        self.blocks = nn.ModuleList(MinimalBlock() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, x):
        h = self.wte(x) + self.wpe(torch.arange(x.shape[1]))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


class MinimalBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):
        n, length, _ = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(n, length, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(n, length, D))
        return x + self.mlp(self.ln_2(x))


def make_step(model, forward, *, fused: bool):
    """One training step of ``model`` on fixed random batches, with torch's AdamW (per-tensor or fused)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=fused or None)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, VOCAB, (BATCH, CONTEXT), generator=g)
    y = torch.randint(4, VOCAB, (BATCH, CONTEXT), generator=g)

    def step() -> None:
        logits = forward(model, x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_interleaved(steps: dict, *, rounds: int, per_round: int, warmup: int = 5) -> dict[str, float]:
    """Median seconds per step of each entry, timed in alternating rounds of ``per_round`` steps."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fit_loop(data: str, steps: int) -> tuple[float, float]:
    """(tokens/s of training steps, wall seconds) of ``swapformer fit`` on the shakespeare recipe."""
    import tempfile

    from swapformer.cli import run
    from swapformer.training import TokenThroughput

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
                "--trainer.callbacks=[{class_path: swapformer.training.TokenThroughput}]",
            ]
        )
        wall = time.perf_counter() - start
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, TokenThroughput))
    return monitor.tokens_per_second, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per model per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", default="../shared/data/tinyshakespeare/input.txt")
    parser.add_argument("--fit-steps", type=int, default=300)
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (inductor) first")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = BATCH * CONTEXT
    builders = {
        "swapformer (sdpa)": (swapformer_model, lambda m, x: m(x)),
        "minimal GPT, nanoGPT's design": (MinimalGPT, lambda m, x: m(x)),
        "HF GPT2LMHeadModel (eager)": (lambda: hf_model("eager"), lambda m, x: m(x).logits),
        "HF GPT2LMHeadModel (sdpa)": (lambda: hf_model("sdpa"), lambda m, x: m(x).logits),
    }
    print(
        f"training step, batch {BATCH} x {CONTEXT}, {LAYERS}L {HEADS}H d={D}, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} interleaved rounds x {args.steps} steps{', compiled' if args.compile else ''}"
    )
    for label, fused in (("torch's default AdamW (per-tensor loop)", False), ("fused AdamW", True)):
        steps = {}
        for name, (build, forward) in builders.items():
            torch.manual_seed(0)
            model = build()
            steps[name] = make_step(torch.compile(model) if args.compile else model, forward, fused=fused)
        results = time_interleaved(steps, rounds=args.rounds, per_round=args.steps)
        base = results["swapformer (sdpa)"]
        print(f"\n{label}")
        print(f"{'model':32} {'ms/step':>9} {'tokens/s':>10} {'time / swapformer':>18}")
        for name, seconds in results.items():
            print(f"{name:32} {seconds * 1e3:9.2f} {tokens / seconds:10,.0f} {seconds / base:17.2f}x")
        hf = results["HF GPT2LMHeadModel (sdpa)"]
        print(f"swapformer vs HF sdpa: {hf / base:.2f}x (target 1.25x)")
    if args.fit_steps and Path(args.data).exists():
        rate, wall = fit_loop(args.data, args.fit_steps)
        print(
            f"\nswapformer fit, {args.fit_steps} steps end to end (the recipe: rope, no biases, fused AdamW, "
            f"clipping): {wall:.1f} s wall (startup and data included), {rate:,.0f} tokens/s in training steps"
        )


if __name__ == "__main__":
    main()
