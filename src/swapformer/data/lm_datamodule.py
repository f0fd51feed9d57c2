"""Causal language-modelling data: windows of a tokenised text corpus."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from swapformer.data.base_datamodule import (
    TokenizedDataModule,
    _leave_stop_signals_to_the_main_process,
    check_fraction,
    check_int,
    check_path,
    load_tokenizer,
)
from swapformer.data.cache import cache_root, cached, digest, encode_chunked
from swapformer.data.errors import DataError
from swapformer.data.lm_datasets import ConsecutiveWindows, OffsetWindows, check_stream_length
from swapformer.data.packing import PACKINGS, PackedRows, Packing, check_packing, pack_documents
from swapformer.data.samplers import EpochShuffleSampler, RandomOffsetSampler
from swapformer.data.shards import PreparedDir, is_prepared, same_tokenizer
from swapformer.data.streaming import StreamingSource, check_streaming_tokenizer
from swapformer.data.text import TextSplit, load_text_split
from swapformer.data.tokenizers import TOKENIZER_KINDS, Tokenizer, build_tokenizer

__all__ = ["CausalLMDataModule"]


class CausalLMDataModule(TokenizedDataModule):
    """Next-token prediction on a text corpus: the Python standard library by default, or your text.

    Training items are windows at random offsets (nanoGPT style) drawn by a :class:`RandomOffsetSampler`,
    whose offsets depend only on ``(seed, epoch)``, so resuming from a checkpoint (mid-epoch too, through
    :class:`~swapformer.data.ResumableDataLoader`) replays the same batches. Validation uses consecutive
    non-overlapping windows of the validation text.

    A folder written by ``swapformer prepare`` (recognized by its ``meta.json``) is read by memory map instead:
    its train and validation shards are the token streams (the process's memory does not grow with the corpus,
    and DataLoader workers map the files themselves), and its tokenizer is the data's.

    Args:
        path: A text file (any extension, ``.gz`` allowed) or a folder of files matching ``glob``; None
            uses the standard library's source code, split file by file; or a prepared folder (its
            split is kept: ``val_fraction``, ``max_chars`` and ``glob`` do not apply).
        tokenizer: ``"char"``, ``"byte"`` or ``"bpe"``, fitted on the training text only; or a trained
            model's tokenizer (a folder with ``tokenizer.json``, a ``.ckpt``). None: ``"char"``, or the
            prepared folder's own tokenizer; naming another one than the folder's is refused.
        tokenizer_options: Options of that tokenizer, e.g. ``{"vocab_size": 4096}`` for ``"bpe"``.
        seq_len: Tokens per training example ``L``.
        batch_size: Examples per batch ``N``.
        val_fraction: Fraction of the corpus held out for validation (of the text for a user corpus, of
            the files for the standard library).
        max_chars: Read at most this many characters (train + validation), for quick runs.
        train_samples_per_epoch: Windows per training epoch; default ``num_train_tokens // seq_len``.
        num_workers: DataLoader worker processes.
        seed: Seed of the training offsets.
        glob: Pattern selecting files when ``path`` is a folder.
        cache: Keep the fitted tokenizer and the encoded corpus in ``cache_dir``, named by the text's content
            and the tokenizer's settings, so later launches (resume, validate, test, predict, other ranks) read
            them back instead of fitting and encoding again (see :mod:`swapformer.data.cache`).
        cache_dir: The cache folder; None = ``$SWAPFORMER_CACHE_DIR``, else ``~/.cache/swapformer``
            (``swapformer fit`` sets ``<trainer.default_root_dir>/cache``).
        streaming: Train straight from a ``datasets`` source too large to prepare (:mod:`swapformer.data.streaming`):
            ``path`` is a dataset name, a ``save_to_disk`` folder or ``.jsonl`` / ``.parquet`` files, read with
            ``datasets.load_dataset(..., streaming=True)``; documents are tokenized as they come, sharded over
            ranks and DataLoader workers, and the stream has no epochs (``trainer.max_steps`` ends the run). The
            tokenizer must be trained already (a file or folder, or ``byte``).
        text_column: With ``streaming``, the column holding a document's text.
        val_documents: With ``streaming``, the first rows of the source held out for validation.
        pack: Rows of whole documents instead of windows (:mod:`swapformer.data.packing`): each row holds whole
            documents (each ending with eos) up to ``seq_len`` tokens, then padding; an epoch visits every
            training row once, in an order of ``(seed, epoch)``. ``true`` or ``"best_fit"``: best-fit decreasing
            over windows of the stream (~99% of the slots filled); ``"next_fit"``: rows cut from the stream in
            order (each row one contiguous slice; ~85% filled by documents of 20-400 tokens in rows of 1024).
            Needs a prepared folder, whose documents end with eos.
        document_mask: With ``pack``: give batches ``document_ids``, so that a token attends only within its
            document and positions restart at each document's start (Llama 3's practice). None = true with
            ``pack``.

    Raises:
        DataError: If an argument is out of range, the tokenizer is unknown or ``path`` does not exist, or
            ``pack`` is asked of a corpus without documents.

    Shape:
        Batches are ``{"input_ids": (N, L) long, "labels": (N, L) long}`` with ``labels`` the inputs
        shifted left by one token. Packed: also ``attention_mask`` ``(N, L)`` bool and, with ``document_mask``,
        ``document_ids`` ``(N, L)`` long; labels ignore each document's last token and the padding.
    """

    model_kinds: ClassVar[tuple[str, ...]] = ("causal_lm", "masked_lm")
    """The model kinds whose batches this module makes (the CLI checks the recipe's task against it)."""

    def __init__(
        self,
        *,
        path: str | None = None,
        tokenizer: str | None = None,
        tokenizer_options: dict[str, Any] | None = None,
        seq_len: int = 128,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        max_chars: int | None = None,
        train_samples_per_epoch: int | None = None,
        num_workers: int = 0,
        seed: int = 1234,
        glob: str = "*.txt",
        cache: bool = True,
        cache_dir: str | None = None,
        streaming: bool = False,
        text_column: str = "text",
        val_documents: int = 200,
        pack: bool | str = False,
        document_mask: bool | None = None,
    ) -> None:
        if streaming:
            check_streaming_tokenizer(tokenizer)
        self._stream = (
            StreamingSource(path=path, text_column=text_column, val_documents=val_documents)
            if streaming
            else None
        )
        prepared = PreparedDir(path) if is_prepared(path) and not streaming else None
        super().__init__(tokenizer=tokenizer or "char", tokenizer_options=tokenizer_options)
        check_int("seq_len", seq_len, minimum=1, fix="use e.g. seq_len: 128.")
        check_int("batch_size", batch_size, minimum=1, fix="use e.g. batch_size: 32.")
        check_fraction("val_fraction", val_fraction)
        check_int("num_workers", num_workers, minimum=0, fix="use 0 to load data in the main process.")
        if not streaming:  # a streamed dataset name is no path
            check_path("path", path)
        if max_chars is not None:
            check_int("max_chars", max_chars, minimum=2, fix="or set max_chars: null to read everything.")
        if train_samples_per_epoch is not None:
            fix = f"an epoch needs at least one full batch (batch_size={batch_size}), or set it to null."
            check_int("train_samples_per_epoch", train_samples_per_epoch, minimum=batch_size, fix=fix)
        check_packing(pack, document_mask, prepared is not None, path, streaming=streaming)
        self.save_hyperparameters()
        self.pack = PACKINGS[0] if pack is True else pack  # False, or the name of a packing
        self.document_mask = bool(pack) if document_mask is None else document_mask
        self._rows: dict[str, Packing] = {}
        self.path = path
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.max_chars = max_chars
        self.train_samples_per_epoch = train_samples_per_epoch
        self.num_workers = num_workers
        self.seed = seed
        self.glob = glob
        self._text: TextSplit | None = None
        self._cache_root = cache_root(cache_dir) if cache else None
        self._text_digests: tuple[str, str] | None = None  # (train, train + val)
        self._train_tokens: torch.Tensor | None = None
        self._val_tokens: torch.Tensor | None = None
        self._prepared = prepared
        if prepared is not None:
            self._fitted_tokenizer = _prepared_tokenizer(prepared, tokenizer, tokenizer_options)
        if streaming:
            self._cache_root = None  # nothing to fit or encode ahead; "byte" needs no text
            if tokenizer == "byte":
                self._fitted_tokenizer = build_tokenizer("byte", (), **self._tokenizer_options)

    def text_split(self) -> TextSplit:
        """The corpus's train and validation text, read once and cached until it has been tokenised."""
        if self._text is None:
            self._text = load_text_split(
                path=self.path, val_fraction=self.val_fraction, max_chars=self.max_chars, glob=self.glob
            )
        return self._text

    def tokenizer_texts(self) -> Iterable[str]:
        return self.text_split().train

    def training_text_digest(self) -> str:
        return self._digests()[0]

    def _digests(self) -> tuple[str, str]:
        if self._text_digests is None:
            text = self.text_split()
            self._text_digests = digest(text.train), digest(text.train, text.val)
        return self._text_digests

    def _encode(self) -> dict[str, torch.Tensor]:
        text, tokenizer = self.text_split(), self.tokenizer
        return {"train": encode_chunked(tokenizer, text.train), "val": encode_chunked(tokenizer, text.val)}

    def setup(self, stage: str | None = None) -> None:
        """Tokenise the corpus (once) and check both streams are long enough for ``seq_len``.

        Raises:
            DataError: If the validation or training text is shorter than ``seq_len + 1`` tokens, or an
                epoch would hold no full batch.
        """
        if self._stream is not None:
            self._setup_streaming(stage)
            return
        if stage in ("fit", None):
            self.save_tokenizer_beside_run()  # the run's own; validate/test/predict leave it alone
        if self._train_tokens is not None:
            return
        if self._prepared is not None:
            tokens = dict(self._prepared.streams)
        elif self._cache_root is None:
            tokens = self._encode()
        else:
            tokenizer = json.dumps(self.tokenizer.to_dict(), sort_keys=True)
            path = self._cache_root / "corpora" / f"{digest(tokenizer, self._digests()[1])}.pt"
            tokens = cached(path, self._encode, torch.save, _load_tokens)
        train, val = tokens["train"], tokens["val"]
        check_stream_length(
            val,
            seq_len=self.seq_len,
            split="validation",
            fix="use a smaller seq_len or a larger val_fraction.",
        )
        check_stream_length(
            train, seq_len=self.seq_len, split="training", fix="use a smaller seq_len or a larger corpus."
        )
        if self.pack:
            eos = self.tokenizer.eos_id
            self._rows = {
                split: pack_documents(stream, eos_id=eos, seq_len=self.seq_len, packing=self.pack)
                for split, stream in (("train", train), ("val", val))
            }
        if self.num_train_samples(train) < self.batch_size:
            raise DataError(
                f"an epoch would have {self.num_train_samples(train)} training "
                f"{'rows' if self.pack else 'windows'}, fewer than "
                f"batch_size={self.batch_size}, so no full batch; lower batch_size or seq_len, read more text "
                f"(max_chars) or set train_samples_per_epoch."
            )
        self._train_tokens, self._val_tokens = train, val
        self._text = None  # the token streams replace the text; free it

    def _setup_streaming(self, stage: str | None) -> None:
        trainer = self.trainer
        if stage in ("fit", None) and trainer is not None and trainer.max_steps in (None, -1):
            raise DataError(
                "streaming: true has no epochs (the stream repeats its documents without end), so "
                f"trainer.max_steps={trainer.max_steps} never ends the run; set trainer.max_steps, e.g. 10000."
            )
        if stage in ("fit", None):
            self.save_tokenizer_beside_run()
        if self._val_tokens is None:
            val = self._stream.val_tokens(self.tokenizer)
            fix = "use a smaller seq_len or a larger val_documents."
            check_stream_length(val, seq_len=self.seq_len, split="validation", fix=fix)
            self._val_tokens = val

    def num_train_samples(self, train_tokens: torch.Tensor | None = None) -> int:
        """Training windows per epoch: ``train_samples_per_epoch`` or ``num_train_tokens // seq_len``; packed,
        the number of training rows unless ``train_samples_per_epoch`` says."""
        tokens = self._train_tokens if train_tokens is None else train_tokens
        if self.train_samples_per_epoch is not None:
            return self.train_samples_per_epoch
        if self.pack:
            return len(self._rows["train"])
        return tokens.numel() // self.seq_len

    @property
    def train_tokens(self) -> torch.Tensor:
        """The tokenised training text, 1-D int32 (after ``setup``); a prepared folder's train
        :class:`~swapformer.data.shards.ShardStream`."""
        self._require_setup()
        return self._train_tokens

    @property
    def val_tokens(self) -> torch.Tensor:
        """The tokenised validation text, 1-D int32 (after ``setup``)."""
        self._require_setup()
        return self._val_tokens

    def _packed(self, split: str) -> PackedRows:
        tokenizer = self.tokenizer
        ignore = tokenizer.pad_id if tokenizer.pad_id is not None else -100
        return PackedRows(
            tokens=self.train_tokens if split == "train" else self.val_tokens,
            rows=self._rows[split],
            seq_len=self.seq_len,
            eos_id=tokenizer.eos_id,
            pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id,
            ignore_id=ignore,
            document_ids=self.document_mask,
        )

    def train_dataloader(self) -> DataLoader:
        if self._stream is not None:
            trainer = self.trainer
            return self._stream.train_loader(
                tokenizer=self.tokenizer,
                seq_len=self.seq_len,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                rank=trainer.global_rank if trainer is not None else 0,
                world_size=trainer.world_size if trainer is not None else 1,
                worker_init_fn=_leave_stop_signals_to_the_main_process,
            )
        if self.pack:
            rows = self._packed("train")
            if self.train_samples_per_epoch is None:  # every row once per epoch
                order = EpochShuffleSampler(num_items=len(rows), seed=self.seed)
            else:
                order = RandomOffsetSampler(
                    num_offsets=len(rows), num_samples=self.train_samples_per_epoch, seed=self.seed
                )
            return self._loader(rows, sampler=order, drop_last=True, resumable=True)
        dataset = OffsetWindows(tokens=self.train_tokens, seq_len=self.seq_len)
        sampler = RandomOffsetSampler(
            num_offsets=len(dataset), num_samples=self.num_train_samples(), seed=self.seed
        )
        return self._loader(dataset, sampler=sampler, drop_last=True, resumable=True)

    def val_dataloader(self) -> DataLoader:
        if self.pack:
            return self._loader(self._packed("val"), drop_last=False)
        return self._loader(ConsecutiveWindows(tokens=self.val_tokens, seq_len=self.seq_len), drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation windows: ``swapformer predict`` continues each one greedily."""
        return self.val_dataloader()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self._stream is not None and self.trainer is not None and self.trainer.training:
            self._stream.batch_trained()  # this batch is trained on (the loader may have prefetched others)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The tokenizer, and with ``streaming`` every shard's position in the stream."""
        state = super().state_dict()
        if self._stream is not None:
            state["streaming"] = self._stream.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self._stream is not None and "streaming" in state_dict:
            self._stream.load_state_dict(state_dict["streaming"])

    def _require_setup(self) -> None:
        if self._val_tokens is None:
            raise RuntimeError("call setup() before asking for data; the Trainer does this for you.")


def _prepared_tokenizer(
    prepared: PreparedDir, named: str | None, options: dict[str, Any] | None
) -> Tokenizer:
    """The prepared folder's tokenizer; ``named`` (the recipe's ``tokenizer``) must be that one, or None."""
    own = prepared.tokenizer()
    where = f"data.path={prepared.path} was prepared with --tokenizer {prepared.meta['tokenizer']}"
    fix = f"drop data.tokenizer (the folder's is used), or prepare the corpus again with --tokenizer {named}"
    if named is None:
        pass
    elif named in TOKENIZER_KINDS:
        if named != own.kind or options:
            with_options = f" with tokenizer_options {options}" if options else ""
            raise DataError(f"{where}, not tokenizer={named!r}{with_options}; {fix}.")
    else:
        other = load_tokenizer(named)
        if not same_tokenizer(other, own):
            raise DataError(
                f"{where} ({own.vocab_size} ids), another tokenizer than that of {named} ({other.vocab_size} ids), "
                f"which the model reads with (data.tokenizer, or the model's init_from); prepare the corpus again "
                f"with --tokenizer {named}."
            )
    return own


def _load_tokens(path: Any) -> dict[str, torch.Tensor]:
    # memory-mapped: the pages are read as windows are drawn, and shared by the processes of a node
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
