"""``swapformer evaluate``: score a checkpoint on a file, with the checkpoint's own tokenizer (nothing re-fitted).

::

    swapformer evaluate --ckpt_path runs/stdlib-tiny/logs/version_0/checkpoints/last.ckpt --path held_out.txt
    swapformer evaluate --ckpt_path dates.ckpt --src test.src --ref test.ref [--num_beams 4]

A causal-LM checkpoint prints the perplexity of the text, and its bits per character and per UTF-8 byte
(comparable across tokenizers, unlike perplexity). The text is cut into consecutive windows of ``--seq_len``
tokens (default: the model's ``max_seq_len``), as validation does: every token but the first is predicted, from
the tokens before it in its window. A seq2seq checkpoint translates the source lines and prints sacreBLEU's
corpus BLEU and chrF with their signatures (so the figures can be compared with published ones).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TextIO

import sacrebleu
import torch
import torch.nn.functional as F

from swapformer.cli.errors import VerbParser, read_text, user_errors
from swapformer.cli.helptext import plain
from swapformer.cli.model_args import add_model_arguments, checked_device, no_tokenizer, resolve_model
from swapformer.registry import kind
from swapformer.tasks import SwapformerModule


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
        allow_abbrev=False,
        prog="swapformer evaluate",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--path", help="a text file to score (causal LM)")
    p.add_argument("--src", help="source lines to translate (seq2seq)")
    p.add_argument("--ref", help="reference translations, one per source line (seq2seq)")
    p.add_argument(
        "--seq_len", type=int, help="tokens per window (causal LM); default: the model's max_seq_len"
    )
    p.add_argument("--batch_size", type=int, default=16, help="windows or source lines per forward pass")
    p.add_argument("--num_beams", type=int, default=1, help="beam search width for translation (1 = greedy)")
    p.add_argument("--max_len", type=int, help="most tokens per translation; default: source length + 16")
    p.add_argument("--device", default="cpu")
    return p


def load(path: str, device: str = "cpu") -> SwapformerModule:
    """The checkpoint's module (model, hyperparameters, tokenizer), in eval mode.

    Raises:
        CheckpointError: no such file, a folder (an unconsolidated distributed checkpoint), not a checkpoint of
            swapformer fit (the message says what it is).
        ValueError: the checkpoint holds no tokenizer.
    """
    module = SwapformerModule.load(path, map_location=device)
    if module.tokenizer is None:
        raise ValueError(no_tokenizer(path))
    return module


@torch.inference_mode()
def text_scores(
    module: SwapformerModule, text: str, *, seq_len: int | None = None, batch_size: int = 16
) -> dict:
    """Perplexity, bits per character and bits per byte of ``text`` under a causal LM.

    Returns:
        ``{"perplexity", "bits_per_character", "bits_per_byte", "tokens", "characters", "bytes"}``: perplexity
        per predicted token (all but the first), bits per character and per UTF-8 byte of the whole text (the
        usual definition; characters the tokenizer does not know count as text too).

    Raises:
        ValueError: ``text`` is shorter than two tokens, or ``seq_len`` is below 1.
    """
    seq_len = module.config.max_seq_len if seq_len is None else seq_len
    if seq_len < 1:
        raise ValueError(f"--seq_len={seq_len} must be at least 1")
    ids = module.tokenizer.encode(text)
    if len(ids) < 2:
        raise ValueError(
            f"the text has {len(ids)} token(s); at least 2 are needed to predict one from another"
        )
    stream = torch.tensor(ids, dtype=torch.long)
    # window k holds tokens [k L, (k+1) L] : inputs its first L, labels its last L (the same split as validation)
    starts = list(range(0, len(ids) - 1, seq_len))
    full = [s for s in starts if s + seq_len + 1 <= len(ids)]
    nll = 0.0
    for first in range(0, len(full), batch_size):
        windows = torch.stack([stream[s : s + seq_len + 1] for s in full[first : first + batch_size]])
        nll += _sum_nll(module, windows)
    if len(full) < len(starts):  # the shorter last window
        nll += _sum_nll(module, stream[starts[-1] :].unsqueeze(0))
    bits, num_bytes = nll / math.log(2), len(text.encode("utf-8"))
    return {
        "perplexity": math.exp(nll / (len(ids) - 1)),
        "bits_per_character": bits / len(text),
        "bits_per_byte": bits / num_bytes,
        "tokens": len(ids) - 1,
        "characters": len(text),
        "bytes": num_bytes,
    }


def _sum_nll(module: SwapformerModule, windows: torch.Tensor) -> float:
    windows = windows.to(module.device)
    logits = module(windows[:, :-1])  # (N, L, V)
    return float(F.cross_entropy(logits.flatten(0, 1).float(), windows[:, 1:].flatten(), reduction="sum"))


def translation_scores(
    module: SwapformerModule, sources: list[str], references: list[str], *, batch_size: int = 16, **kwargs
) -> tuple[
    sacrebleu.metrics.BLEU, sacrebleu.BLEUScore, sacrebleu.metrics.CHRF, sacrebleu.metrics.chrf.CHRFScore
]:
    """Translate ``sources`` and score them against ``references``: (BLEU metric, its score, chrF, its score);
    the metrics give the signatures. ``kwargs`` go to :meth:`Seq2SeqModule.translate`."""
    hypotheses: list[str] = []
    with torch.inference_mode():
        for first in range(0, len(sources), batch_size):
            hypotheses += module.translate(sources[first : first + batch_size], **kwargs)
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    return (
        bleu,
        bleu.corpus_score(hypotheses, [references]),
        chrf,
        chrf.corpus_score(hypotheses, [references]),
    )


def _lines(path: str, option: str) -> list[str]:
    return read_text(path, option).splitlines()


def _run(args: argparse.Namespace, out: TextIO) -> None:
    if args.batch_size < 1 or args.num_beams < 1:
        raise ValueError("--batch_size and --num_beams must be at least 1")
    args.ckpt_path = resolve_model(args)
    module = load(args.ckpt_path, checked_device(args.device))
    model_kind = module.config.kind
    if kind(model_kind).source:
        if args.path or not (args.src and args.ref):
            raise ValueError(f"{args.ckpt_path} holds a {model_kind} model: pass --src FILE --ref FILE")
        sources, references = _lines(args.src, "--src"), _lines(args.ref, "--ref")
        if len(sources) != len(references) or not sources:
            raise ValueError(
                f"--src has {len(sources)} lines and --ref {len(references)}: they must match (>0)"
            )
        bleu, bleu_score, chrf, chrf_score = translation_scores(
            module,
            sources,
            references,
            batch_size=args.batch_size,
            max_len=args.max_len,
            num_beams=args.num_beams,
        )
        out.write(f"{bleu_score}\nsignature: {bleu.get_signature()}\n")
        out.write(f"{chrf_score}\nsignature: {chrf.get_signature()}\n")
        return
    if not kind(model_kind).generates:
        given = (  # validate reads a .ckpt as --ckpt_path, a model folder as the weights to start from
            f"--model.init_args.init_from {args.ckpt_path}"
            if Path(args.ckpt_path).is_dir()
            else f"--ckpt_path {args.ckpt_path}"
        )
        raise ValueError(
            f"{args.ckpt_path} holds a {model_kind} model, which has no left-to-right perplexity: score its "
            f"masked tokens with swapformer validate --config RECIPE {given} (RECIPE: the run's config.yaml, "
            "or one that describes this model)"
        )
    if args.src or args.ref or not args.path:
        raise ValueError(f"{args.ckpt_path} holds a {model_kind} model: pass --path FILE (a text to score)")
    text = read_text(args.path, "--path")
    scores = text_scores(module, text, seq_len=args.seq_len, batch_size=args.batch_size)
    out.write(
        f"perplexity {scores['perplexity']:.4f}\n"
        f"bits per character {scores['bits_per_character']:.4f}\n"
        f"bits per byte {scores['bits_per_byte']:.4f}\n"
        f"({scores['tokens']:,} tokens predicted; {scores['characters']:,} characters, {scores['bytes']:,} bytes)\n"
    )


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None) -> None:
    """Entry point (``swapformer evaluate ...``)."""
    with user_errors("evaluate", also=(ValueError, OSError)):
        args = parser().parse_args(argv)
        _run(args, stdout or sys.stdout)
