"""``compile: true`` as a user meets it: refused in one line where torch cannot compile, a plug-in member that
breaks the compiled graph named in one line (not dynamo's wall of log lines), the compile time printed once."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from swapformer.cli import main
from swapformer.components.ffn.mlp import FeedForward
from swapformer.registry import FFN
from swapformer.tasks import CausalLMModule
from swapformer.training import compiling
from swapformer.training.compiling import compile_blocker

TINY = dict(vocab_size=30, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_seq_len=16, dropout=0.0)


class DataDependentFeedForward(nn.Module):
    """A plug-in FFN whose Python branch reads a tensor's value: torch.compile cannot trace it (a graph break)."""

    def __init__(self, *, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.mlp = FeedForward(d_model=d_model, d_ff=d_ff, activation=nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        if x.abs().max().item() > 1e6:  # never true; reading the value is what breaks the graph
            x = x.clamp(-1e6, 1e6)
        return self.mlp(x)


def test_blocker_names_the_option_and_the_fix(monkeypatch):
    assert compile_blocker(False, "cpu") is None
    assert compile_blocker({"backend": "aot_eager"}, "cpu") is None
    assert compile_blocker({"mode": "max-autotune", "backend": "aot_eager"}, "cpu") is None
    assert compile_blocker({"modes": "x"}, "cpu") == (
        "compile: 'modes' is not an option of torch.compile; the options are "
        "backend, mode, fullgraph, dynamic, options, disable"
    )
    unknown = compile_blocker({"backend": "inductr"}, "cpu")
    assert unknown.startswith(
        "compile: backend='inductr' is not a torch.compile backend (did you mean 'inductor'?); common ones: "
        "inductor, aot_eager, eager, "
    )
    # inductor on the CPU writes C++: without a compiler torch fails mid-step with a compiler traceback
    monkeypatch.setattr(compiling, "_cpp_compiler", lambda: None)
    missing = compile_blocker(True, "cpu")
    assert missing.startswith("compile: torch.compile's inductor backend needs a C++ compiler on the CPU")
    assert compile_blocker({"backend": "aot_eager"}, "cpu") is None  # needs no compiler
    monkeypatch.setattr(compiling, "_has_triton", lambda: False)
    assert "needs triton on the GPU" in compile_blocker(True, "gpu")


def test_the_found_compiler_is_a_program():
    found = compiling._cpp_compiler()
    assert found is None or found.endswith(("g++", "c++", "clang++", "gcc", "cc", "cl")), found


def test_fit_refuses_compile_it_cannot_run_before_reading_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                "stdlib-tiny",
                "--model.init_args.compile={backend: nope}",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "swapformer fit: error: model.init_args.compile: backend='nope' is not a torch.compile backend"
    )
    assert len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir()), "refused before anything was written"


def test_a_member_that_breaks_the_graph_is_named_once_and_compile_time_printed(capfd, caplog):
    FFN.add("data_dependent", DataDependentFeedForward)
    try:
        torch.manual_seed(0)
        module = CausalLMModule(
            **TINY, ffn="data_dependent", compile={"backend": "aot_eager"}, warmup_steps=0
        )
        ids = torch.randint(1, 30, (4, 2, 9))
        batches = [{"input_ids": b[:, :-1], "labels": b[:, 1:]} for b in ids]
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with caplog.at_level(logging.INFO):
            trainer.fit(module, DataLoader(batches, batch_size=None))
    finally:
        FFN._members.pop("data_dependent")
    lines = [r.getMessage() for r in caplog.records]
    warnings = [line for line in lines if line.startswith("warning: compile:")]
    assert warnings == [
        "warning: compile: DataDependentFeedForward (model.decoder.layers.0.feed_forward.sublayer) breaks the compiled "
        f"graph at test_compile_report.py:{DataDependentFeedForward.forward.__code__.co_firstlineno + 1} "
        "(Unsupported Tensor.item() call with capture_scalar_outputs=False); that part runs eagerly and the block in pieces "
        "(slower): make it traceable, or set compile: false"
    ], warnings
    timing = [line for line in lines if line.startswith("compile: ")]
    assert len(timing) == 1 and timing[0].startswith("compile: 2 blocks compiled in "), timing
    out, err = capfd.readouterr()
    assert "Graph break" not in out + err and "__graph_breaks" not in out + err, (out + err)[-2000:]
