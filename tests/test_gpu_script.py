"""benchmarks/gpu.sh on a CPU: it runs end to end, skips the GPU-only steps with a reason, and prints figures."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_runs_on_cpu_and_skips_the_gpu_steps(tmp_path, generated_data):
    # on a CPU every data step is a toy run of the recipe's code path: the generated files (tests/conftest.py)
    # serve as well as the real ones, which $SWAPFORMER_DATA may still name
    data = os.environ.get("SWAPFORMER_DATA") or str(generated_data)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "SWAPFORMER_DATA": data, "TMPDIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=1800
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    gpu_steps = (
        "sdpa-path",
        "gpt2-124m",
        "fsdp",
        "multi30k",
        "seq2seq-generate",
        "strategies",
        "moe",
        "flex",
    )
    for step in gpu_steps:
        assert re.search(rf"^SKIP {step}: no CUDA device: \S", out, re.M), step
    assert re.search(r"^SKIP tp: 0 GPU\(s\): tensor parallelism needs more than one", out, re.M)
    assert "FAIL" not in out
    assert re.search(r"^sdpa path, causal \(cpu\): aten::_scaled_dot_product\w+", out, re.M)
    assert re.search(r"^sdpa path, padded \(cpu\): aten::_scaled_dot_product\w+", out, re.M)
    assert re.search(r"^tokens/s: [\d,]+$", out, re.M)  # the GPT-2 path at toy sizes
    assert re.search(r"^MFU: n/a \(no peak known", out, re.M)
    # fsdp2 and multi30k each trained and reported their throughput; multi30k's test reported sacreBLEU
    assert len(re.findall(r"^throughput: [\d,]+ tokens/s over \d+ steps", out, re.M)) == 2
    assert re.search(r"test/bleu\s*│\s*[\d.]+", out)
    # the encoder-decoder decoding comparison at a toy length: every shape and search, transformers' tokens
    for shape in ("marian", "bart", "t5"):
        for search in ("greedy", "beam-4"):
            assert re.search(rf"^{shape} +{search} +1 .*x  True$", out, re.M), (shape, search)
    # per strategy: the single-device line of both shapes at toy sizes (MFU and memory need a GPU)
    for shape in ("gpt2-124m", "llama-1b"):
        line = rf"^strategy single, {shape} \(toy sizes\), 1 device\(s\) .*: tokens/s [\d,]+; MFU n/a .*; peak memory n/a"
        assert re.search(line, out, re.M), shape
    # the MoE step at the CPU's own size: the loop over experts, both contenders' tokens/s, the ratio
    assert re.search(r"^experts' GEMMs: a loop over experts$", out, re.M)
    timed = re.findall(
        r"^  (?:dense swiglu|moe) +[\d.]+ ms / forward \+ backward .*, [\d,]+ tokens/s$", out, re.M
    )
    assert len(timed) == 2, timed
    assert re.search(r"^moe / dense swiglu: [\d.]+ \(target <= 1.3\)$", out, re.M)
    assert out.rstrip().endswith("all steps passed or skipped")
