"""The bad-inputs table: each :class:`Case` is one mistake a user can make, run the way the user would make it,
with the message the user sees. ``test_bad_inputs.py`` runs every case (no traceback, the message names the
value, one ``swapformer <verb>: error:`` line on the command line, exit code 2) and checks that
``docs/bad-inputs.md`` shows the message the code prints today; ``make_docs.py`` writes that page.

Cases live in the ``cases_*.py`` modules of this folder, one per area, each with a ``CASES`` list.

A case is one of three kinds:

* ``argv``: a command line (the verb first) run in-process through ``swapformer.cli.main`` in the case's own
  folder (or as a real process with ``subprocess=True``); it must exit with code 2 and print
  ``swapformer <verb>: error: ...`` on stderr, no traceback.
* ``raises``: a Python call that must raise a ``ValueError`` (``ConfigError`` and the data errors are ones)
  whose message is one line, or a list of problems under one title.
* ``shows``: anything else (a signal sent to a run, a diverging loss): a function that does it and returns the
  message the user sees; it raises ``AssertionError`` itself if what happened is wrong (a lost checkpoint, ...).

Every function gets the :class:`Fixtures`: a fresh folder for the case (``fx.tmp``, also the working folder of
``argv`` cases) and, built once per session when first asked for, tiny checkpoints and recipes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
DOCS_PAGE = REPO / "docs" / "bad-inputs.md"
AREAS = ("API", "recipe", "data", "CLI", "checkpoint", "training")

TINY_CAUSAL_MODEL = {"d_model": 32, "num_heads": 4, "num_layers": 1, "d_ff": 64, "max_seq_len": 32}
TINY_CAUSAL_DATA = {"seq_len": 16, "batch_size": 4, "max_chars": 20000, "train_samples_per_epoch": 8}
TINY_TRAINER = {
    "max_steps": 2,
    "max_epochs": 1,
    "limit_val_batches": 1,
    "val_check_interval": None,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
    "devices": 1,
}


@dataclass(frozen=True)
class Case:
    """One mistake and the message it must produce.

    Args:
        id: unique kebab-case name (the test id and the docs row's anchor).
        area: one of ``AREAS``.
        mistake: what the user did, in the user's words (the docs table's first column).
        expect: a regular expression that the message must contain (``re.search``); it should match the
            named value and the fix.
        argv / raises / shows: exactly one: see the module docstring.
        subprocess: run ``argv`` as ``python -m swapformer ...`` in a real process.
        stdin: text on the standard input of an ``argv`` case.
        env: environment variables set for an ``argv`` case run as a real process (``subprocess=True``): the
            machine the mistake is made on (a ``CXX`` that names no compiler).
    """

    id: str
    area: str
    mistake: str
    expect: str
    argv: Callable[[Fixtures], list[str]] | None = None
    raises: Callable[[Fixtures], Any] | None = None
    shows: Callable[[Fixtures], str] | None = None
    subprocess: bool = False
    stdin: str | None = None
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        kinds = [k for k in ("argv", "raises", "shows") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"case {self.id}: give exactly one of argv, raises, shows (got {kinds})")
        if self.env and not self.subprocess:
            raise ValueError(f"case {self.id}: env applies to a real process only: set subprocess=True")
        if self.area not in AREAS:
            raise ValueError(f"case {self.id}: area {self.area!r} is not one of {AREAS}")


class Fixtures:
    """Shared inputs of the cases. ``root`` is one folder for the session; ``tmp`` is the current case's."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root

    def for_case(self, case: Case) -> Fixtures:
        self.tmp = self.root / "cases" / case.id
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self

    # ---- recipes -------------------------------------------------------------------------------------
    def recipe(self, name: str = "tiny", **changes: dict[str, Any]) -> Path:
        """A tiny causal-LM recipe (stdlib-tiny's data at a few thousand characters; 2 steps) written as
        ``<tmp>/<name>.yaml``; ``changes`` update its sections (``model={...}`` updates model.init_args,
        ``data=`` data.init_args, ``trainer=`` the trainer section)."""
        config = yaml.safe_load((RECIPES / "causal_lm" / "stdlib-tiny.yaml").read_text())
        config["model"]["init_args"].update(TINY_CAUSAL_MODEL)
        config["data"]["init_args"].update(TINY_CAUSAL_DATA)
        config["trainer"].update(TINY_TRAINER)
        config["trainer"]["callbacks"] = [
            c for c in config["trainer"].get("callbacks") or [] if "SampleCallback" not in c["class_path"]
        ]
        for section, values in changes.items():
            target = config[section]["init_args"] if section in ("model", "data") else config[section]
            target.update(values)
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- checkpoints (built once) -------------------------------------------------------------------
    @cached_property
    def causal_checkpoint(self) -> Path:
        """``last.ckpt`` of a 2-step tiny causal-LM fit (d_model 32), made by ``swapformer fit``."""
        return self._fit("causal", self.recipe("causal"))

    @cached_property
    def seq2seq_checkpoint(self) -> Path:
        """``last.ckpt`` of a 2-step tiny encoder-decoder fit on the dates task (d_model 32)."""
        config = yaml.safe_load((RECIPES / "seq2seq" / "dates.yaml").read_text())
        config["model"]["init_args"].update(
            d_model=32, num_heads=4, num_encoder_layers=1, num_decoder_layers=1, d_ff=64, max_seq_len=64
        )
        config["data"]["init_args"].update(num_train=64, num_val=16, batch_size=8)
        config["trainer"].update(TINY_TRAINER)
        config["trainer"]["callbacks"] = [
            c for c in config["trainer"].get("callbacks") or [] if "SampleCallback" not in c["class_path"]
        ]
        path = self.root / "fixtures" / "seq2seq.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self._fit("seq2seq", path)

    # ---- files that are not checkpoints of swapformer fit (built once, cheap) ----------------------------
    @cached_property
    def truncated_checkpoint(self) -> Path:
        """The first half of ``causal_checkpoint``: a copy cut short."""
        data = self.causal_checkpoint.read_bytes()
        return self._write("truncated.ckpt", data[: len(data) // 2])

    @cached_property
    def code_checkpoint(self) -> Path:
        """A torch file holding an object whose unpickling would call a function (``__reduce__``): it writes
        :attr:`code_ran`, which :func:`run_case` looks for after every case."""
        import torch

        path = self.root / "fixtures" / "runs-code.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {}, "payload": _RunsCode(self.code_ran)}, path)
        return path

    @property
    def code_ran(self) -> Path:
        """The file that loading :attr:`code_checkpoint` would write: its presence proves the code ran."""
        return self.root / "fixtures" / "runs-code.ran"

    @cached_property
    def state_dict_file(self) -> Path:
        """A bare state_dict, the way a Hugging Face ``pytorch_model.bin`` is written."""
        import torch

        path = self.root / "fixtures" / "pytorch_model.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"wte.weight": torch.zeros(4, 2), "lm_head.weight": torch.zeros(4, 2)}, path)
        return path

    @cached_property
    def other_lightning_checkpoint(self) -> Path:
        """A Lightning checkpoint of another program's model (no swapformer hyperparameters)."""
        import torch

        path = self.root / "fixtures" / "other.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"pytorch-lightning_version": "2.6.6", "state_dict": {"layer.weight": torch.zeros(2, 2)}}
        torch.save({**state, "hyper_parameters": {"hidden": 2}}, path)
        return path

    def _write(self, name: str, data: bytes | str) -> Path:
        path = self.root / "fixtures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path

    def _fit(self, name: str, recipe: Path) -> Path:
        from swapformer.cli import run

        root = self.root / "fixtures" / name
        with _quiet():
            run(["fit", "--config", str(recipe), f"--trainer.default_root_dir={root}"])
        found = sorted(root.rglob("last.ckpt"))
        if not found:
            raise RuntimeError(f"the {name} fixture fit wrote no last.ckpt under {root}")
        return found[-1]


class _RunsCode:
    """Unpickling this writes the file ``marker``: a stand-in for a checkpoint that runs code on load, with a
    side effect a test can look for (a refusal that came after an unsafe load would still print its message)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "this ran while loading the checkpoint\n"))


@dataclass
class Outcome:
    """What a case produced: ``message`` is what the user sees (the error lines), ``output`` everything."""

    message: str
    output: str
    code: int | None = None


def run_case(case: Case, fx: Fixtures) -> Outcome:
    """Run ``case`` and return what the user sees; raise ``AssertionError`` when it is not a clean error, or
    when it ran the code that :attr:`Fixtures.code_checkpoint` holds (whatever message it printed)."""
    fx.for_case(case)
    try:
        return _run_case(case, fx)
    finally:
        if fx.code_ran.exists():
            fx.code_ran.unlink()  # so that the next case is judged on its own
            raise AssertionError(f"{case.id}: loading the checkpoint ran the code it holds ({fx.code_ran})")


def _run_case(case: Case, fx: Fixtures) -> Outcome:
    if case.raises is not None:
        try:
            case.raises(fx)
        except ValueError as err:
            return Outcome(str(err), f"{type(err).__name__}: {err}")
        except Exception as err:  # the wrong kind of error is what a user sees as a traceback
            raise AssertionError(
                f"{case.id}: raised {type(err).__name__}: {err} (expected a ValueError)"
            ) from err
        raise AssertionError(f"{case.id}: nothing was raised")
    if case.shows is not None:
        message = case.shows(fx)
        return Outcome(message, message)
    argv = [str(a) for a in case.argv(fx)]
    if case.subprocess:
        code, stdout, stderr = _run_process(argv, fx.tmp, case.stdin, case.env)
    else:
        code, stdout, stderr = _run_in_process(argv, fx.tmp, case.stdin)
    output = stdout + stderr
    if "Traceback (most recent call last)" in output:
        raise AssertionError(f"{case.id}: a traceback reached the user:\n{output[-3000:]}")
    if code != 2:
        raise AssertionError(f"{case.id}: exit code {code} (expected 2):\n{output[-3000:]}")
    verb = argv[0]
    head = f"swapformer {verb}: error:"
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(head)]
    if not starts:
        raise AssertionError(f"{case.id}: no line starts with {head!r} on stderr:\n{stderr[-3000:]}")
    usage = [line for line in lines if line.startswith("usage:")]
    if usage:  # argparse's usage block before the line: a screen of options, none of them the fix
        raise AssertionError(f"{case.id}: the parser's usage reached the user:\n{stderr[-3000:]}")
    message = "\n".join(lines[starts[0] :]).strip()
    return Outcome(message, output, code)


def check_message(case: Case, outcome: Outcome) -> None:
    """The message matches ``case.expect``; a single problem fits on one line."""
    if not re.search(case.expect, outcome.message):
        raise AssertionError(f"{case.id}: {case.expect!r} not found in the message:\n{outcome.message}")
    lines = outcome.message.splitlines()
    if len(lines) > 1 and not all(line.startswith("  - ") for line in lines[1:]):
        raise AssertionError(
            f"{case.id}: the message is not one line (nor a list of problems):\n{outcome.message}"
        )


def shown(case: Case, outcome: Outcome, fx: Fixtures) -> str:
    """The message as the docs page shows it: the session's folders replaced by short names."""
    text = outcome.message.replace(str(fx.tmp) + os.sep, "").replace(str(fx.tmp), ".")
    text = text.replace(str(fx.root / "fixtures") + os.sep, "fixtures/").replace(str(fx.root), "<tmp>")
    return text


def _run_in_process(argv: list[str], cwd: Path, stdin: str | None) -> tuple[int | None, str, str]:
    from swapformer.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous, old_stdin = os.getcwd(), sys.stdin
    os.chdir(cwd)
    sys.stdin = io.StringIO(stdin or "")
    code: int | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
            except Exception:
                import traceback

                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def _run_process(
    argv: list[str], cwd: Path, stdin: str | None, extra_env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-m", "swapformer", *argv],
        cwd=cwd,
        input=stdin or "",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def all_cases() -> list[Case]:
    """Every case of every ``cases_*.py`` module of this folder, in file then list order."""
    import importlib

    cases: list[Case] = []
    for path in sorted(Path(__file__).parent.glob("cases_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}" if __package__ else path.stem)
        cases += module.CASES
    return cases
