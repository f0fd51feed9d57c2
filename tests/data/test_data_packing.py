"""Packing (``pack: true``): rows of whole documents cut from a prepared folder, with their document ids, that
resume exactly mid-epoch and train a model (causal and masked LM) from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_testlib import assert_resume_continues
from tests.conftest import play_text

from swapformer.data import CausalLMDataModule, DataError
from swapformer.data.packing import pack_rows
from swapformer.data.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
SEQ_LEN = 64


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packed")
    # instruction-like: short documents, a few longer than a row
    lines = [json.dumps({"text": play_text(10 + (i * 37) % 110, seed=i)}) for i in range(240)]
    (root / "c.jsonl").write_text("\n".join(lines) + "\n")
    prepare(str(root / "c.jsonl"), tokenizer="byte", out=root / "out", val_fraction=0.1, shard_tokens=4000)
    return root / "out"


def stream(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    maps = [np.memmap(folder / s["file"], dtype="<u2", mode="r") for s in meta["shards"][split]]
    return np.concatenate(maps).astype(np.int64)


def documents(tokens: np.ndarray, eos: int) -> list[list[int]]:
    """The stream's documents, each ending with eos, found by a plain loop."""
    found, current = [], []
    for token in tokens.tolist():
        current.append(token)
        if token == eos:
            found.append(current)
            current = []
    return found + ([current] if current else [])


def make(folder: Path, **overrides) -> CausalLMDataModule:
    options = {"path": str(folder), "seq_len": SEQ_LEN, "batch_size": 4, "seed": 5, "pack": True}
    return CausalLMDataModule(**{**options, **overrides})


@pytest.mark.parametrize("seq_len", [1, 4, 16, 64])
def test_rows_hold_whole_documents_in_order_and_as_many_as_fit(seq_len: int) -> None:
    eos = 2
    generator = torch.Generator().manual_seed(seq_len)
    lengths = torch.randint(1, 40, (60,), generator=generator).tolist()
    docs = [[*torch.randint(4, 50, (n - 1,), generator=generator).tolist(), eos] for n in lengths]
    tokens = torch.tensor([t for doc in docs for t in doc] + [7, 7])  # the last document has no eos
    docs.append([7, 7])
    rows = pack_rows(tokens, eos_id=eos, seq_len=seq_len)
    assert rows[0, 0] == 0 and rows[-1, 1] == len(tokens)
    assert (rows[1:, 0] == rows[:-1, 1]).all()  # the stream, cut in order
    assert ((rows[:, 1] - rows[:, 0] >= 1) & (rows[:, 1] - rows[:, 0] <= seq_len)).all()
    ends = set(np.cumsum([len(d) for d in docs]).tolist())
    for start, end in rows[:-1].tolist():
        if end in ends:  # a row that ends between documents could not take the next one whole
            next_end = min(e for e in ends if e > end)
            assert next_end - start > seq_len
        else:  # a cut inside a document only where that document is longer than a row
            assert end - start == seq_len


def test_packed_batches_are_the_documents_with_their_ids(folder: Path) -> None:
    data = make(folder, pack="next_fit")  # the rows of pack_rows (best_fit: test_data_packing_best_fit.py)
    data.setup("fit")
    eos, pad = data.tokenizer.eos_id, data.tokenizer.pad_id
    loader = data.train_dataloader()
    order = list(loader.sampler)
    assert sorted(order) == list(range(len(order)))  # every row once per epoch
    rows = pack_rows(torch.from_numpy(stream(folder, "train")), eos_id=eos, seq_len=SEQ_LEN)
    train = stream(folder, "train")
    whole = {tuple(d) for d in documents(train, eos)}
    boundaries = {0, *np.cumsum([len(d) for d in documents(train, eos)]).tolist()}
    for batch_index, batch in enumerate(loader):
        assert set(batch) == {"input_ids", "labels", "attention_mask", "document_ids"}
        for row in range(4):
            start, end = rows[order[batch_index * 4 + row]]
            ids, labels = batch["input_ids"][row], batch["labels"][row]
            doc_ids, real = batch["document_ids"][row], batch["attention_mask"][row]
            assert ids[: end - start].tolist() == train[start:end].tolist() and int(real.sum()) == end - start
            assert (ids[end - start :] == pad).all()
            numbers = doc_ids[real].unique().tolist()
            for number in numbers:
                document = ids[doc_ids == number].tolist()
                # whole, or the piece of a document longer than a row where the row cuts it
                cut_before = number == numbers[0] and int(start) not in boundaries
                cut_after = number == numbers[-1] and int(end) not in boundaries
                assert tuple(document) in whole or cut_before or cut_after
                positions = (doc_ids == number).nonzero().flatten()
                assert (positions.diff() == 1).all()  # contiguous
                # each token predicts the next one of its document; the last predicts nothing
                assert labels[positions[:-1]].tolist() == document[1:] and labels[positions[-1]] == pad
        if batch_index == 10:
            break
    assert any(batch["document_ids"].amax() >= 2 for batch in loader)  # rows do hold several documents


def test_document_mask_false_packs_without_ids(folder: Path) -> None:
    data = make(folder, document_mask=False)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert "document_ids" not in batch and batch["input_ids"].shape == (4, SEQ_LEN)


def test_resume_mid_epoch_continues_with_the_same_packed_batches(folder: Path) -> None:
    def loader():
        data = make(folder)
        data.setup("fit")
        made = data.train_dataloader()
        made.sampler.set_epoch(3)
        return made

    assert_resume_continues(loader)


def test_bad_packing_options_are_named(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^document_mask: true needs pack: true"):
        make(folder, pack=False, document_mask=True)
    (tmp_path / "plain.txt").write_text(play_text(400))
    with pytest.raises(
        DataError, match=r"^pack: true needs a corpus of documents, but data.path=.*plain.txt"
    ):
        make(tmp_path / "plain.txt")


@pytest.mark.parametrize("name", ["causal_lm/stdlib-tiny.yaml", "masked_lm/masked-stdlib-tiny.yaml"])
def test_a_tiny_fit_with_pack(folder: Path, tmp_path: Path, name: str) -> None:
    from swapformer.cli import run

    config = yaml.safe_load((REPO / "recipes" / name).read_text())
    config["model"]["init_args"].update(d_model=32, num_heads=4, num_layers=1, d_ff=64, max_seq_len=SEQ_LEN)
    data = config["data"]["init_args"]
    for key in ("tokenizer", "tokenizer_options", "max_chars", "val_fraction"):
        data.pop(key, None)
    data.update(path=str(folder), seq_len=SEQ_LEN, batch_size=4, pack=True)
    config["trainer"].update(
        max_steps=2, limit_val_batches=1, val_check_interval=None, enable_progress_bar=False
    )
    config["trainer"]["callbacks"] = []
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config))
    cli = run(["fit", "--config", str(recipe), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert cli.trainer.global_step == 2 and cli.datamodule.document_mask
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])
