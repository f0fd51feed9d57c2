"""The streaming loader's tokens per second against a bare encode loop over the same documents.

``CausalLMDataModule(streaming=True)`` on tiny shakespeare's speeches (blank-line separated) as JSON lines, the
file repeated ``--repeat`` times, read through ``datasets.load_dataset("json", streaming=True)`` by one DataLoader
worker (``num_workers=1``), batches of ``--batch_size`` x ``--seq_len`` until the source is read once. The peer,
measured in the same run on the same documents and tokenizer (a byte-level BPE fitted once, not timed): a plain
loop reading the JSON lines and encoding each document plus eos, which is the least a streaming loader must do.
The ratio is loader / peer tokens per second; each figure is the best of ``--trials`` alternating runs.

    python benchmarks/streaming.py [--data PATH] [--repeat 2] [--vocab 4096] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread on both sides


def write_corpus(data: Path, repeat: int, out: Path) -> list[str]:
    speeches = [s for s in data.read_text(encoding="utf-8").split("\n\n") if s.strip()] * repeat
    out.write_text("".join(json.dumps({"text": s}) + "\n" for s in speeches), encoding="utf-8")
    return speeches


def bare_encode(corpus: Path, tokenizer) -> tuple[int, float]:
    """Read the JSON lines and encode every document plus eos: the peer."""
    start, tokens = time.perf_counter(), 0
    with open(corpus, encoding="utf-8") as lines:
        for line in lines:
            tokens += len(tokenizer.encode(json.loads(line)["text"])) + 1
    return tokens, time.perf_counter() - start


def streaming_loader(corpus: Path, tokenizer_dir: Path, seq_len: int, batch_size: int, batches: int):
    """``batches`` batches of the streaming data module (one worker); start-up (the worker's) included."""
    from swapformer.data import CausalLMDataModule

    data = CausalLMDataModule(
        path=str(corpus),
        tokenizer=str(tokenizer_dir),
        streaming=True,
        val_documents=1,
        seq_len=seq_len,
        batch_size=batch_size,
        num_workers=1,
    )
    start, tokens = time.perf_counter(), 0
    for count, batch in enumerate(data.train_dataloader(), 1):
        tokens += batch["input_ids"].numel()
        if count == batches:
            break
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    from swapformer.data import build_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.jsonl"
        speeches = write_corpus(args.data, args.repeat, corpus)
        tokenizer = build_tokenizer("bpe", speeches[: len(speeches) // args.repeat], vocab_size=args.vocab)
        tokenizer.save_pretrained(Path(folder) / "tok")
        total, _ = bare_encode(corpus, tokenizer)
        batches = total // (args.seq_len * args.batch_size) - 1  # about one pass over the source
        best = {"loader": 0.0, "bare encode": 0.0}
        for _ in range(args.trials):
            tokens, seconds = streaming_loader(
                corpus, Path(folder) / "tok", args.seq_len, args.batch_size, batches
            )
            best["loader"] = max(best["loader"], tokens / seconds)
            tokens, seconds = bare_encode(corpus, tokenizer)
            best["bare encode"] = max(best["bare encode"], tokens / seconds)
        print(
            f"{len(speeches)} documents, {total:,} tokens; {batches} batches of {args.batch_size} x {args.seq_len}"
        )
        for name, rate in best.items():
            print(f"{name:>12}: {rate / 1e6:.3f}M tokens/s (best of {args.trials})")
        print(f"loader / bare encode: {best['loader'] / best['bare encode']:.2f}")


if __name__ == "__main__":
    main()
