"""``swapformer generate``: decode with a trained checkpoint, streaming tokens as they come.

::

    swapformer generate --ckpt_path runs/stdlib-tiny/logs/version_0/checkpoints/last.ckpt --prompt "def main(" [--prompt ...]
    swapformer generate --ckpt_path last.ckpt --prompts_file prompts.txt --do_sample --temperature 0.8 --top_k 40
    swapformer generate --ckpt_path dates.ckpt < dates.txt          # a seq2seq checkpoint translates each line
    swapformer generate --ckpt_path dates.ckpt --input dates.txt --num_beams 4

The checkpoint holds the tokenizer, so nothing else is needed. A causal-LM checkpoint continues each prompt and
streams the new text; a seq2seq checkpoint reads lines (``--input`` or stdin) and prints one output line each. A
model folder with a ``generation_config.json`` (an imported Hugging Face model), or a checkpoint of a fit started
from one, decodes with its settings (beams, lengths, forced and blocked tokens); the options given win.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import torch

from swapformer.cli.errors import VerbParser, read_text, user_errors
from swapformer.cli.helptext import plain
from swapformer.cli.model_args import add_model_arguments, checked_device, no_tokenizer, resolve_model
from swapformer.generation.decoding import SETTING_NAMES
from swapformer.generation.resolve import DEFAULT, resolve
from swapformer.models.decoding import check_length
from swapformer.registry import kind
from swapformer.tasks import SwapformerModule

DEFAULT_NEW_TOKENS = 200


class TextStreamer:
    """Writes the text of one row as its tokens arrive (the ``put``/``end`` protocol of ``generate``).

    The whole row is decoded each time and only the new suffix is written, so tokens that do not decode alone (a
    byte of a multi-byte character, a BPE piece) still print correctly.
    """

    def __init__(self, tokenizer: Any, *, eos_id: int | None = None, file: TextIO | None = None) -> None:
        self.tokenizer, self.eos_id, self.file = tokenizer, eos_id, file or sys.stdout
        self.ids: list[int] = []
        self.printed = ""
        self.done = False

    def put(self, value: torch.Tensor) -> None:
        token = int(value.reshape(-1)[0])
        if self.done or token == self.eos_id:
            self.done = True
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.startswith(self.printed) and not text.endswith("\ufffd"):  # wait for a whole character
            self.file.write(text[len(self.printed) :])
            self.file.flush()
            self.printed = text

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids)
        if text.startswith(self.printed):
            self.file.write(text[len(self.printed) :])
        self.file.write("\n")
        self.file.flush()


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
        allow_abbrev=False,
        prog="swapformer generate",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--prompt", action="append", default=[], help="text to continue (causal LM); repeatable")
    p.add_argument("--prompts_file", help="a file of prompts, one per line (causal LM)")
    p.add_argument("--input", help="a file of source lines (seq2seq); default: stdin")
    p.add_argument(
        "--max_new_tokens",
        type=int,
        help="most new tokens per prompt or line (default: the folder's generation_config.json, else 200 or what a "
        "learned positional table leaves room for)",
    )
    p.add_argument("--do_sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, help="divides the logits before sampling (default: 1)")
    p.add_argument("--top_k", type=int)
    p.add_argument("--top_p", type=float)
    p.add_argument(
        "--repetition_penalty", type=float, help="> 1 discourages repeated tokens (default: 1, off)"
    )
    p.add_argument("--num_beams", type=int, help="beam search with this many beams (default: 1, none)")
    p.add_argument("--length_penalty", type=float, help="beam scores divided by length ** this (default: 1)")
    p.add_argument("--seed", type=int, help="makes sampling repeatable")
    p.add_argument(
        "--no_cache", action="store_true", help="re-run the whole prefix each step (slow; for checks)"
    )
    p.add_argument("--batch_size", type=int, default=32, help="source lines decoded together (seq2seq)")
    p.add_argument("--device", default="cpu")
    return p


def _load(path: str, device: str):
    module = SwapformerModule.load(path, map_location=device)  # CheckpointError names a file that is not one
    kind_name = module.config.kind
    if not kind(kind_name).generates:
        raise ValueError(f"{path} holds a {kind_name} model, which does not decode left to right")
    if module.tokenizer is None:
        raise ValueError(no_tokenizer(path))
    return module


def _generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options given; those left out take the model's generation defaults (an imported folder's
    generation_config.json), else generate()'s."""
    names = ["num_beams", "length_penalty", "repetition_penalty", "seed"]
    if args.do_sample:
        names += ["do_sample", "temperature", "top_k", "top_p"]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {"use_cache": not args.no_cache, "max_new_tokens": args.max_new_tokens, **given}


def _beams(module, kwargs: dict[str, Any]) -> int:
    defaults = module.model.generation_config
    return kwargs.get("num_beams") or (defaults and defaults.num_beams) or 1


def _continue(module, prompts: Iterable[str], kwargs: dict[str, Any], out: TextIO) -> None:
    tokenizer = module.tokenizer
    for number, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt)
        if not ids:
            raise ValueError(f"prompt {number + 1} is empty: give some text for the model to continue")
        input_ids = torch.tensor([ids], device=module.device)
        settings = dict(kwargs)
        if settings["max_new_tokens"] is None and module.model.generation_config is None:
            limit = module.model.positional.max_length
            room = DEFAULT_NEW_TOKENS if limit is None else min(DEFAULT_NEW_TOKENS, limit - len(ids))
            settings["max_new_tokens"] = max(room, 1)  # no room: generate() names the lengths
        # the settings and the length checked before the prompt is printed, so that a mistake is the only line
        resolved, _ = resolve(module.model, input_ids, {n: settings.get(n, DEFAULT) for n in SETTING_NAMES})
        check_length(module.model.positional, len(ids) + resolved.max_new_tokens, "prompt + max_new_tokens")
        out.write(f"\n{prompt}" if number else prompt)
        out.flush()
        if _beams(module, kwargs) > 1:  # beams are only known at the end
            new = module.generate(input_ids, max_context=0, **settings)[0, len(ids) :].tolist()
            out.write(tokenizer.decode(new) + "\n")
        else:
            streamer = TextStreamer(tokenizer, file=out)
            module.generate(input_ids, max_context=0, streamer=streamer, **settings)


def _translate(module, lines: Iterable[str], kwargs: dict[str, Any], batch_size: int, out: TextIO) -> None:
    kwargs = dict(kwargs)
    max_len = kwargs.pop("max_new_tokens")
    if max_len is None and module.model.generation_config is None:  # else the model's defaults say
        max_len = min(DEFAULT_NEW_TOKENS, module.config.max_seq_len - 1)
    batch: list[str] = []

    def flush() -> None:
        out.writelines(text + "\n" for text in module.translate(batch, max_len, **kwargs))
        out.flush()
        batch.clear()

    for line in lines:
        batch.append(line.rstrip("\n"))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Entry point (``swapformer generate ...``); ``stdin``/``stdout`` default to the process's streams."""
    out, source = stdout or sys.stdout, stdin or sys.stdin
    with user_errors("generate", also=(ValueError, OSError)):
        args = parser().parse_args(argv)
        if args.batch_size < 1:
            raise ValueError(
                f"--batch_size {args.batch_size} must be at least 1 (source lines decoded together)"
            )
        kwargs = _generation_kwargs(args)
        module = _load(resolve_model(args), checked_device(args.device))
        with torch.inference_mode():
            if kind(module.config.kind).source:  # a seq2seq model translates lines
                if args.prompt or args.prompts_file:
                    raise ValueError(
                        "a seq2seq checkpoint translates source lines: pass --input FILE or pipe lines on stdin"
                    )
                lines = read_text(args.input, "--input").splitlines() if args.input else source
                _translate(module, lines, kwargs, args.batch_size, out)
                return
            prompts = list(args.prompt)
            if args.prompts_file:
                lines = read_text(args.prompts_file, "--prompts_file").splitlines()
                prompts += [line for line in lines if line.strip()]
            if not prompts:
                raise ValueError(
                    "a causal-LM checkpoint continues prompts: pass --prompt TEXT or --prompts_file FILE"
                )
            _continue(module, prompts, kwargs, out)
