"""Running the plan of ``swapformer compare``: which runs are done, in this process one after another or in
processes of their own (``--jobs``), and each run's outcome in its ``run_summary.json``, a failure as one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from swapformer.cli.compare_plan import Plan, Variant, one_line, write_manifest
from swapformer.cli.errors import debugging, user_error
from swapformer.cli.fit import make_cli
from swapformer.errors import StoppedBySignal
from swapformer.training.checkpoints import newest_last_checkpoint
from swapformer.training.run_summary import SUMMARY_FILE

# ---- running ----------------------------------------------------------------------------------------------


def run_status(plan: Plan, variant: Variant, seed: int) -> str:
    """``done`` (finished earlier), ``resume`` (a last.ckpt), ``new``, or ``refused`` (failed its check)."""
    if variant.error is not None:
        return "refused"
    folder = plan.run_dir(variant, seed)
    summary = _read_summary(folder)
    if summary is not None and summary.get("status") == "finished":
        return "done"
    return "resume" if folder.is_dir() and newest_last_checkpoint(folder) else "new"


def execute(plan: Plan, runs: list[tuple[Variant, int]], *, jobs: int = 1) -> list[str]:
    """Train the runs not finished yet; return the failed ones as ``variant (seed k)``."""
    write_manifest(plan)
    todo = []
    for variant, seed in runs:
        status = run_status(plan, variant, seed)
        if status == "refused":
            _write_failure(plan, variant, seed, variant.error or "refused")
        elif status != "done":
            todo.append((variant, seed, status))
    done = len(runs) - len(todo)
    print(
        f"compare {plan.name}: {len(runs)} runs, {done} finished or refused earlier, {len(todo)} to train",
        flush=True,
    )
    if jobs == 1:
        for i, (variant, seed, status) in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {variant.name} seed={seed} ({status})", flush=True)
            _run_in_process(plan, variant, seed, status)
    else:
        _run_in_processes(plan, todo, jobs)
    failed = []
    for variant, seed in runs:
        summary = _read_summary(plan.run_dir(variant, seed)) or {}
        if summary.get("status") != "finished":
            failed.append(f"{variant.name} (seed {seed})")
    return failed


def fit_args(plan: Plan, variant: Variant, seed: int, status: str) -> list[str]:
    args = plan.fit_args(variant, seed)
    return [*args, "--ckpt_path=last"] if status == "resume" else args


def _run_in_process(plan: Plan, variant: Variant, seed: int, status: str) -> None:
    try:
        make_cli(fit_args(plan, variant, seed, status))
    except (KeyboardInterrupt, StoppedBySignal):
        raise
    except SystemExit as err:
        _write_failure(plan, variant, seed, f"fit exited with code {err.code}")
    except Exception as err:
        if debugging():
            traceback.print_exc()
        cause = user_error(err)
        _write_failure(
            plan, variant, seed, one_line(cause) if cause is not None else one_line(err, named=True)
        )
    finally:
        _finish_wandb()
    summary = _read_summary(plan.run_dir(variant, seed))
    if summary is None:
        _write_failure(plan, variant, seed, "fit ended without finishing (no run_summary.json)")
    elif summary.get("status") == "failed":
        print(f"  failed: {summary['error']}", file=sys.stderr, flush=True)


def _run_in_processes(plan: Plan, todo: list[tuple[Variant, int, str]], jobs: int) -> None:
    """``jobs`` runs at once, each ``python -m swapformer fit`` with its output in ``<run>/compare.log``: one GPU
    each where there are GPUs, else the CPU threads split between them."""
    import torch

    gpus = torch.cuda.device_count()
    slots: list[int] = list(range(jobs))
    lock = threading.Lock()

    def one(item: tuple[Variant, int, str]) -> None:
        variant, seed, status = item
        with lock:
            slot = slots.pop()
        try:
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            else:
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
            folder = plan.run_dir(variant, seed)
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "compare.log"
            print(f"{variant.name} seed={seed} ({status}): {log}", flush=True)
            command = [sys.executable, "-m", "swapformer", *fit_args(plan, variant, seed, status)]
            with open(log, "w") as file:
                code = subprocess.run(command, stdout=file, stderr=subprocess.STDOUT, env=env).returncode
            summary = _read_summary(folder)
            if code != 0 or summary is None or summary.get("status") != "finished":
                _write_failure(plan, variant, seed, _error_line(log, code))
                print(
                    f"  {variant.name} seed={seed} failed: {_error_line(log, code)}",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            with lock:
                slots.append(slot)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))


def _error_line(log: Path, code: int) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if match := re.match(r"swapformer \w+: error: (.*)", line):
            return match[1]
    return lines[-1] if lines else f"fit exited with code {code}"


def _read_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_failure(plan: Plan, variant: Variant, seed: int, error: str) -> None:
    folder = plan.run_dir(variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"status": "failed", "variant": variant.name, "seed": seed, "error": error}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))


def _finish_wandb() -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
