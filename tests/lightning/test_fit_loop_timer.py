"""``benchmarks/fit_loop.py``'s LoopTimer: the span from batch ``warmup`` to the last batch, less the validations
inside it only (Lightning validates after the last batch too when ``--steps`` is a multiple of the interval)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_fit_loop():
    sys.path.insert(0, str(BENCHMARKS))  # fit_loop imports its sibling nanogpt
    try:
        spec = importlib.util.spec_from_file_location("fit_loop_under_test", BENCHMARKS / "fit_loop.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_only_the_validations_inside_the_span_are_subtracted(monkeypatch):
    fit_loop = load_fit_loop()
    clock = iter([10.0, 11.0, 12.0, 14.0, 15.0, 16.0, 19.0])
    monkeypatch.setattr(fit_loop.time, "perf_counter", lambda: next(clock))
    timer = fit_loop.LoopTimer(warmup=1)
    trainer = SimpleNamespace(global_step=0)
    timer.on_train_batch_start(trainer, None, None, 0)  # before the warm-up step: not timed, no clock read
    trainer.global_step = 1
    timer.on_train_batch_start(trainer, None, None, 1)  # 10: the span starts
    timer.on_train_batch_end(trainer)  # 11
    timer.on_validation_start(trainer, None)  # 12
    timer.on_validation_end(trainer, None)  # 14: 2 s inside the span
    timer.on_train_batch_end(trainer)  # 15: the last batch ends the span
    timer.on_validation_start(trainer, None)  # 16
    timer.on_validation_end(trainer, None)  # 19: after the last batch, not in the span
    assert timer.seconds == (15.0 - 10.0) - 2.0
