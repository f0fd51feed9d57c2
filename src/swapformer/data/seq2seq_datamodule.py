"""Sequence-to-sequence data: a synthetic task, line-aligned parallel files, or a TSV file."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, ClassVar

from torch.utils.data import DataLoader

from swapformer.data.base_datamodule import TokenizedDataModule, check_fraction, check_int, check_path
from swapformer.data.cache import cache_root, digest
from swapformer.data.errors import DataError
from swapformer.data.pairs import Pair, read_parallel_files, read_tsv, split_pairs
from swapformer.data.samplers import EpochShuffleSampler
from swapformer.data.seq2seq_datasets import PairCollator, PairDataset, encode_pairs
from swapformer.data.synthetic import TASKS, generate_task

__all__ = ["Seq2SeqDataModule"]

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class Seq2SeqDataModule(TokenizedDataModule):
    """(source, target) pairs for encoder-decoder training, with one tokenizer shared by both sides.

    Exactly one data source: a synthetic ``task`` (see :func:`generate_task`), or ``src_path`` +
    ``tgt_path``, or ``tsv_path`` (set ``task: null`` for files). Without validation files the training
    pairs are split by a hash of the source text. Sources are encoded as ``ids + [eos]`` and targets as
    ``[bos] + ids + [eos]``.

    Args:
        task: Synthetic task name, or None to read files.
        src_path, tgt_path: Line-aligned training files (``.gz`` allowed).
        tsv_path: Training file with ``source<TAB>target`` lines.
        val_src_path, val_tgt_path, val_tsv_path: Optional validation files (same formats).
        test_src_path, test_tgt_path: Optional test files; the test loader uses validation data otherwise.
        tokenizer: ``"char"``, ``"byte"`` or ``"bpe"``, fitted on the training sources and targets.
        tokenizer_options: Options of that tokenizer.
        max_src_len: Longest source in tokens, ``</s>`` included.
        max_tgt_len: Longest target in tokens, ``<s>`` and ``</s>`` included.
        truncate: Cut over-long sequences instead of failing in ``setup``.
        num_train: Training examples generated for a synthetic task.
        num_val: Validation examples generated for a synthetic task (disjoint targets from training).
        val_fraction: Fraction of training files held out when no validation files are given.
        batch_size: Examples per batch ``N``.
        num_workers: DataLoader worker processes.
        seed: Seed of synthetic generation and of the per-epoch shuffling.
        task_options: Options of the synthetic task, e.g. ``{"min_len": 2, "max_len": 8}``.
        cache: Keep the fitted tokenizer in ``cache_dir``, named by the training pairs' content and the tokenizer's
            settings, so later launches and other ranks read it back (see :mod:`swapformer.data.cache`).
        cache_dir: The cache folder; None = ``$SWAPFORMER_CACHE_DIR``, else ``~/.cache/swapformer``
            (``swapformer fit`` sets ``<trainer.default_root_dir>/cache``).

    Raises:
        DataError: If the data sources conflict or are missing, a path does not exist or an argument is
            out of range.

    Shape:
        Batches hold ``src_ids`` / ``src_mask`` ``(N, S)``, ``tgt_ids`` / ``tgt_mask`` ``(N, L)`` (masks
        True at real tokens) and the raw strings ``src_text`` / ``tgt_text``.
    """

    model_kinds: ClassVar[tuple[str, ...]] = ("seq2seq",)
    """The model kinds whose batches this module makes (the CLI checks the recipe's task against it)."""

    def __init__(
        self,
        *,
        task: str | None = "dates",
        src_path: str | None = None,
        tgt_path: str | None = None,
        tsv_path: str | None = None,
        val_src_path: str | None = None,
        val_tgt_path: str | None = None,
        val_tsv_path: str | None = None,
        test_src_path: str | None = None,
        test_tgt_path: str | None = None,
        tokenizer: str = "char",
        tokenizer_options: dict[str, Any] | None = None,
        max_src_len: int = 64,
        max_tgt_len: int = 64,
        truncate: bool = False,
        num_train: int = 20000,
        num_val: int = 1000,
        val_fraction: float = 0.05,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 1234,
        task_options: dict[str, Any] | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(tokenizer=tokenizer, tokenizer_options=tokenizer_options)
        self._cache_root = cache_root(cache_dir) if cache else None
        # the eight *_path arguments, in signature order
        paths = {name: value for name, value in locals().items() if name.endswith("_path")}
        _check_sources(task=task, paths=paths)
        for name, value in paths.items():
            check_path(name, value)
        check_int("max_src_len", max_src_len, minimum=1, fix="use e.g. max_src_len: 64.")
        check_int(
            "max_tgt_len", max_tgt_len, minimum=3, fix="it counts <s> and </s>; use e.g. max_tgt_len: 64."
        )
        check_int("num_train", num_train, minimum=1, fix="use e.g. num_train: 20000.")
        check_int("num_val", num_val, minimum=1, fix="use e.g. num_val: 1000.")
        check_fraction("val_fraction", val_fraction)
        check_int("batch_size", batch_size, minimum=1, fix="use e.g. batch_size: 64.")
        check_int("num_workers", num_workers, minimum=0, fix="use 0 to load data in the main process.")
        _check_task_options(task=task, task_options=task_options)
        self.save_hyperparameters()
        self.task = task
        self.paths = paths
        self.max_src_len = max_src_len
        self.max_tgt_len = max_tgt_len
        self.truncate = truncate
        self.num_train = num_train
        self.num_val = num_val
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.task_options = dict(task_options or {})
        self._pairs: dict[str, list[Pair]] | None = None
        self._datasets: dict[str, PairDataset] = {}

    def pairs(self) -> dict[str, list[Pair]]:
        """The raw ``"train"``, ``"val"`` and ``"test"`` pairs, loaded or generated once."""
        if self._pairs is None:
            self._pairs = self._load_pairs()
        return self._pairs

    def tokenizer_texts(self) -> Iterable[str]:
        train = self.pairs()["train"]
        return [source for source, _ in train] + [target for _, target in train]

    def training_text_digest(self) -> str:
        return digest(*(part for pair in self.pairs()["train"] for part in pair))

    def setup(self, stage: str | None = None) -> None:
        """Tokenise the splits this stage needs and check their lengths before any training step.

        Raises:
            DataError: If ``truncate`` is False and a sequence exceeds ``max_src_len`` / ``max_tgt_len``.
        """
        for split in _STAGE_SPLITS.get(stage, ("train", "val", "test")):
            self.dataset(split)
        if stage in ("fit", None):
            self.save_tokenizer_beside_run()

    def dataset(self, split: str) -> PairDataset:
        """The tokenised dataset of ``"train"``, ``"val"`` or ``"test"``, built once."""
        if split not in self._datasets:
            examples = encode_pairs(
                self.pairs()[split],
                tokenizer=self.tokenizer,
                max_src_len=self.max_src_len,
                max_tgt_len=self.max_tgt_len,
                truncate=self.truncate,
                split=split,
            )
            self._datasets[split] = PairDataset(examples)
        return self._datasets[split]

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = EpochShuffleSampler(num_items=len(dataset), seed=self.seed)
        return self._loader(dataset, sampler=sampler, resumable=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"))

    def predict_dataloader(self) -> DataLoader:
        """The test sources (the validation ones without test files): ``swapformer predict`` translates them."""
        return self._loader(self.dataset("test"))

    def _loader(self, dataset: PairDataset, **kwargs: Any) -> DataLoader:
        # drop_last=False: batches are padded per batch anyway, and a small dataset must still train
        return super()._loader(
            dataset, drop_last=False, collate_fn=PairCollator(pad_id=self.pad_id), **kwargs
        )

    def _load_pairs(self) -> dict[str, list[Pair]]:
        if self.task is not None:
            generate = partial(generate_task, self.task, seed=self.seed, **self.task_options)
            train = generate(num_examples=self.num_train, split="train")
            val = generate(num_examples=self.num_val, split="val")
            return {"train": train, "val": val, "test": val}
        train, val = self._read_files(""), self._read_files("val_")
        if val is None:
            train, val = split_pairs(train, val_fraction=self.val_fraction)
        test = self._read_files("test_")
        return {"train": train, "val": val, "test": val if test is None else test}

    def _read_files(self, prefix: str) -> list[Pair] | None:
        """The pairs of ``<prefix>tsv_path``, or of ``<prefix>src_path`` + ``<prefix>tgt_path``; None if unset."""
        paths = self.paths
        if paths.get(f"{prefix}tsv_path") is not None:
            return read_tsv(path=paths[f"{prefix}tsv_path"])
        if paths[f"{prefix}src_path"] is None:
            return None
        return read_parallel_files(src_path=paths[f"{prefix}src_path"], tgt_path=paths[f"{prefix}tgt_path"])


def _check_sources(*, task: str | None, paths: dict[str, str | None]) -> None:
    """Exactly one training source; paired options given together."""
    given = sorted(name for name, value in paths.items() if value is not None)
    if task is not None:
        if task not in TASKS:
            raise DataError(
                f"task={task!r} is not known; choose one of {list(TASKS)}, or task: null for files."
            )
        if given:
            raise DataError(
                f"task={task!r} and file paths {given} were both given; use one source of data: "
                f"set task: null to train on the files, or remove the paths."
            )
        return
    for split in ("", "val_", "test_"):
        first, second = f"{split}src_path", f"{split}tgt_path"
        if (paths[first] is None) != (paths[second] is None):
            raise DataError(f"{first} and {second} must be given together; only one of them was set.")
    has_parallel, has_tsv = paths["src_path"] is not None, paths["tsv_path"] is not None
    if has_parallel == has_tsv:
        state = "both" if has_parallel else "neither"
        raise DataError(
            f"with task: null give exactly one training source, src_path + tgt_path or tsv_path ({state} "
            f"was given); or set task to one of {list(TASKS)}."
        )
    if paths["val_src_path"] is not None and paths["val_tsv_path"] is not None:
        raise DataError("give validation data as val_src_path + val_tgt_path or as val_tsv_path, not both.")


def _check_task_options(*, task: str | None, task_options: dict[str, Any] | None) -> None:
    """Fail at construction, not in setup, when synthetic-task options are wrong."""
    if task_options is None:
        return
    if not isinstance(task_options, dict):
        raise DataError(f"task_options={task_options!r} must be a mapping such as {{'max_len': 8}}.")
    reserved = sorted({"name", "num_examples", "seed", "split"}.intersection(task_options))
    if reserved:
        raise DataError(f"task_options may not set {reserved}; use the data module's own arguments.")
    if task is None:
        if task_options:
            raise DataError("task_options only apply to a synthetic task; remove them or set task.")
        return
    generate_task(task, num_examples=1, seed=0, **task_options)
