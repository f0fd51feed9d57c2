"""``swapformer prepare``: tokenize a corpus once into token shards that ``fit`` reads by memory map.

::

    swapformer prepare SOURCE --tokenizer T --out DIR [--workers N] [--text_column text] [--val_fraction 0.005]
    swapformer fit --config causal_lm/gpt2-124m --data.path DIR

SOURCE: a text file or folder, .jsonl or .parquet files, a folder written by datasets' save_to_disk, or a dataset
name. T: char, byte, bpe:N (trained on SOURCE's training documents), a tokenizer.json or a Hugging Face model
folder. DIR gets train-00000.bin ..., val-00000.bin (little-endian uint16 ids, uint32 for vocabularies above
65536), tokenizer.json and meta.json. The shards are the same bytes for any --workers; run the same command again
to resume one that was stopped.
"""

from __future__ import annotations

import argparse

from swapformer.cli.errors import VerbParser, user_errors
from swapformer.data.prepare import SHARD_TOKENS, prepare


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
        prog="swapformer prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "source", metavar="SOURCE", help="text file or folder, .jsonl, .parquet, save_to_disk folder"
    )
    p.add_argument("--tokenizer", required=True, help="char, byte, bpe:N, a tokenizer.json or a model folder")
    p.add_argument("--out", required=True, help="the folder to write (resumed when a prepare was stopped)")
    p.add_argument("--workers", type=int, default=1, help="processes that tokenize (default 1)")
    p.add_argument("--text_column", default="text", help="the field holding a record's text (default text)")
    p.add_argument("--val_fraction", type=float, default=0.005, help="share held out for validation")
    p.add_argument("--glob", default="*.txt", help="text files of a SOURCE folder (default *.txt)")
    p.add_argument("--shard_tokens", type=int, default=None, help="tokens per shard file (default 2**28)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> None:
    with user_errors("prepare"):
        args = parser().parse_args(argv)
        prepare(
            args.source,
            tokenizer=args.tokenizer,
            out=args.out,
            workers=args.workers,
            text_column=args.text_column,
            val_fraction=args.val_fraction,
            glob=args.glob,
            shard_tokens=args.shard_tokens or SHARD_TOKENS,
            progress=not args.quiet,
        )
