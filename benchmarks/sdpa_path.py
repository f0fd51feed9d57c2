"""Which scaled-dot-product kernel a swapformer causal LM's attention runs, for causal and for padded inputs.

The model is built with ``attention: sdpa``; one forward pass runs under ``torch.profiler`` and the aten
``_scaled_dot_product_*`` ops it called are reported. On CUDA (bf16, head dim 64) the check passes when every
attention call of a case went to flash attention (``_scaled_dot_product_flash_attention``); exit status 1
otherwise. On CPU the kernels are reported, not judged (CPU has no GPU flash kernel; torch's CPU flash op is
``_scaled_dot_product_flash_attention_for_cpu``).

    python benchmarks/sdpa_path.py [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

VOCAB, D, HEADS, LAYERS, BATCH, LENGTH = 512, 768, 12, 2, 4, 256


def kernels(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None) -> list[str]:
    """The distinct aten scaled-dot-product ops one forward pass of ``model`` called, most specific first."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ids.is_cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        model(ids, mask)
    names = {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}
    return sorted(n for n in names if n != "aten::scaled_dot_product_attention")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from swapformer import build_causal_lm

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = (
        build_causal_lm(
            dict(
                vocab_size=VOCAB,
                d_model=D,
                num_heads=HEADS,
                num_layers=LAYERS,
                d_ff=4 * D,
                max_seq_len=LENGTH,
                attention="sdpa",
                positional="learned",
                dropout=0.0,
            )
        )
        .to(device=device, dtype=dtype)
        .eval()
    )
    ids = torch.randint(4, VOCAB, (BATCH, LENGTH), device=device)
    padded = torch.ones(BATCH, LENGTH, dtype=torch.bool, device=device)
    padded[1:, LENGTH // 2 :] = False  # right padding on three of the four rows
    failed = False
    for case, mask in (("causal", None), ("padded", padded)):
        ops = kernels(model, ids, mask)
        if device.type != "cuda":
            print(
                f"sdpa path, {case} ({device.type}): {', '.join(ops) or 'no sdpa op'} (reported, not judged)"
            )
            continue
        flash = bool(ops) and all("flash" in op for op in ops)
        failed |= not flash
        print(
            f"sdpa path, {case} (cuda, bf16): {', '.join(ops) or 'no sdpa op'}: {'PASS' if flash else 'FAIL'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
