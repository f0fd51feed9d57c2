"""CausalLMDataModule: lazy vocabulary, windows, deterministic epochs, errors, checkpoint resume."""

from __future__ import annotations

import random
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from swapformer.data import CausalLMDataModule, DataError, RandomOffsetSampler


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(400)]
    path = tmp_path_factory.mktemp("corpus") / "input.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def make(corpus: Path, **overrides: object) -> CausalLMDataModule:
    options = {"path": str(corpus), "seq_len": 16, "batch_size": 8, "val_fraction": 0.1, "seed": 3}
    return CausalLMDataModule(**{**options, **overrides})


def test_vocab_size_before_setup_is_reused(corpus: Path) -> None:
    data = make(corpus)
    vocab_size = data.vocab_size  # what LightningCLI reads before building the model
    tokenizer = data.tokenizer
    expected_chars = sorted(set(corpus.read_text()[: int(len(corpus.read_text()) * 0.9)]))
    assert vocab_size == 4 + len(expected_chars)
    data.setup("fit")
    assert data.tokenizer is tokenizer
    assert data.vocab_size == vocab_size
    assert data.pad_id == 0


def test_train_batches_are_shifted_windows_at_sampled_offsets(corpus: Path) -> None:
    data = make(corpus)
    data.setup("fit")
    loader = data.train_dataloader()
    offsets = list(loader.sampler)
    batch = next(iter(loader))
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 16)
    tokens = data.train_tokens.long()
    for row, offset in enumerate(offsets[:8]):
        assert torch.equal(batch["input_ids"][row], tokens[offset : offset + 16])
        assert torch.equal(batch["labels"][row], tokens[offset + 1 : offset + 17])
    expected_samples = data.train_tokens.numel() // 16
    assert len(offsets) == expected_samples
    assert len(loader) == expected_samples // 8  # drop_last
    assert data.tokenizer.decode(batch["input_ids"][0]) in corpus.read_text()


def test_val_batches_are_consecutive_windows(corpus: Path) -> None:
    data = make(corpus)
    data.setup("fit")
    batches = list(data.val_dataloader())
    inputs = torch.cat([batch["input_ids"] for batch in batches])
    labels = torch.cat([batch["labels"] for batch in batches])
    val = data.val_tokens.long()
    windows = (val.numel() - 1) // 16
    assert inputs.shape == (windows, 16)
    assert torch.equal(inputs.flatten(), val[: windows * 16])
    assert torch.equal(labels.flatten(), val[1 : windows * 16 + 1])
    again = torch.cat([batch["input_ids"] for batch in data.val_dataloader()])
    assert torch.equal(inputs, again)


def test_epoch_determinism(corpus: Path) -> None:
    data = make(corpus)
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, RandomOffsetSampler)
    sampler.set_epoch(4)
    epoch_four = list(sampler)
    assert list(sampler) == epoch_four
    sampler.set_epoch(5)
    assert list(sampler) != epoch_four
    # A fresh module (a resumed run) with the same seed replays epoch 4 exactly; another seed does not.
    fresh = make(corpus)
    fresh.setup("fit")
    fresh_loader = fresh.train_dataloader()
    fresh_loader.sampler.set_epoch(4)
    assert list(fresh_loader.sampler) == epoch_four
    other = make(corpus, seed=4)
    other.setup("fit")
    other_sampler = other.train_dataloader().sampler
    other_sampler.set_epoch(4)
    assert list(other_sampler) != epoch_four


def test_train_samples_per_epoch(corpus: Path) -> None:
    data = make(corpus, train_samples_per_epoch=40)
    data.setup("fit")
    assert len(data.train_dataloader()) == 5


def test_stdlib_default_with_bpe() -> None:
    data = CausalLMDataModule(
        tokenizer="bpe", tokenizer_options={"vocab_size": 300}, max_chars=30_000, seq_len=32, batch_size=4
    )
    assert 260 < data.vocab_size <= 300
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (4, 32)
    assert int(batch["input_ids"].max()) < data.vocab_size


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seq_len": 0}, r"seq_len=0 is invalid: it must be an integer >= 1"),
        ({"batch_size": -2}, r"batch_size=-2 is invalid: it must be an integer >= 1"),
        ({"val_fraction": 1.0}, r"val_fraction=1.0 is invalid: it must be strictly between 0 and 1"),
        (
            {"tokenizer": "word"},
            r"tokenizer='word' is neither a kind \(char, byte, bpe\) nor an existing path",
        ),
        ({"path": "/no/such/corpus.txt"}, r"path='/no/such/corpus.txt' does not exist"),
        ({"max_chars": 1}, r"max_chars=1 is invalid: it must be an integer >= 2"),
        ({"train_samples_per_epoch": 4}, r"train_samples_per_epoch=4 is invalid: .*batch_size=8"),
        ({"num_workers": -1}, r"num_workers=-1 is invalid"),
        ({"tokenizer_options": ["vocab_size"]}, r"tokenizer_options=\['vocab_size'\] must be a mapping"),
    ],
)
def test_argument_errors(corpus: Path, overrides: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make(corpus, **overrides)


def test_validation_text_too_short(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("abcdefghij" * 20)  # 201 chars with the newline: 20 validation tokens at 10%
    data = CausalLMDataModule(path=str(path), seq_len=32, batch_size=1, val_fraction=0.1)
    with pytest.raises(
        DataError,
        match=r"validation text has 21 tokens, fewer than seq_len \+ 1 = 33 .* smaller seq_len or a larger val_fraction",
    ):
        data.setup("fit")


def test_epoch_without_full_batch(corpus: Path) -> None:
    data = make(corpus, max_chars=400, batch_size=32)
    with pytest.raises(DataError, match=r"an epoch would have 22 training windows, fewer than batch_size=32"):
        data.setup("fit")


def test_state_dict_round_trip_and_mismatch(corpus: Path, tmp_path: Path) -> None:
    data = make(corpus)
    path = tmp_path / "state.pt"
    torch.save(data.state_dict(), path)
    state = torch.load(path, weights_only=True)
    fresh = make(corpus)
    fresh.load_state_dict(state)  # adopted without reading the corpus
    assert fresh.tokenizer == data.tokenizer
    other = make(corpus, tokenizer="byte")
    other.setup("fit")
    with pytest.raises(DataError, match=r"checkpoint's char tokenizer .* differs from the byte tokenizer"):
        other.load_state_dict(state)


class TinyLM(pl.LightningModule):
    """Records the batches it sees so runs can be compared."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, 8)
        self.head = torch.nn.Linear(8, vocab_size)
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).append(batch["input_ids"].clone())
        logits = self.head(self.embedding(batch["input_ids"]))  # (N, L, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(data: CausalLMDataModule, *, epochs: int, root: Path, ckpt_path: str | None = None) -> TinyLM:
    model = TinyLM(data.vocab_size)
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=3,
        limit_val_batches=0,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model


@pytest.mark.filterwarnings(
    "ignore:You passed in a `val_dataloader`", "ignore:The dirpath has changed", "ignore:.*LeafSpec"
)
def test_resumed_run_sees_the_same_batches(corpus: Path, tmp_path: Path) -> None:
    full = fit(make(corpus), epochs=2, root=tmp_path / "full")
    assert not torch.equal(full.seen[0][0], full.seen[1][0])
    first = fit(make(corpus), epochs=1, root=tmp_path / "first")
    checkpoint = next((tmp_path / "first").rglob("*.ckpt"))
    loaded = torch.load(checkpoint, weights_only=True)  # the tokenizer state must not need pickle
    assert loaded["CausalLMDataModule"]["tokenizer"]["kind"] == "char"
    resumed = fit(make(corpus), epochs=2, root=tmp_path / "resumed", ckpt_path=str(checkpoint))
    assert all(torch.equal(a, b) for a, b in zip(first.seen[0], full.seen[0]))
    assert list(resumed.seen) == [1]
    assert all(torch.equal(a, b) for a, b in zip(resumed.seen[1], full.seen[1], strict=True))
