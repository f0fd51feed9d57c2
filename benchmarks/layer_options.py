"""What the per-layer options cost in a training step: q/k norm, soft-capping, and per-layer patterns.

The main job's shape (``recipes/causal_lm/stdlib-tiny.yaml``: 4 layers, 4 heads, d_model 128, GELU MLP 4x,
LayerNorm pre-norm, rope, ``sdpa``, tied embeddings, no biases, dropout 0, its character vocabulary of 129),
batch 32 x 128; one training step = forward + backward + fused AdamW, the optimizer swapformer's Lightning
modules configure. Every model is built from the same seed and timed in interleaved rounds, so a change in
machine load hits them alike. Each row is a ratio against the peer named beside it, measured in the same run:

* ``+ q/k norm``: ``qk_norm: rmsnorm`` on each head (Qwen3, Gemma 3) and over the whole projection (OLMo 2);
* ``+ soft-capping``: scores capped at 50 and logits at 30 (Gemma 2). ``sdpa`` cannot cap the scores, so the
  capped model runs the ``math`` kernel: against the main job (what a user pays) and against the same model on
  ``math`` without caps (what the caps themselves cost);
* ``pattern of identical types``: ``layers: {pattern: [a, b]}`` whose two types restate the uniform members
  (``{positional: {base: 10000.0}}``, ``{ffn: gelu}``) against the uniform model: what a pattern itself costs;
* ``sliding / full pattern``: local layers (``sliding_window``, window 32) alternating with full ``sdpa`` ones,
  against every layer local with the same window.

Targets: q/k norm and soft-capping each <= 1.05; a pattern of identical types <= 1.02.

``--before`` adds the q/k norm and soft-capping models as they ran before their CPU training paths, in the same
rounds: the q/k norms as torch's ``nn.RMSNorm`` (``rms_norm``'s composite backward) instead of swapformer's
``RMSNormFunction``; the capped ``math`` kernel on its general path (asked for its weights, which that path
alone returns) instead of ``soft_capped_attention``; and ``soft_capped_attention``'s operators under autograd
(``, autograd``: what it ran before ``SoftCappedAttention``, its blocked CPU training path).

``--unfused`` adds the q/k norm models with their norms and RoPE's rotation as two autograd nodes, as they ran
before ``NormedRotation`` (``swapformer.nn.qk_norm_rotation``) fused them: the same ``RMSNormFunction``, then the
rotation, in the same rounds.

On a machine other jobs share, ``--threads 1 --clock process`` times each step by the CPU time this process
spent on it (``time.process_time``), which the other jobs disturb far less than the wall clock; with one thread
that is the step's work.

    python benchmarks/layer_options.py [--rounds 7] [--steps 3] [--threads 2] [--clock wall|process] [--before] [--unfused]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import rope  # the training step and the interleaved timer of the rope benchmark, beside this script
import torch
from torch import nn

from swapformer import build_causal_lm
from swapformer.components.attention import MathAttention
from swapformer.components.attention.scaled_dot_product import repeat_kv
from swapformer.components.norm import RMSNorm
from swapformer.nn import MultiHeadAttention

VOCAB, BATCH, CONTEXT, WINDOW = 129, 32, 128, 32
MAIN_JOB: dict[str, Any] = dict(
    vocab_size=VOCAB,
    d_model=128,
    num_heads=4,
    num_layers=4,
    d_ff=512,
    max_seq_len=CONTEXT,
    dropout=0.0,
    attention="sdpa",
    positional="rope",
    norm="layernorm",
    placement="pre",
    ffn="gelu",
    tie_embeddings=True,
    bias=False,
)
LOCAL = {"name": "sliding_window", "window": WINDOW}
MODELS: dict[str, dict[str, Any]] = {
    "main job": {},
    "+ q/k norm (head)": {"qk_norm": "rmsnorm"},
    "+ q/k norm (projection)": {"qk_norm": "rmsnorm", "qk_norm_scope": "projection"},
    "math kernel": {"attention": "math"},
    "+ soft-capping (math)": {"attention": {"name": "math", "softcap": 50.0}, "logit_softcap": 30.0},
    "pattern of identical types": {
        "layers": {
            "pattern": ["a", "b"],
            "types": {"a": {"positional": {"base": 10000.0}}, "b": {"ffn": "gelu"}},
        }
    },
    "uniform sliding": {"attention": LOCAL},
    "sliding / full pattern": {
        "layers": {"pattern": ["local", "global"], "types": {"local": {"attention": LOCAL}, "global": {}}}
    },
}
# (row, its peer, target or None)
RATIOS: list[tuple[str, str, float | None]] = [
    ("+ q/k norm (head)", "main job", 1.05),
    ("+ q/k norm (projection)", "main job", 1.05),
    ("+ soft-capping (math)", "main job", 1.05),
    ("+ soft-capping (math)", "math kernel", 1.05),
    ("math kernel", "main job", None),
    ("pattern of identical types", "main job", 1.02),
    ("sliding / full pattern", "uniform sliding", None),
    ("uniform sliding", "main job", None),
]


BEFORE = ["+ q/k norm (head)", "+ q/k norm (projection)", "+ soft-capping (math)"]
"""The models ``--before`` also times as they ran before their CPU training paths."""


UNFUSED = ["+ q/k norm (head)", "+ q/k norm (projection)"]
"""The models ``--unfused`` also times with their q/k norms and rotation unfused."""


class GeneralPathMath(MathAttention):
    """The ``math`` kernel on its general path: asked for the weights (then dropped), it fills the scores through
    a boolean mask, as every capped call did before ``soft_capped_attention``."""

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return super().forward(*args, **{**kwargs, "need_weights": True})[0], None


class AutogradCappedMath(MathAttention):
    """The capped ``math`` kernel's path without a mask as it was before ``SoftCappedAttention``: autograd over
    the operators of ``soft_capped_attention`` (tanh of the scores, the causal triangle added while the cap
    multiplies, softmax), the same numbers."""

    def forward(self, query, key, value, *, is_causal=False, scale=None, **kwargs):
        key, value = repeat_kv(key, value, query.size(1))
        scale = query.size(-1) ** -0.5 if scale is None else scale
        bounded = torch.tanh((query * (scale / self.softcap)) @ key.transpose(-2, -1))
        if is_causal:
            blocked = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).tril().logical_not()
            bounded = torch.add(
                torch.zeros(blocked.shape).masked_fill_(blocked, float("-inf")), bounded, alpha=self.softcap
            )
        else:
            bounded = bounded * self.softcap
        return torch.softmax(bounded, dim=-1) @ value, None


def as_autograd(model: nn.Module) -> nn.Module:
    """``model`` with its capped kernels on :class:`AutogradCappedMath`."""
    for module in model.modules():
        if isinstance(module, MultiHeadAttention) and isinstance(module.kernel, MathAttention):
            module.kernel = AutogradCappedMath(softcap=module.kernel.softcap)
    return model


def with_qk_norms(model: nn.Module, norm_class: type[nn.Module]) -> nn.Module:
    """``model`` with its q/k norms replaced by ``norm_class`` norms of the same shape, eps and weights."""
    for module in model.modules():
        if not isinstance(module, MultiHeadAttention):
            continue
        for name in ("q_norm", "k_norm"):
            norm = getattr(module, name)
            if norm is not None:
                replaced = norm_class(norm.normalized_shape, eps=norm.eps)
                replaced.load_state_dict(norm.state_dict())
                setattr(module, name, replaced)
    return model


def as_before(model: nn.Module) -> nn.Module:
    """``model`` with torch's ``nn.RMSNorm`` as its q/k norms and its capped kernels on the general path."""
    for module in with_qk_norms(model, nn.RMSNorm).modules():
        kernel = getattr(module, "kernel", None) if isinstance(module, MultiHeadAttention) else None
        if isinstance(kernel, MathAttention) and kernel.softcap is not None:
            module.kernel = GeneralPathMath(softcap=kernel.softcap)
    return model


class UnfusedRMSNorm(RMSNorm):
    """swapformer's ``rmsnorm`` (``RMSNormFunction`` in training) that does not offer itself to be fused with the
    rotation: attention then runs the norms and RoPE's rotation one after the other."""

    def rms_parameters(self, x: torch.Tensor) -> None:
        return None


def as_unfused(model: nn.Module) -> nn.Module:
    """``model`` with its q/k norms as :class:`UnfusedRMSNorm`, the same weights."""
    return with_qk_norms(model, UnfusedRMSNorm)


def make_step(
    changes: dict[str, Any], *, before: bool = False, autograd: bool = False, unfused: bool = False
) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_causal_lm({**MAIN_JOB, **changes})
    model = as_before(model) if before else model
    model = as_unfused(model) if unfused else model
    model = as_autograd(model) if autograd else model
    return rope.make_step(model, vocab=VOCAB, batch=BATCH, context=CONTEXT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="training steps per model per round")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--clock", choices=("wall", "process"), default="wall", help="wall time, or this process's CPU time"
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time the q/k norm and capped models as they ran before their CPU training paths",
    )
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="also time the q/k norm models with the norms and the rotation unfused (two autograd nodes)",
    )
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    print(
        f"training step of the main job's shape, batch {BATCH} x {CONTEXT}, fused AdamW, "
        f"{torch.get_num_threads()} threads, {args.clock} clock, "
        f"median of {args.rounds} interleaved rounds x {args.steps} steps"
    )
    steps = {name: make_step(changes) for name, changes in MODELS.items()}
    ratios = list(RATIOS)
    if args.before:
        for name in BEFORE:
            steps[f"{name}, before"] = make_step(MODELS[name], before=True)
            ratios.append((f"{name}, before", "main job", None))
        capped = "+ soft-capping (math)"
        steps[f"{capped}, autograd"] = make_step(MODELS[capped], autograd=True)
        ratios.append((f"{capped}, autograd", "main job", None))
    if args.unfused:
        for name in UNFUSED:
            steps[f"{name}, unfused"] = make_step(MODELS[name], unfused=True)
            ratios.append((f"{name}, unfused", "main job", None))
    results = rope.time_interleaved(
        steps,
        rounds=args.rounds,
        per_round=args.steps,
        warmup=2,
        clock=clock,
    )
    print(f"{'model':36} {'ms/step':>9}")
    for name, seconds in results.items():
        print(f"{name:36} {seconds * 1e3:9.2f}")
    print(f"\n{'model':36} {'against':18} {'ratio':>7}  target")
    for name, peer, target in ratios:
        ratio = results[name] / results[peer]
        verdict = "" if target is None else f"<= {target}: {'met' if ratio <= target else 'NOT met'}"
        print(f"{name:36} {peer:18} {ratio:6.3f}x  {verdict}")


if __name__ == "__main__":
    main()
