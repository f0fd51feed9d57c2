"""The example plug-in package of the plug-in guide: pip installs it, and its members work by name."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

import swapformer
from swapformer import build_causal_lm, family

from .conftest import EXAMPLE_PLUGIN


def test_installed_plugin_members_are_found_by_name_with_their_source(example_plugin):
    assert {"softcap", "math"} <= set(swapformer.available("attention"))
    assert "reglu" in swapformer.available("ffn")
    softcap = family("attention").get("softcap")
    assert softcap.source == "swapformer_plugin_example"
    assert softcap.description.startswith("Soft-capped scores")  # the docstring's first line
    assert list(softcap.options) == ["cap"]
    assert family("ffn").get("reglu").description.startswith("ReLU-gated linear unit")


def test_a_model_runs_the_plugin_kernel_and_matches_math_when_the_cap_is_huge(example_plugin):
    config = dict(vocab_size=40, d_model=16, num_heads=4, num_kv_heads=2, num_layers=2, d_ff=32, dropout=0.0)
    plugged = build_causal_lm({**config, "attention": {"name": "softcap", "cap": 1e6}, "ffn": "reglu"}).eval()
    reference = build_causal_lm({**config, "attention": "math", "ffn": "swiglu"}).eval()
    gates = [layer.feed_forward.sublayer.activation for layer in plugged.decoder.layers]
    assert all(isinstance(g, torch.nn.ReLU) for g in gates)
    assert type(plugged.decoder.layers[0].self_attention.sublayer.kernel).__name__ == "SoftCapAttention"
    for layer in plugged.decoder.layers:  # same weights, SiLU gate: then only the kernel differs
        layer.feed_forward.sublayer.activation = torch.nn.SiLU()
    reference.load_state_dict(plugged.state_dict())
    ids = torch.randint(40, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :3] = False  # left padding
    torch.testing.assert_close(plugged(ids, mask), reference(ids, mask))


def test_the_plugin_s_own_tests_pass_once_installed(example_plugin_dir):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(example_plugin_dir), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE_PLUGIN / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
