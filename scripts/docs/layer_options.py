"""Draw the pictures of the per-layer options: soft-capping, rope scaling (YaRN and its peers), layer patterns.

    python scripts/docs/layer_options.py         # writes docs/assets/{softcap,rope-scaling,layer-patterns}.png

Each curve is the members' own output: ``soft_cap`` and the ``math`` kernel's weights, the ``rope`` member's
inverse frequencies for each ``scaling``, and the attention weights of each layer of a model built from a
``layers`` pattern (its kernels called with equal scores, so each row shows what that layer may attend to).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from swapformer import build_causal_lm, family
from swapformer.components.softcap import soft_cap
from swapformer.layer_specs import resolve
from swapformer.registry import split_spec

ASSETS = Path(__file__).resolve().parents[2] / "docs" / "assets"


def draw_softcap(*, cap: float = 50.0) -> Figure:
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)

    x = torch.linspace(-3 * cap, 3 * cap, 601)
    left.plot(x, x, color="grey", linestyle="--", linewidth=1, label="no cap: e")
    left.plot(x, soft_cap(x, cap), label=f"soft_cap(e, {cap:g}) = {cap:g} tanh(e / {cap:g})")
    left.axhline(cap, color="black", linewidth=0.6)
    left.axhline(-cap, color="black", linewidth=0.6)
    left.set_ylim(-1.6 * cap, 1.6 * cap)
    left.set_xlabel("score e")
    left.set_title("close to e for |e| well below the cap, never beyond ±cap", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    # one query whose scores against 16 keys grow large: the cap keeps the softmax from going one-hot
    keys = 16
    query = torch.ones(1, 1, 1, 1)
    key = torch.linspace(0, 3 * cap, keys).reshape(1, 1, keys, 1)
    value = torch.zeros(1, 1, keys, 1)
    positions = torch.arange(keys)
    for spec, label in (("math", "math"), ({"name": "math", "softcap": cap}, f"math, softcap {cap:g}")):
        kernel = family("attention").build(spec)
        _, weights = kernel(query, key, value, scale=1.0, need_weights=True)
        right.plot(positions, weights[0, 0, 0], marker="o", markersize=3, label=label)
    right.set_yscale("log")
    right.set_ylim(1e-6, 1.5)
    right.set_xlabel(f"key j (its score e_j from 0 to {3 * cap:g})")
    right.set_ylabel("attention weight")
    right.set_title("softmax weights of one query: capped scores stay soft", fontsize=10)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return fig


def draw_rope_scaling(*, head_dim: int = 128, factor: float = 8.0, original: int = 4096) -> Figure:
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plain = family("positional").build("rope", head_dim=head_dim).inv_freq
    wavelength = 2 * torch.pi / plain
    options = {"factor": factor, "original_max_seq_len": original}
    for scaling in ("linear", "ntk", "llama3", "yarn"):
        spec = {"name": "rope", "scaling": scaling, "factor": factor}
        if scaling in ("llama3", "yarn"):
            spec.update(options)
        member = family("positional").build(spec, head_dim=head_dim)
        left.plot(wavelength, plain / member.inv_freq, label=scaling)
        right.plot(torch.arange(head_dim // 2), plain / member.inv_freq, label=scaling)
    left.set_xscale("log")
    left.axvline(original, color="black", linewidth=0.6)
    left.text(original, 1.2, " trained context", fontsize=8)
    left.set_xlabel("wavelength 2π / θ_i of the unscaled pair (positions)")
    left.set_ylabel("θ_i / θ'_i (how much slower it turns)")
    left.set_title(f"rope scaling, factor {factor:g}, E = {head_dim}, trained on {original}", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.set_xlabel("feature pair i")
    right.set_title("the same, by feature pair: YaRN ramps between two bounds", fontsize=10)
    right.grid(alpha=0.3)
    return fig


def draw_layer_patterns(*, length: int = 24, window: int = 6) -> Figure:
    model = build_causal_lm(
        {
            "vocab_size": 16,
            "d_model": 16,
            "num_heads": 2,
            "num_layers": 4,
            "d_ff": 32,
            "positional": "rope",
            "layers": {
                "pattern": ["local", "local", "global", "nope"],
                "types": {
                    "local": {"attention": {"name": "sliding_window", "window": window}},
                    "global": {"positional": {"base": 1000000.0}},
                    "nope": {"positional": "none"},
                },
            },
        }
    )
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    axes = fig.subplots(1, len(model.decoder.layers))
    equal = torch.zeros(1, 1, length, 4)  # equal scores: each row spreads evenly over what the layer may see
    layers = zip(axes, model.decoder.layers, model.decoder.positionals, resolve(model.config, "decoder"))
    for i, (ax, layer, positional, spec) in enumerate(layers):
        _, weights = layer.self_attention.sublayer.kernel(
            equal, equal, equal, is_causal=True, need_weights=True
        )
        ax.imshow(weights[0, 0].numpy(), cmap="Blues", vmin=0, vmax=1 / window)
        position = getattr(positional, "base", None)
        where = "no rope (NoPE)" if position is None else f"rope base {position:g}"
        ax.set_title(f"layer {i}: {split_spec(spec.attention, where='')[0]}\n{where}", fontsize=9)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i" if i == 0 else "")
    return fig


PICTURES = {
    "softcap.png": draw_softcap,
    "rope-scaling.png": draw_rope_scaling,
    "layer-patterns.png": draw_layer_patterns,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder to write the pictures into")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in PICTURES.items():
        draw().savefig(args.out / name, dpi=90)
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
