"""Best-fit packing (``pack: true``, ``pack: best_fit``): every document once and whole, rows of at most
``seq_len``, the rows best-fit decreasing defines (a plain loop as the reference), >= 95% of the slots filled by
documents of 20-400 tokens, and the same rows in every process, worker split and resumed run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_testlib import assert_resume_continues
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from tests.conftest import play_text

from swapformer.data import CausalLMDataModule
from swapformer.data.packing import PackedRows, pack_best_fit, pack_documents
from swapformer.data.prepare import prepare

SEQ_LEN, EOS = 64, 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("best_fit")
    # instruction-like: short documents, a few longer than a row
    lines = [json.dumps({"text": play_text(10 + (i * 37) % 110, seed=i)}) for i in range(240)]
    (root / "c.jsonl").write_text("\n".join(lines) + "\n")
    prepare(str(root / "c.jsonl"), tokenizer="byte", out=root / "out", val_fraction=0.1, shard_tokens=4000)
    return root / "out"


def make(folder: Path, **overrides) -> CausalLMDataModule:
    options = {"path": str(folder), "seq_len": SEQ_LEN, "batch_size": 4, "seed": 5, "pack": "best_fit"}
    return CausalLMDataModule(**{**options, **overrides})


def random_corpus(lengths: list[int], *, seed: int, eos_last: bool = True) -> torch.Tensor:
    """Documents of ``lengths`` tokens (ids 4..99), each ending with eos, the last one without if not ``eos_last``."""
    generator = torch.Generator().manual_seed(seed)
    docs = [
        torch.cat([torch.randint(4, 100, (n - 1,), generator=generator), torch.tensor([EOS])])
        for n in lengths
    ]
    if not eos_last:
        docs[-1] = docs[-1][:-1] if len(docs[-1]) > 1 else torch.tensor([7])
    return torch.cat(docs)


def documents(tokens: torch.Tensor) -> list[tuple[int, int]]:
    """The stream's documents as ``(start, end)``, a plain loop over its tokens (the last may lack its eos)."""
    found, start = [], 0
    values = tokens.tolist()
    for index, token in enumerate(values):
        if token == EOS or index == len(values) - 1:
            found.append((start, index + 1))
            start = index + 1
    return found


def cut(start: int, end: int, seq_len: int) -> list[tuple[int, int]]:
    """A document as rows of ``seq_len`` tokens and its last piece (itself, when it fits a row)."""
    full = [(s, s + seq_len) for s in range(start, end - seq_len, seq_len)]
    return [*full, (full[-1][1] if full else start, end)]


def best_fit_reference(tokens: torch.Tensor, seq_len: int, window: int) -> list[list[tuple[int, int]]]:
    """Best-fit decreasing as its definition reads, over the pieces of the documents whose first token is in
    each stretch of ``window * seq_len`` tokens: longest first, ties in stream order, into the row with the least
    room that holds the piece, the earliest made on a tie, else into a new row."""
    windows: dict[int, list[tuple[int, int]]] = {}
    for start, end in documents(tokens):
        windows.setdefault(start // (window * seq_len), []).extend(cut(start, end, seq_len))
    rows = []
    for group in windows.values():
        made: list[list[tuple[int, int]]] = []
        for start, end in sorted(group, key=lambda span: (-(span[1] - span[0]), span[0])):
            room = [seq_len - sum(e - s for s, e in row) for row in made]
            fits = [i for i, left in enumerate(room) if left >= end - start]
            if fits:
                made[min(fits, key=lambda i: room[i])].append((start, end))
            else:
                made.append([(start, end)])
        rows += made
    return sorted(sorted(row) for row in rows)


def rows_of(packing) -> list[list[tuple[int, int]]]:
    return [[tuple(span) for span in packing.row(r).tolist()] for r in range(len(packing))]


@pytest.mark.parametrize("seq_len", [1, 4, 16, 64])
@pytest.mark.parametrize("window", [1, 3, 256])
def test_every_document_once_whole_in_rows_of_seq_len_as_best_fit_decreasing_places_them(
    seq_len: int, window: int
) -> None:
    generator = torch.Generator().manual_seed(seq_len * 1000 + window)
    lengths = torch.randint(1, 3 * seq_len + 2, (80,), generator=generator).tolist()
    tokens = random_corpus(lengths, seed=seq_len, eos_last=window != 3)  # once a last document without eos
    rows = rows_of(pack_best_fit(tokens, eos_id=EOS, seq_len=seq_len, window=window))
    spans = sorted(span for row in rows for span in row)
    pieces = [piece for start, end in documents(tokens) for piece in cut(start, end, seq_len)]
    assert spans == pieces  # every document (or piece of one longer than a row) once and whole
    assert all(0 < sum(e - s for s, e in row) <= seq_len for row in rows)
    assert all(row == sorted(row) for row in rows)  # a row reads its documents in stream order
    assert [row[0][0] for row in rows] == sorted(row[0][0] for row in rows)  # rows by their first token
    assert sorted(rows) == best_fit_reference(tokens, seq_len, window)
    items = PackedRows(
        tokens=tokens,
        rows=pack_best_fit(tokens, eos_id=EOS, seq_len=seq_len, window=window),
        seq_len=seq_len,
        eos_id=EOS,
        pad_id=0,
        ignore_id=-100,
        document_ids=True,
    )
    for index, row in enumerate(rows):  # each span its own document, the one without eos too
        numbers = items[index]["document_ids"][: sum(e - s for s, e in row)]
        assert numbers.bincount().tolist() == [e - s for s, e in row]


def test_documents_of_20_to_400_tokens_fill_at_least_95_percent_of_the_slots() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 401, (1500,), generator=generator).tolist()  # two windows of rows of 1024
    tokens = random_corpus(lengths, seed=1)
    fills = {}
    for packing in ("best_fit", "next_fit"):
        rows = PackedRows(
            tokens=tokens,
            rows=pack_documents(tokens, eos_id=EOS, seq_len=1024, packing=packing),
            seq_len=1024,
            eos_id=EOS,
            pad_id=0,
            ignore_id=-100,
            document_ids=False,
        )
        real = sum(int(rows[i]["attention_mask"].sum()) for i in range(len(rows)))
        assert real == len(tokens)
        fills[packing] = real / (len(rows) * 1024)
    assert fills["best_fit"] >= 0.95, fills
    assert fills["next_fit"] < fills["best_fit"], fills  # next-fit: ~0.87


def test_batches_are_the_rows_documents_each_once_per_epoch(folder: Path) -> None:
    data = make(folder, pack=True)  # true is best_fit
    data.setup("fit")
    assert data.pack == "best_fit"
    eos, pad = data.tokenizer.eos_id, data.tokenizer.pad_id
    train = data.train_tokens.long()
    rows = pack_best_fit(train, eos_id=eos, seq_len=SEQ_LEN)
    loader = data.train_dataloader()
    order = list(loader.sampler)
    assert sorted(order) == list(range(len(rows)))
    seen = []
    for batch_index, batch in enumerate(loader):
        for row in range(4):
            spans = rows.row(order[batch_index * 4 + row]).tolist()
            ids, labels = batch["input_ids"][row], batch["labels"][row]
            doc_ids, real = batch["document_ids"][row], batch["attention_mask"][row]
            assert int(real.sum()) <= SEQ_LEN and (ids[~real] == pad).all()
            assert ids[real].tolist() == torch.cat([train[s:e] for s, e in spans]).tolist()
            for number in doc_ids[real].unique().tolist():
                positions = (doc_ids == number).nonzero().flatten()
                document = ids[positions].tolist()
                seen.append(tuple(document))
                # each token predicts the next one of its document; the last predicts nothing
                assert labels[positions[:-1]].tolist() == document[1:] and labels[positions[-1]] == pad
    for index in order[len(order) - len(order) % 4 :]:  # the rows of the partial batch drop_last leaves out
        seen += [tuple(train[s:e].tolist()) for s, e in rows.row(index).tolist()]
    expected = [
        tuple(train[s:e].tolist()) for start, end in documents(train) for s, e in cut(start, end, SEQ_LEN)
    ]
    assert sorted(seen) == sorted(expected)  # every document (or piece) once, whole
    assert any(len(rows.row(r)) >= 3 for r in range(len(rows)))  # rows do hold several documents


def test_the_same_rows_in_workers_and_ranks(folder: Path) -> None:
    data = make(folder)
    data.setup("fit")
    again = make(folder)
    again.setup("fit")
    for split in ("train", "val"):  # another run: the same rows
        assert np.array_equal(data._rows[split].spans, again._rows[split].spans)
        assert np.array_equal(data._rows[split].offsets, again._rows[split].offsets)
    single = [b["input_ids"] for b in data.train_dataloader()]
    workers = make(folder, num_workers=2)
    workers.setup("fit")
    assert all(
        torch.equal(a, b["input_ids"]) for a, b in zip(single, workers.train_dataloader(), strict=True)
    )
    sampler = data.train_dataloader().sampler
    ranks = [list(DistributedSamplerWrapper(sampler, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    padded = (everything := list(sampler)) + everything[: len(everything) % 2]  # an odd count repeats one row
    assert ranks[0] == padded[0::2] and ranks[1] == padded[1::2]  # rows split, none read twice


@pytest.mark.slow
def test_another_process_packs_the_same_rows(folder: Path) -> None:
    """Each rank packs for itself: a process with another hash seed must find the same rows."""
    data = make(folder)
    data.setup("fit")
    rows = data._rows["train"]
    script = (
        "import sys, numpy as np; from swapformer.data import CausalLMDataModule;"
        f"d = CausalLMDataModule(path={str(folder)!r}, seq_len={SEQ_LEN}, batch_size=4, pack='best_fit');"
        "d.setup('fit'); r = d._rows['train'];"
        "np.save(sys.stdout.buffer, np.concatenate([r.spans.ravel(), r.offsets]))"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, env=environment)
    assert np.array_equal(np.load(io.BytesIO(out.stdout)), np.concatenate([rows.spans.ravel(), rows.offsets]))


def test_resume_mid_epoch_continues_with_the_same_best_fit_batches(folder: Path) -> None:
    def loader():
        data = make(folder)
        data.setup("fit")
        made = data.train_dataloader()
        made.sampler.set_epoch(2)
        return made

    assert_resume_continues(loader)
