"""Draw the cross-attention of a trained dates model: which characters of "March 5, 2021" each character of
"2021-03-05" reads.

    python scripts/docs/attention_maps.py                         # trains (~80 s idle), then draws
    python scripts/docs/attention_maps.py --checkpoint last.ckpt  # draws from a trained checkpoint

Writes docs/assets/attention-dates.png. Training uses recipes/seq2seq/dates.yaml unchanged (1500 steps) and
keeps its checkpoint in a temporary folder. The weights are recorded by
``swapformer.training.attention_maps.record_attention`` during one teacher-forced pass over the model's own
greedy translation.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure

from swapformer.tasks import Seq2SeqModule
from swapformer.training.attention_maps import record_attention

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "docs" / "assets"


def train(folder: Path) -> Path:
    """Train the dates recipe in ``folder`` (its relative ``runs/dates`` paths land there); return the checkpoint."""
    from swapformer.cli import run

    with contextlib.chdir(folder):
        run(
            [
                "fit",
                "--config",
                str(REPO / "recipes" / "seq2seq" / "dates.yaml"),
                "--trainer.enable_progress_bar=false",
            ]
        )
    return next(folder.glob("runs/dates/logs/version_*/checkpoints/last.ckpt"))


def cross_attention(module: Seq2SeqModule, source: str) -> tuple[str, list[str], list[str], torch.Tensor]:
    """The greedy translation of ``source``, its key and query labels (query: the character it writes),
    and the cross-attention weights ``(layers, H, L, S)`` of a teacher-forced pass over that translation."""
    tokenizer, config = module.tokenizer, module.config  # special ids: the model config's
    (prediction,) = module.translate([source])
    src = torch.tensor([[*tokenizer.encode(source), config.eos_token_id]])
    tgt = torch.tensor([[config.start_token_id, *tokenizer.encode(prediction)]])
    module.eval()  # no dropout on the weights being drawn
    with torch.no_grad(), record_attention(module.model, include=lambda n: "cross_attention" in n) as maps:
        module.model(src, tgt)
    weights = torch.stack([maps[name][0][0] for name in sorted(maps)])  # (layers, H, L, S)
    keys = [tokenizer.decode([i], skip_special=False) for i in src[0].tolist()]
    # query i reads target token i and writes token i + 1: label each row with the character it writes
    queries = [*(tokenizer.decode([i]) for i in tgt[0, 1:].tolist()), "</s>"]
    return prediction, keys, queries, weights


def draw(source: str, prediction: str, keys: list[str], queries: list[str], weights: torch.Tensor) -> Figure:
    layers, heads = weights.shape[:2]
    visible = [{" ": "␣"}.get(k, k) for k in keys]
    fig = Figure(figsize=(2.5 * heads + 0.8, 2.2 * layers + 0.4), layout="constrained")
    axes = fig.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            image = ax.imshow(weights[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(keys)), visible, fontsize=7, family="monospace")
            ax.set_yticks(range(len(queries)), queries, fontsize=7, family="monospace")
            ax.tick_params(length=0, pad=1)
            ax.set_title(f"decoder layer {layer}, head {head}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(
        f"cross-attention: {source!r} -> {prediction!r} "
        "(row: the character being written; column: the source character it reads)",
        fontsize=10,
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained dates checkpoint (default: train one)")
    parser.add_argument("--source", default="March 5, 2021")
    parser.add_argument("--out", type=Path, default=ASSETS / "attention-dates.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or train(Path(tmp))
        module = Seq2SeqModule.load(checkpoint)
        prediction, keys, queries, weights = cross_attention(module, args.source)
    print(f"{args.source!r} -> {prediction!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(args.source, prediction, keys, queries, weights).savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
