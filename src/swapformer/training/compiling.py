"""``compile: true`` said in a few lines: what cannot compile is refused before training, a member that breaks
the compiled graph is named once, and the compile time is printed once.

::

    preflight:        compile_blocker(options, accelerator) -> one line, or None        (before any data is read)
    first step:       CompileReport watches dynamo while the first batch compiles the blocks, keeps its own
                      graph-break warnings (a wall of log lines each) and prints instead:
                        compile: 2 blocks compiled in 41.3 s (the first step; the second took 0.21 s)
                        compile: OddNorm (decoder.layers.0.norm1) breaks the compiled graph at odd.py:12 ...

A graph break is not an error: torch runs the untraceable part eagerly and the rest compiled, which is slower,
so the line says which member to fix (or to leave eager with ``compile: false``).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from swapformer.errors import did_you_mean

COMPILE_KEYS = ("backend", "mode", "fullgraph", "dynamic", "options", "disable")
"""The keys of ``compile: {...}``: ``torch.compile``'s keyword arguments."""


def _cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU, or None when there is none."""
    try:
        from torch._inductor import cpp_builder

        name = cpp_builder.get_cpp_compiler()
    except Exception:  # torch raises its own error types when the search finds nothing
        return None
    return name if shutil.which(name) or Path(name).is_file() else None


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton

        return bool(has_triton())
    except ImportError:
        return False


def compile_blocker(options: bool | dict[str, Any] | None, accelerator: str) -> str | None:
    """Why ``compile`` cannot run here (one line naming the value and the fix), or None.

    Args:
        options: the ``compile`` training option (``True`` or a dict of ``torch.compile`` options).
        accelerator: ``cpu``, ``cuda``/``gpu`` or ``auto`` (what ``trainer.accelerator`` resolves to).
    """
    if not options:
        return None
    given = options if isinstance(options, dict) else {}
    unknown = [key for key in given if key not in COMPILE_KEYS]
    if unknown:
        return f"compile: {unknown[0]!r} is not an option of torch.compile; the options are {', '.join(COMPILE_KEYS)}"
    if given.get("disable"):
        return None
    backend = given.get("backend", "inductor")
    if not isinstance(backend, str):
        return None  # a callable backend: the user's own
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        common = [
            "inductor",
            "aot_eager",
            "eager",
            *(b for b in torch._dynamo.list_backends() if b != "inductor"),
        ]
        return (
            f"compile: backend={backend!r} is not a torch.compile backend{did_you_mean(backend, backends)}; "
            f"common ones: {', '.join(common)}"
        )
    if backend != "inductor":
        return None
    device = (
        "cuda"
        if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())
        else accelerator
    )
    if device == "cpu" and _cpp_compiler() is None:
        return (
            "compile: torch.compile's inductor backend needs a C++ compiler on the CPU and finds none (install g++ "
            "or set CXX), or set compile: false (or compile: {backend: aot_eager}, which needs none)"
        )
    if device == "cuda" and not _has_triton():
        return (
            "compile: torch.compile's inductor backend needs triton on the GPU and it is not installed "
            "(pip install triton), or set compile: false"
        )
    return None


# ---- graph breaks, named by member ------------------------------------------------------------------------
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [\w<>]+|in user code at (\S+?):(\d+)')


class _Catch(logging.Filter):
    """Keep dynamo's graph-break warnings (each many lines) and their user frames instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.breaks: list[tuple[str, list[tuple[str, int]], bool]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("torch._dynamo"):
            return True
        message = record.getMessage()
        if "Graph break" not in message and "graph break" not in message:
            return True
        lines = [line.strip() for line in message.strip().splitlines()]
        after = next((i for i, line in enumerate(lines) if line.startswith("Graph Break Reason")), None)
        reason = next((line for line in lines[after + 1 :] if line), "") if after is not None else lines[0]
        frames = [(a or c, int(b or d)) for a, b, c, d in _FRAME.findall(message)]
        self.breaks.append((reason, frames, after is not None))
        return False


def member_at(model: nn.Module, frames: list[tuple[str, int]]) -> tuple[str, str] | None:
    """The innermost member (class name, module path) whose ``forward`` holds one of ``frames``."""
    spans: dict[type, tuple[str, int, int]] = {}
    for module_type in {type(m) for m in model.modules()}:
        try:
            lines, start = inspect.getsourcelines(module_type.forward)
            file = inspect.getsourcefile(module_type.forward)
        except (OSError, TypeError):
            continue
        if file is not None:
            spans[module_type] = (str(Path(file).resolve()), start, start + len(lines) - 1)
    for file, line in reversed(frames):  # innermost first
        path = str(Path(file).resolve())
        for name, module in model.named_modules():
            span = spans.get(type(module))
            if span is not None and span[0] == path and span[1] <= line <= span[2]:
                return type(module).__name__, name
    return None


def _torch_handlers() -> list[logging.Handler]:
    loggers = [
        logging.getLogger(),
        *(
            logger
            for name, logger in logging.Logger.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and name.split(".")[0] == "torch"
        ),
    ]
    return list({id(h): h for logger in loggers for h in logger.handlers}.values())


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


class CompileReport(pl.Callback):
    """Print the compile time once, and name each member that breaks the compiled graph in one line.

    Watches the first training batch (where the blocks compile) and times the second for comparison.
    """

    def __init__(self) -> None:
        self._catch: _Catch | None = None
        self._handlers: list[logging.Handler] = []
        self._start = 0.0
        self._first: float | None = None
        self._breaks_before = 0
        self._batches = 0
        self._artifact = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._batches += 1
        if self._batches == 1:
            self._catch = _Catch()
            self._breaks_before = _graph_breaks()
            self._artifact = not os.environ.get("TORCH_LOGS")  # the user's own TORCH_LOGS is left alone
            if self._artifact:  # each graph break with its user stack, which names the member
                torch._logging.set_logs(graph_breaks=True)
            # dynamo's records go through torch._logging's own handlers (one per registered logger)
            self._handlers = _torch_handlers()
            for handler in self._handlers:
                handler.addFilter(self._catch)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        seconds = time.perf_counter() - self._start
        if self._batches == 1:
            self._first = seconds
            for handler in self._handlers:
                handler.removeFilter(self._catch)
            if self._artifact:
                torch._logging.set_logs()
            self._report_breaks(pl_module)
        elif self._batches == 2 and self._first is not None:
            blocks = sum(
                1 for m in pl_module.modules() if getattr(m, "_compiled_call_impl", None) is not None
            )
            rank_zero_info(
                f"compile: {blocks} blocks compiled in {self._first - seconds:.1f} s "
                f"(the first step took {self._first:.1f} s, the second {seconds:.2f} s)"
            )

    def _report_breaks(self, pl_module: pl.LightningModule) -> None:
        count = _graph_breaks() - self._breaks_before
        caught = self._catch.breaks if self._catch is not None else []
        if not count and not caught:
            return
        found: dict[
            str, tuple[str, str]
        ] = {}  # member -> (where, why): dynamo's own reason where it gave one
        for reason, frames, explained in caught or [("", [], False)]:
            member = member_at(pl_module, frames)
            who = f"{member[0]} ({member[1]})" if member else "a member"
            if who in found and not explained:
                continue
            where = f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else "an unknown place"
            found[who] = (where, reason)
        for who, (where, reason) in found.items():
            why = f" ({reason.rstrip(',: ')})" if reason else ""
            rank_zero_info(
                f"warning: compile: {who} breaks the compiled graph at {where}{why}; that part runs eagerly and "
                "the block in pieces (slower): make it traceable, or set compile: false"
            )
