"""``benchmarks/strategy_figures.py`` names each rank Lightning started that failed: one exiting with a status, one
killed by a signal (no message of its own), one still running (then killed); real processes, no training."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_strategy_figures():
    sys.path.insert(0, str(BENCHMARKS))  # strategy_figures imports its sibling gpt2_mfu
    try:
        spec = importlib.util.spec_from_file_location(
            "strategy_figures_under_test", BENCHMARKS / "strategy_figures.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_each_failed_rank_gets_a_line_and_a_hanging_one_is_killed():
    strategy_figures = load_strategy_figures()
    commands = (["sh", "-c", "exit 0"], ["sh", "-c", "exit 3"], ["sh", "-c", "kill -9 $$"], ["sleep", "60"])
    processes = [subprocess.Popen(command) for command in commands]
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=processes)))
    lines = strategy_figures.launched_rank_failures(trainer, wait=2)
    pids = [process.pid for process in processes]
    assert lines == [
        f"rank 2 (pid {pids[1]}) exited with status 3",
        f"rank 3 (pid {pids[2]}) killed by SIGKILL, with no message of its own (the out-of-memory killer sends "
        "SIGKILL)",
        f"rank 4 (pid {pids[3]}) still running 2 s after rank 0 stopped: killed",
    ]
    assert processes[3].returncode == -9  # the hanging rank no longer runs


def test_a_single_process_run_has_no_launched_ranks():
    strategy_figures = load_strategy_figures()
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=None))
    assert strategy_figures.launched_rank_failures(trainer, wait=1) == []
