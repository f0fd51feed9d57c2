"""nanoGPT's ``train.py`` design, written here (no copied code): the lean peer of ``benchmarks/fit_loop.py``.

A separate file so that its whole process imports what nanoGPT's does (torch; yaml to read the recipe's sizes
and settings) and not Lightning, which ``fit_loop.py`` needs for its in-process rows.

    python benchmarks/nanogpt.py --steps 1500 --data path/to/input.txt
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "causal_lm" / "shakespeare-char.yaml"


def recipe(positional: str, steps: int) -> dict[str, Any]:
    """The shakespeare-char recipe with ``positional`` and ``steps`` (the schedule ends at the last step)."""
    config = yaml.safe_load(RECIPE.read_text())
    config["model"]["init_args"].update(positional=positional, total_steps=steps)
    config["trainer"]["max_steps"] = steps
    return config


# ---- nanoGPT's design, written here ---------------------------------------------------------------------------
class NanoBlock(nn.Module):
    """Pre-norm block: one fused q/k/v projection, SDPA with ``is_causal``, a 4x GELU MLP, no biases."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(d_model, bias=False)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.ln_2 = nn.LayerNorm(d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model, bias=False),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        q, k, v = (t.view(n, length, self.num_heads, d // self.num_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, H, L, E)
        x = x + self.proj(y.transpose(1, 2).reshape(n, length, d))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """Token and learned position embeddings, blocks, a final norm, and a head tied to the token embedding."""

    def __init__(
        self, *, vocab_size: int, d_model: int, num_heads: int, num_layers: int, context: int
    ) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, d_model), nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(NanoBlock(d_model, num_heads) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.ndim >= 2:  # GPT-2's init: N(0, 0.02), residual projections scaled by depth
                std = (
                    0.02 / math.sqrt(2 * num_layers)
                    if name.endswith(("proj.weight", "mlp.2.weight"))
                    else 0.02
                )
                nn.init.normal_(p, std=std)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h = self.wte(ids) + self.wpe(torch.arange(ids.size(1)))
        for block in self.blocks:
            h = block(h)
        logits = self.head(self.ln_f(h))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def nanogpt_train(steps: int, data: Path) -> None:
    """nanoGPT's training loop at the recipe's sizes and settings (a whole process: see the module docstring)."""
    config = recipe("learned", steps)
    m, d, t = config["model"]["init_args"], config["data"]["init_args"], config["trainer"]
    torch.manual_seed(config["seed_everything"])
    text = data.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    tokens = torch.tensor([lookup[c] for c in text], dtype=torch.uint8)
    split = int(len(tokens) * (1 - d["val_fraction"]))
    splits = {"train": tokens[:split], "val": tokens[split:]}
    context, batch_size = d["seq_len"], d["batch_size"]

    def get_batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        source = splits[name]
        offsets = torch.randint(len(source) - context, (batch_size,))
        x = torch.stack([source[i : i + context] for i in offsets]).long()
        y = torch.stack([source[i + 1 : i + 1 + context] for i in offsets]).long()
        return x, y

    model = NanoGPT(
        vocab_size=len(chars),
        d_model=m["d_model"],
        num_heads=m["num_heads"],
        num_layers=m["num_layers"],
        context=context,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": m["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=m["lr"], betas=tuple(m["betas"]), fused=True)
    warmup, min_lr = m["warmup_steps"], m["lr"] * m["min_lr_ratio"]

    def lr_at(step: int) -> float:
        if step < warmup:
            return m["lr"] * (step + 1) / (warmup + 1)
        ratio = min(1.0, (step - warmup) / max(1, steps - warmup))
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (m["lr"] - min_lr)

    @torch.no_grad()
    def estimate_loss() -> float:
        model.eval()
        losses = torch.stack([model(*get_batch("val")) for _ in range(t["limit_val_batches"])])
        model.train()
        return float(losses.mean())

    best = math.inf
    x, y = get_batch("train")
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1)
        loss = model(x, y)
        x, y = get_batch("train")  # the next batch while (on a GPU) the step runs
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), t["gradient_clip_val"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % t["log_every_n_steps"] == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
        if step % t["val_check_interval"] == 0:
            val = estimate_loss()
            print(f"step {step}: val loss {val:.4f}", flush=True)
            if val < best:
                best = val
                with tempfile.TemporaryDirectory() as tmp:
                    torch.save(
                        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, f"{tmp}/ckpt.pt"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--data", required=True, help="tiny shakespeare's input.txt")
    args = parser.parse_args()
    nanogpt_train(args.steps, Path(args.data))
