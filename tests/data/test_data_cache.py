"""The data cache: chunked encoding equals whole encoding; a second launch fits and encodes nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from swapformer.data import (
    CausalLMDataModule,
    base_datamodule,
    build_tokenizer,
    lm_datamodule,
    stdlib_text_split,
)
from swapformer.data.base_datamodule import RUN_TOKENIZER, load_tokenizer
from swapformer.data.cache import cache_root, cached, encode_chunked


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, generated_data) -> Path:
    """4.5 MB: the generated tiny-shakespeare-like text (tests/conftest.py) four times."""
    path = tmp_path_factory.mktemp("big") / "input.txt"
    text = (generated_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    path.write_text(text * 4, encoding="utf-8")
    return path


@pytest.mark.parametrize("corpus", ["play", "stdlib-source"])
@pytest.mark.parametrize(("kind", "options"), [("char", {}), ("byte", {}), ("bpe", {"vocab_size": 400})])
def test_chunked_encoding_equals_one_encode_of_the_whole_text(kind, options, corpus, generated_data):
    # prose with blank lines between speeches, and source code with indentation: the cuts must avoid both
    if corpus == "play":
        text = (generated_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:300_000]
    else:
        text = stdlib_text_split(max_chars=300_000).train
    tokenizer = build_tokenizer(kind, text, **options)
    chunked = encode_chunked(tokenizer, text, chunk_chars=7_000)
    assert chunked.dtype == torch.int32
    assert chunked.tolist() == tokenizer.encode(text)


def _launch(path: Path, cache_dir: Path, **options) -> tuple[CausalLMDataModule, float]:
    started = time.perf_counter()
    data = CausalLMDataModule(path=str(path), seq_len=64, batch_size=8, cache_dir=str(cache_dir), **options)
    assert data.vocab_size > 4  # what LightningCLI reads to build the model
    data.setup("fit")
    return data, time.perf_counter() - started


def test_a_second_launch_reads_the_tokenizer_and_corpus_back(big_corpus, tmp_path, monkeypatch):
    first, first_seconds = _launch(big_corpus, tmp_path)
    assert len(list((tmp_path / "tokenizers").iterdir())) == len(list((tmp_path / "corpora").iterdir())) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a second launch must not fit or encode")

    monkeypatch.setattr(base_datamodule, "build_tokenizer", refuse)
    monkeypatch.setattr(lm_datamodule, "encode_chunked", refuse)
    second, second_seconds = _launch(big_corpus, tmp_path)
    assert second.tokenizer == first.tokenizer
    assert torch.equal(second.train_tokens, first.train_tokens) and torch.equal(
        second.val_tokens, first.val_tokens
    )
    size = big_corpus.stat().st_size / 1e6
    print(
        f"\ndata preparation of a {size:.1f} MB corpus (char tokenizer; benchmarks/data_cache.py for bpe): first launch {first_seconds:.2f} s, second {second_seconds:.2f} s"
    )
    assert second_seconds < 1.0


def test_another_corpus_or_tokenizer_setting_gets_its_own_entries(tmp_path):
    corpus = tmp_path / "a.txt"
    corpus.write_text("to be or not to be\n" * 200)
    data, _ = _launch(corpus, tmp_path / "cache")
    assert data.tokenizer.kind == "char"
    _launch(corpus, tmp_path / "cache", tokenizer="byte")
    corpus.write_text("that is the question\n" * 200)  # edited in place: the digest changes
    edited, _ = _launch(corpus, tmp_path / "cache")
    assert edited.tokenizer != data.tokenizer
    assert len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 3
    assert len(list((tmp_path / "cache" / "corpora").iterdir())) == 3


def test_cache_false_writes_nothing_and_the_default_folder_is_the_environments(tmp_path, monkeypatch):
    corpus = tmp_path / "a.txt"
    corpus.write_text("to be or not to be\n" * 200)
    monkeypatch.setenv("SWAPFORMER_CACHE_DIR", str(tmp_path / "env-cache"))
    assert cache_root() == tmp_path / "env-cache"
    CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=2, cache=False).setup("fit")
    assert not (tmp_path / "env-cache").exists()
    CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=2).setup("fit")
    assert (tmp_path / "env-cache" / "corpora").is_dir()


def test_concurrent_builders_build_once(tmp_path):
    """The ranks of a node ask at once: one fits, the others wait for its file."""
    builds, results = [], []

    def build():
        builds.append(1)
        time.sleep(0.3)
        return "value"

    def save(value, path):
        path.write_text(value)

    def ask():
        results.append(cached(tmp_path / "entry.txt", build, save, lambda p: p.read_text()))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [1] and results == ["value"] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.txt"]  # no lock or temporary left


def test_the_tokenizer_is_written_beside_the_run_and_can_be_reused(tmp_path):
    import lightning.pytorch as pl

    corpus = tmp_path / "a.txt"
    corpus.write_text("to be or not to be\n" * 200)
    data = CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=2)
    data.trainer = pl.Trainer(default_root_dir=tmp_path / "run", logger=False)
    data.setup("fit")
    saved = tmp_path / "run" / RUN_TOKENIZER
    assert load_tokenizer(saved) == data.tokenizer
    reused = CausalLMDataModule(path=str(corpus), seq_len=16, batch_size=2, tokenizer=str(saved))
    assert reused.tokenizer == data.tokenizer


def test_a_seq2seq_launch_reads_the_fitted_tokenizer_back(tmp_path, monkeypatch):
    from swapformer.data import Seq2SeqDataModule

    options = dict(
        task="dates", num_train=500, num_val=50, tokenizer="bpe", tokenizer_options={"vocab_size": 300}
    )
    first = Seq2SeqDataModule(cache_dir=str(tmp_path), **options)
    assert first.vocab_size <= 300

    def refuse(*args, **kwargs):
        raise AssertionError("a second launch must not fit")

    monkeypatch.setattr(base_datamodule, "build_tokenizer", refuse)
    assert Seq2SeqDataModule(cache_dir=str(tmp_path), **options).tokenizer == first.tokenizer
    with pytest.raises(AssertionError, match="must not fit"):  # other training pairs: another entry
        _ = Seq2SeqDataModule(cache_dir=str(tmp_path), **{**options, "num_train": 400}).tokenizer
