"""Data preparation of a causal-LM corpus: first launch (fit the tokenizer, encode) vs second (read the cache),
and the peak memory of encoding the corpus whole (before) vs in chunks (now).

Each measurement runs in a fresh process, so peak resident memory (``ru_maxrss``) and timings are its own. The
corpus is tiny shakespeare repeated to ``--mb`` megabytes; the cache is a fresh temporary folder.

    python benchmarks/data_cache.py [--mb 10] [--tokenizer bpe] [--vocab 2000] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
)


def launch(corpus: str, cache_dir: str, tokenizer: str, vocab: int) -> dict:
    """One launch's data preparation, as LightningCLI drives it: vocab_size, then setup('fit')."""
    from swapformer.data import CausalLMDataModule

    options = {"vocab_size": vocab} if tokenizer == "bpe" else {}
    started = time.perf_counter()
    data = CausalLMDataModule(
        path=corpus, tokenizer=tokenizer, tokenizer_options=options, seq_len=256, cache_dir=cache_dir
    )
    _ = data.vocab_size
    data.setup("fit")
    return {
        "seconds": time.perf_counter() - started,
        "tokens": data.train_tokens.numel() + data.val_tokens.numel(),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def encode_peak(corpus: str, tokenizer_kind: str, chunked: bool) -> dict:
    """Peak memory of encoding the corpus with a char tokenizer: one list of ids (before) or chunks (now)."""
    import torch

    from swapformer.data import build_tokenizer
    from swapformer.data.cache import encode_chunked

    text = Path(corpus).read_text(encoding="utf-8")
    tokenizer = build_tokenizer("char", text[:100_000] + "".join(sorted(set(text))))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    ids = (
        encode_chunked(tokenizer, text)
        if chunked
        else torch.tensor(tokenizer.encode(text), dtype=torch.int32)
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_mb": peak / 1024,
        "encode_mb": (peak - before) / 1024,
        "tokens": ids.numel(),
    }


def child(function: str, *args: object) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import data_cache; "
    code += f"print(json.dumps(data_cache.{function}(*{args!r})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=10.0)
    p.add_argument("--tokenizer", default="bpe", choices=["char", "byte", "bpe"])
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        text = Path(args.data).read_text(encoding="utf-8")
        corpus = Path(scratch) / "corpus.txt"
        corpus.write_text(text * max(1, round(args.mb * 1e6 / len(text.encode()))), encoding="utf-8")
        size = corpus.stat().st_size / 1e6
        cache = str(Path(scratch) / "cache")
        first = child("launch", str(corpus), cache, args.tokenizer, args.vocab)
        second = child("launch", str(corpus), cache, args.tokenizer, args.vocab)
        print(f"corpus {size:.1f} MB, {first['tokens']:,} {args.tokenizer} tokens")
        print(
            f"data preparation, first launch (fit + encode + write cache): {first['seconds']:.2f} s, peak RSS {first['peak_mb']:.0f} MB"
        )
        print(
            f"data preparation, second launch (read cache):              {second['seconds']:.2f} s, peak RSS {second['peak_mb']:.0f} MB"
        )
        whole = child("encode_peak", str(corpus), "char", False)
        chunks = child("encode_peak", str(corpus), "char", True)
        print(
            f"char encoding, one list of ids: peak RSS {whole['peak_mb']:.0f} MB (+{whole['encode_mb']:.0f} MB), {whole['seconds']:.2f} s"
        )
        print(
            f"char encoding, chunked to int32: peak RSS {chunks['peak_mb']:.0f} MB (+{chunks['encode_mb']:.0f} MB), {chunks['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
