"""``swapformer prepare`` against nanoGPT's openwebtext ``prepare.py`` approach, and the shard loader's speed.

nanoGPT's approach: ``dataset.map(process, num_proc=N)`` encodes every document (ids + eot), then the ids are
written into one ``np.memmap`` of uint16. Without the ``datasets`` package here, its ``map(num_proc=N)`` is what
it is underneath: a process pool mapping ``process`` over the documents, the results gathered, then written. Both
sides use the same tokenizer (a byte-level BPE that ``prepare`` first fits on the corpus; fitting is not timed)
on the same documents: tiny shakespeare's speeches (blank-line separated) as JSON lines, the file repeated
``--repeat`` times. Each figure is the best of ``--trials`` runs (the machine's cores are shared).

Then the shard loader: ``CausalLMDataModule(path=DIR)`` batches of 8 x 1024 read in the main process (one CPU
worker), tokens per second, and its memory: a folder of ``--big_mb`` MB (the shards tiled) read at random
offsets, the process's anonymous memory (RssAnon) and file pages (RssFile) before and after.

    python benchmarks/prepare.py [--data PATH] [--repeat 4] [--vocab 4096] [--trials 3] [--big_mb 512]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker, on both sides

_TOKENIZER = None


def _start(tokenizer_file: str) -> None:
    global _TOKENIZER
    from swapformer.data.cache import load_tokenizer_file

    _TOKENIZER = load_tokenizer_file(Path(tokenizer_file))


def _process(text: str) -> list[int]:  # nanoGPT's process(): ids plus the end-of-text token
    ids = _TOKENIZER.encode(text)
    ids.append(_TOKENIZER.eos_id)
    return ids


def nanogpt_style(source: Path, tokenizer_file: str, out: Path, workers: int) -> int:
    """Read the JSON lines (load_dataset("json")), encode with a pool of ``workers`` (datasets.map(num_proc=...)),
    then fill one uint16 memmap."""
    with open(source, encoding="utf-8") as lines:
        documents = [json.loads(line)["text"] for line in lines]
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_start, initargs=(tokenizer_file,)) as pool:
        encoded = pool.map(_process, documents, chunksize=64)
    total = sum(map(len, encoded))
    array = np.memmap(out, dtype=np.uint16, mode="w+", shape=(total,))
    index = 0
    for batch_start in range(0, len(encoded), 1024):  # nanoGPT writes in 1024 shards of the dataset
        batch = np.concatenate(
            [np.asarray(ids, dtype=np.uint16) for ids in encoded[batch_start : batch_start + 1024]]
        )
        array[index : index + len(batch)] = batch
        index += len(batch)
    array.flush()
    return total


def best(trials: int, run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(trials):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def memory() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--big_mb", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if not Path(args.data).is_file():
        raise SystemExit(f"no corpus at {args.data}; pass --data path/to/tinyshakespeare/input.txt")
    from swapformer.data import CausalLMDataModule
    from swapformer.data.prepare import prepare

    text = Path(args.data).read_text(encoding="utf-8")
    speeches = [s for s in text.split("\n\n") if s.strip()] * args.repeat
    root = Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    try:
        source = root / "corpus.jsonl"
        source.write_text("".join(json.dumps({"text": s}) + "\n" for s in speeches), encoding="utf-8")
        fitted = root / "fitted"
        prepare(str(source), tokenizer=f"bpe:{args.vocab}", out=fitted, progress=False)
        tokenizer_file = str(fitted / "tokenizer.swapformer.json")
        size_mb = source.stat().st_size / 1e6
        print(
            f"corpus: {len(speeches)} documents, {size_mb:.1f} MB of JSON lines, BPE {args.vocab}, best of {args.trials}"
        )
        results = {}
        for workers in args.workers:

            def ours(workers=workers) -> dict:
                out = root / f"ours-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                return prepare(
                    str(source), tokenizer=tokenizer_file, out=out, workers=workers, progress=False
                )

            def theirs(workers=workers) -> int:
                return nanogpt_style(source, tokenizer_file, root / f"nanogpt-{workers}.bin", workers)

            seconds, meta = best(args.trials, ours)
            tokens = meta["tokens"]["train"] + meta["tokens"]["val"]
            their_seconds, their_tokens = best(args.trials, theirs)
            assert their_tokens == tokens, (their_tokens, tokens)  # the same ids, split in two by prepare
            results[workers] = (seconds, their_seconds)
            print(
                f"workers {workers}: swapformer prepare {seconds:.2f} s ({tokens / seconds / 1e6:.2f}M tokens/s), "
                f"nanoGPT-style {their_seconds:.2f} s ({tokens / their_seconds / 1e6:.2f}M tokens/s)"
            )
        for workers in args.workers[1:]:
            print(
                f"{args.workers[0]} -> {workers} workers: swapformer prepare "
                f"{results[args.workers[0]][0] / results[workers][0]:.2f}x, "
                f"nanoGPT-style {results[args.workers[0]][1] / results[workers][1]:.2f}x"
            )
            same = all(
                (root / f"ours-{args.workers[0]}" / f.name).read_bytes() == f.read_bytes()
                for f in (root / f"ours-{workers}").glob("*.bin")
            )
            print(f"shards of {args.workers[0]} and {workers} workers byte-identical: {same}")

        data = CausalLMDataModule(
            path=str(root / f"ours-{args.workers[0]}"), seq_len=1024, batch_size=8, seed=0
        )
        data.setup("fit")
        loader = data.train_dataloader()
        batches = min(len(loader), 400)
        iterator = iter(loader)
        next(iterator)
        started = time.perf_counter()
        for _ in range(batches - 1):
            next(iterator)
        seconds = time.perf_counter() - started
        print(
            f"shard loader, 1 CPU worker: {(batches - 1) * 8 * 1024 / seconds / 1e6:.2f}M tokens/s (8 x 1024 windows)"
        )

        big = root / "big"
        shutil.copytree(root / f"ours-{args.workers[0]}", big)
        meta = json.loads((big / "meta.json").read_text())
        shard = (big / "train-00000.bin").read_bytes()
        copies = max(1, args.big_mb * 1_000_000 // len(shard))
        with open(big / "train-00000.bin", "wb") as handle:
            for _ in range(copies):
                handle.write(shard)
        meta["tokens"]["train"] = meta["shards"]["train"][0]["tokens"] = copies * len(shard) // 2
        (big / "meta.json").write_text(json.dumps(meta))
        before = memory()
        data = CausalLMDataModule(
            path=str(big), seq_len=1024, batch_size=8, seed=0, train_samples_per_epoch=16000
        )
        data.setup("fit")
        for _ in data.train_dataloader():
            pass
        after = memory()
        print(
            f"a {copies * len(shard) / 1e6:.0f} MB folder, 2000 batches of 8 x 1024 at random offsets: RssAnon "
            f"{before['RssAnon']:.0f} -> {after['RssAnon']:.0f} MB, RssFile {before['RssFile']:.0f} -> "
            f"{after['RssFile']:.0f} MB (file pages: the page cache, shared, dropped under pressure)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
