"""CausalLMDataModule(streaming=True): a datasets source tokenized as it streams, each rank and worker reading its own
documents, and a resumed run that sees exactly the batches of the uninterrupted one.

The reference windows are computed here from the rows and the ``tokenizers`` library itself: every document's ids
plus eos, concatenated, cut into ``seq_len + 1`` tokens every ``seq_len``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import tokenizers
import torch
from tests.conftest import play_text

from swapformer.data import CausalLMDataModule, DataError, build_tokenizer
from swapformer.data import streaming as streaming_module
from swapformer.data.streaming import StreamingSource

SEQ_LEN, BATCH, VAL = 16, 4, 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 rows (every 37th empty) as JSON lines, Parquet and a save_to_disk folder, and a BPE tokenizer folder
    fitted on other text."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("stream")
    texts = ["" if i % 37 == 36 else play_text(60 + i % 120, seed=i) for i in range(300)]
    rows = [{"id": i, "text": text} for i, text in enumerate(texts)]
    (root / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), root / "c.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(root / "saved"))
    build_tokenizer("bpe", [play_text(3000, seed=999)], vocab_size=300).save_pretrained(root / "tok")
    (root / "texts.json").write_text(json.dumps(texts))
    return root


def reference(corpus: Path, rows: list[int]) -> list[list[int]]:
    """The windows of ``rows``' documents (empty ones left out), from the tokenizers library directly."""
    texts = json.loads((corpus / "texts.json").read_text())
    backend = tokenizers.Tokenizer.from_file(str(corpus / "tok" / "tokenizer.json"))
    eos = backend.token_to_id("</s>")
    ids = [
        t
        for row in rows
        if texts[row]
        for t in [*backend.encode(texts[row], add_special_tokens=False).ids, eos]
    ]
    return [ids[i : i + SEQ_LEN + 1] for i in range(0, len(ids) - SEQ_LEN, SEQ_LEN)]


def make(corpus: Path, source: str = "c.jsonl", **overrides) -> CausalLMDataModule:
    options = {
        "tokenizer": str(corpus / "tok"),
        "seq_len": SEQ_LEN,
        "batch_size": BATCH,
        "val_documents": VAL,
    }
    return CausalLMDataModule(path=str(corpus / source), streaming=True, **{**options, **overrides})


def windows(batches) -> list[list[int]]:
    """A batch's rows as the windows they were cut from (inputs plus the last label)."""
    out = []
    for batch in batches:
        assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
        out += torch.cat([batch["input_ids"], batch["labels"][:, -1:]], dim=1).tolist()
    return out


def take(loader, count: int) -> list[dict]:
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


@pytest.mark.parametrize("source", ["c.jsonl", "c.parquet", "saved"])
def test_one_shard_reads_the_documents_in_order_as_consecutive_windows(corpus: Path, source: str) -> None:
    data = make(corpus, source)
    data.setup("validate")
    val = reference(corpus, list(range(VAL)))
    assert data.val_tokens[: len(val) * SEQ_LEN + 1].tolist() == [t for w in val for t in w[:-1]] + [
        val[-1][-1]
    ]
    expected = reference(corpus, list(range(VAL, 300)))
    assert windows(take(data.train_dataloader(), 60)) == expected[: 60 * BATCH]


def test_ranks_and_workers_read_disjoint_shards_covering_every_document(corpus: Path) -> None:
    data = make(corpus)
    source = StreamingSource(path=str(corpus / "c.jsonl"), text_column="text", val_documents=VAL)
    training_rows = list(range(VAL, 300))
    shards = {s: [row for row in training_rows if (row - VAL) % 4 == s] for s in range(4)}
    assert sorted(row for rows in shards.values() for row in rows) == training_rows  # a partition
    for rank in (0, 1):
        loader = source.train_loader(
            tokenizer=data.tokenizer,
            seq_len=SEQ_LEN,
            batch_size=BATCH,
            num_workers=2,
            rank=rank,
            world_size=2,
        )
        # forked, as under ddp_spawn, whose ranks default to spawn (their workers took minutes to start and stop)
        assert loader.multiprocessing_context.get_start_method() == "fork"
        batches = take(loader, 12)  # batch k from worker k % 2: shard 2 * rank + k % 2
        for worker in (0, 1):
            got = windows(batches[worker::2])
            assert got == reference(corpus, shards[2 * rank + worker])[: len(got)]


def test_a_shard_starts_its_documents_again_at_the_end_of_the_source(corpus: Path) -> None:
    data = make(corpus, batch_size=8)
    expected = reference(corpus, list(range(VAL, 300)) * 2)  # the second cycle continues the first's stream
    loader = data.train_dataloader()
    batches = take(loader, len(expected) // 8)
    assert windows(batches) == expected[: len(batches) * 8]
    assert loader._pending[-1][1][0] == 1  # the positions count the cycle


class Recorder(pl.LightningModule):
    """Records the batches it trains on; one parameter so the optimizer has something to step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[list[int]]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["input_ids"].tolist())
        return (self.weight * batch["input_ids"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RankRecorder(Recorder):
    """Writes the batches each rank trained on to ``<folder>/rank-<r>.json`` (ddp_spawn's ranks are other
    processes)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def on_train_end(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank-{self.global_rank}.json").write_text(json.dumps(self.seen))


def _fit(
    corpus: Path,
    root: Path,
    max_steps: int,
    ckpt_path: str | None = None,
    model=None,
    num_workers: int = 2,
    **trainer,
) -> Recorder:
    model = model if model is not None else Recorder()
    pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **trainer,
    ).fit(model, datamodule=make(corpus, num_workers=num_workers), ckpt_path=ckpt_path)
    return model


def test_resume_mid_stream_continues_with_the_batches_of_the_uninterrupted_run(
    corpus: Path, tmp_path: Path
) -> None:
    every = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    straight = _fit(corpus, tmp_path / "straight", 11, callbacks=[every]).seen  # saves at step 5, goes on
    checkpoint = tmp_path / "ckpt" / "epoch=0-step=5.ckpt"  # 5: the next batch is worker 1's
    state = torch.load(checkpoint, weights_only=True)["CausalLMDataModule"]["streaming"]
    assert state["shards"] == 2 and state["batches"] == 5 and set(state["positions"]) == {0, 1}
    rest = _fit(corpus, tmp_path / "resumed", 11, ckpt_path=str(checkpoint), enable_checkpointing=False).seen
    assert len(straight) == 11 and rest == straight[5:]


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_under_ddp_gathers_every_ranks_positions(
    corpus: Path, tmp_path: Path, num_workers: int
) -> None:
    # 2 workers: 4 shards; the workers are forked even in a ddp_spawn rank (spawned ones took minutes to start
    # and to stop on this machine: StreamingLoader)
    ddp = {"strategy": "ddp_spawn", "devices": 2, "num_workers": num_workers}

    def seen(name: str) -> list:
        return [json.loads((tmp_path / name / f"rank-{rank}.json").read_text()) for rank in (0, 1)]

    every = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    _fit(corpus, tmp_path, 6, model=RankRecorder(tmp_path / "straight"), callbacks=[every], **ddp)
    checkpoint = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    state = torch.load(checkpoint, weights_only=True)["CausalLMDataModule"]["streaming"]
    shards = 2 * max(1, num_workers)
    assert state["shards"] == shards and set(state["positions"]) == set(range(shards))  # rank 1's shards too
    model = RankRecorder(tmp_path / "resumed")
    _fit(corpus, tmp_path, 6, ckpt_path=str(checkpoint), model=model, enable_checkpointing=False, **ddp)
    straight, resumed = seen("straight"), seen("resumed")
    assert straight[0] != straight[1]  # the ranks read different documents
    for rank in (0, 1):
        assert len(straight[rank]) == 6 and resumed[rank] == straight[rank][3:]


def test_resume_over_another_number_of_shards_is_refused(corpus: Path) -> None:
    data = make(corpus)  # num_workers=0: one shard
    data.load_state_dict(
        {
            "streaming": {
                "shards": 2,
                "batches": 3,
                "first_row": VAL,
                "positions": {0: [0, 40, 3], 1: [0, 41, 0]},
            }
        }
    )
    with pytest.raises(
        DataError, match=r"the checkpoint streamed over 2 shard\(s\) .* this run over 1 \(1 x 1\)"
    ):
        data.train_dataloader()
    with pytest.raises(DataError, match=r"resume with val_documents: 30"):
        data.load_state_dict({"streaming": {"shards": 1, "batches": 3, "first_row": 30, "positions": {}}})


def test_the_stream_needs_datasets_a_trained_tokenizer_and_max_steps(
    corpus: Path, tmp_path: Path, monkeypatch
) -> None:
    with pytest.raises(DataError, match=r"cannot fit tokenizer='bpe:300'.*swapformer prepare"):
        CausalLMDataModule(path=str(corpus / "c.jsonl"), tokenizer="bpe:300", streaming=True)
    assert make(corpus, tokenizer="byte").vocab_size == 260  # byte needs no text
    with pytest.raises(DataError, match=r"no column 'body'; its columns are \['id', 'text'\]"):
        make(corpus, text_column="body")
    data = make(corpus)
    data.trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    with pytest.raises(DataError, match=r"set trainer.max_steps"):
        data.setup("fit")
    assert not list(tmp_path.iterdir())  # refused before the run's tokenizer is written
    real = streaming_module.importlib.util.find_spec
    monkeypatch.setattr(
        streaming_module.importlib.util, "find_spec", lambda name: None if name == "datasets" else real(name)
    )
    with pytest.raises(DataError, match=r"needs the datasets package: pip install 'swapformer\[data\]'"):
        make(corpus)


def test_fit_streams_from_the_command_line_and_checkpoints_the_positions(
    corpus: Path, tmp_path: Path
) -> None:
    import yaml

    from swapformer.cli import run

    config = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "recipes/causal_lm/stdlib-tiny.yaml").read_text()
    )
    config["model"]["init_args"].update(d_model=32, num_heads=4, num_layers=1, d_ff=64, max_seq_len=32)
    data = config["data"]["init_args"]
    for key in ("tokenizer_options", "max_chars", "val_fraction", "train_samples_per_epoch"):
        data.pop(key, None)
    data.update(
        path=str(corpus / "c.jsonl"),
        tokenizer=str(corpus / "tok"),
        streaming=True,
        val_documents=VAL,
        seq_len=16,
    )
    data["batch_size"] = 4
    config["trainer"].update(
        max_steps=3, limit_val_batches=2, val_check_interval=None, enable_progress_bar=False
    )
    config["trainer"]["callbacks"] = []
    recipe = tmp_path / "stream.yaml"
    recipe.write_text(yaml.safe_dump(config))
    cli = run(["fit", "--config", str(recipe), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert cli.trainer.global_step == 3 and cli.model.config.vocab_size == 300
    last = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert last["CausalLMDataModule"]["streaming"]["batches"] == 3
