"""Draw the sinusoidal positional encoding as a heatmap, and the similarity that makes it relative.

    python scripts/docs/sinusoidal.py            # writes docs/assets/sinusoidal.png

The table is swapformer's own (``sinusoidal_table``), so the picture is the code's output, not a drawing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from swapformer.components.positional import sinusoidal_table

ASSETS = Path(__file__).resolve().parents[2] / "docs" / "assets"


def draw(*, positions: int = 128, d_model: int = 128) -> Figure:
    table = sinusoidal_table(positions, d_model)  # (L, D)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.35, 1))

    # sines (even dimensions) below, cosines (odd) above, each from the fastest wave (i = 0) to the slowest
    ordered = torch.cat((table[:, 0::2], table[:, 1::2]), dim=1).T  # (D, L)
    image = left.imshow(ordered.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", origin="lower")
    half = d_model // 2
    left.axhline(half - 0.5, color="black", linewidth=0.8)
    left.set_yticks(
        [0, half // 2, half, half + half // 2],
        ["sin, i=0", f"sin, i={half // 2}", "cos, i=0", f"cos, i={half // 2}"],
    )
    left.set_xlabel("position pos")
    left.set_title(
        f"PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(...), D = {d_model}", fontsize=10
    )
    fig.colorbar(image, ax=left, shrink=0.85)

    # PE[p] . PE[q] depends on p - q only: the same curve around every anchor position
    similarity = table @ table.T  # (L, L)
    for anchor in (32, 64, 96):
        right.plot(torch.arange(positions) - anchor, similarity[anchor].numpy(), label=f"pos = {anchor}")
    right.set_xlabel("offset q - pos")
    right.set_ylabel("PE[pos] · PE[q]")
    right.set_title("PE[pos] · PE[q] depends on the offset only", fontsize=10)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS / "sinusoidal.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw().savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
