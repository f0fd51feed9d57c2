"""Shared machinery of the data modules: a tokenizer fitted lazily on training text, argument checks.

The model's vocabulary size must be known before the model is built: ``LightningCLI`` links
``data.vocab_size`` to ``model.init_args.vocab_size`` when it instantiates the classes, long before
``setup`` runs. So ``vocab_size`` loads the training text and fits the tokenizer the first time it is
read, caches the result, and ``setup`` reuses it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from swapformer.data.cache import cached, digest, load_tokenizer_file, save_tokenizer_file
from swapformer.data.errors import DataError
from swapformer.data.files import existing_path
from swapformer.data.hf_tokenizer import HFTokenizer
from swapformer.data.resumable import ResumableDataLoader
from swapformer.data.tokenizers import TOKENIZER_KINDS, Tokenizer, build_tokenizer
from swapformer.data.workers import worker_start_method
from swapformer.errors import did_you_mean

__all__ = ["TokenizedDataModule", "check_fraction", "check_int", "check_path", "load_tokenizer"]


def check_int(name: str, value: Any, *, minimum: int, fix: str) -> None:
    """Raise :class:`DataError` unless ``value`` is an int >= ``minimum``; the message names ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{name}={value!r} is invalid: it must be an integer >= {minimum}; {fix}")


def check_fraction(name: str, value: Any) -> None:
    """Raise :class:`DataError` unless ``0 < value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise DataError(f"{name}={value!r} is invalid: it must be strictly between 0 and 1, e.g. 0.1.")


def check_path(name: str, value: str | Path | None) -> None:
    """Raise :class:`DataError` if ``value`` is given but does not exist."""
    if value is not None:
        existing_path(value, argument=name)


RUN_TOKENIZER = "tokenizer.swapformer.json"
"""The fitted tokenizer as a run keeps it, in ``trainer.default_root_dir`` (``Tokenizer.to_dict()`` as JSON)."""


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A trained model's tokenizer: from a ``.ckpt`` written by ``swapformer fit`` (a file, or FSDP2's folder), a run's
    ``tokenizer.swapformer.json``, or a directory (or file) with a Hugging Face ``tokenizer.json``.

    Raises:
        DataError: a checkpoint without a tokenizer, or no tokenizer.json.
    """
    path = Path(path)
    # FSDP2's checkpoint folder: the tokenizer is in meta.pt, with the rest that is not tensors
    source = path / "meta.pt" if path.is_dir() and (path / ".metadata").is_file() else path
    if source.is_file() and path.suffix == ".ckpt":
        state = torch.load(source, map_location="cpu", weights_only=True, mmap=True).get("tokenizer")
        if state is None:
            raise DataError(f"{path} holds no tokenizer (not written by swapformer fit)")
        return Tokenizer.from_dict(state)
    if path.is_file() and path.name.endswith(".swapformer.json"):
        return load_tokenizer_file(path)
    return HFTokenizer.from_pretrained(path)


class TokenizedDataModule(pl.LightningDataModule):
    """A data module whose tokenizer is fitted on its own training text, at most once.

    Subclasses implement :meth:`tokenizer_texts`. The fitted tokenizer is stored in checkpoints through
    :meth:`state_dict` (plain Python values only), and a resumed run checks it still matches.

    Args:
        tokenizer: Tokenizer kind to fit, one of ``"char"``, ``"byte"``, ``"bpe"``; or a trained model's tokenizer,
            used as it is: a directory with a ``tokenizer.json`` (``swapformer export``, ``import-hf``, a Hugging Face
            model), a ``.ckpt`` written by ``swapformer fit`` or a run's ``tokenizer.swapformer.json``.
        tokenizer_options: Options for that kind, e.g. ``{"vocab_size": 4096}`` for ``"bpe"``.

    Raises:
        DataError: If the tokenizer is neither a known kind nor an existing path, or the options are not a mapping.
    """

    def __init__(self, *, tokenizer: str, tokenizer_options: dict[str, Any] | None) -> None:
        super().__init__()
        if tokenizer not in TOKENIZER_KINDS and not Path(tokenizer).exists():
            raise DataError(
                f"tokenizer={tokenizer!r} is neither a kind ({', '.join(TOKENIZER_KINDS)}) nor an existing path "
                f"(a directory with tokenizer.json, or a .ckpt){did_you_mean(str(tokenizer), TOKENIZER_KINDS)}."
            )
        if tokenizer_options is not None and not isinstance(tokenizer_options, dict):
            raise DataError(
                f"tokenizer_options={tokenizer_options!r} must be a mapping such as {{'vocab_size': 4096}}."
            )
        self._tokenizer_kind = tokenizer
        self._tokenizer_options = dict(tokenizer_options or {})
        self._fitted_tokenizer: Tokenizer | None = None
        self._cache_root: Path | None = None  # a subclass that can name its training text sets it

    def tokenizer_texts(self) -> Iterable[str]:
        """The training text the tokenizer is fitted on; never validation or test text."""
        raise NotImplementedError

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer fitted on the training text (fitted on first access, then cached)."""
        if self._fitted_tokenizer is None and self._tokenizer_kind not in TOKENIZER_KINDS:
            self._fitted_tokenizer = load_tokenizer(self._tokenizer_kind)
        if self._fitted_tokenizer is None:
            path = self._tokenizer_cache_path()

            def fit() -> Tokenizer:
                return build_tokenizer(
                    self._tokenizer_kind, self.tokenizer_texts(), **self._tokenizer_options
                )

            self._fitted_tokenizer = (
                fit() if path is None else cached(path, fit, save_tokenizer_file, load_tokenizer_file)
            )
        return self._fitted_tokenizer

    def training_text_digest(self) -> str | None:
        """A digest of the text the tokenizer is fitted on, naming its cache entry; None = do not cache."""
        return None

    def _tokenizer_cache_path(self) -> Path | None:
        text = self.training_text_digest() if self._cache_root is not None else None
        if text is None:
            return None
        options = json.dumps(self._tokenizer_options, sort_keys=True)
        return self._cache_root / "tokenizers" / f"{digest(self._tokenizer_kind, options, text)}.json"

    def save_tokenizer_beside_run(self) -> Path | None:
        """Write the tokenizer to the run's ``default_root_dir`` (rank 0), where ``tokenizer:`` can point to reuse
        it; returns the path (None without a trainer)."""
        trainer = self.trainer
        if trainer is None:
            return None
        path = Path(trainer.default_root_dir) / RUN_TOKENIZER
        if trainer.is_global_zero and not (path.is_file() and load_tokenizer_file(path) == self.tokenizer):
            path.parent.mkdir(parents=True, exist_ok=True)
            save_tokenizer_file(self.tokenizer, path)
        return path

    @property
    def vocab_size(self) -> int:
        """Vocabulary size of the fitted tokenizer, specials included; safe to read before ``setup``."""
        return self.tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        """Id used for padding (always 0)."""
        return self.tokenizer.pad_id

    @property
    def bos_id(self) -> int:
        """Id of the begin-of-sequence token (always 1)."""
        return self.tokenizer.bos_id

    @property
    def eos_id(self) -> int:
        """Id of the end-of-sequence token (always 2)."""
        return self.tokenizer.eos_id

    def _loader(
        self,
        dataset: Any,
        *,
        drop_last: bool,
        sampler: Any = None,
        resumable: bool = False,
        collate_fn: Any = None,
    ) -> DataLoader:
        # the training loader checkpoints its position in the epoch (exact mid-epoch resume)
        return (ResumableDataLoader if resumable else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=drop_last,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            multiprocessing_context=worker_start_method(self.num_workers),
            persistent_workers=self.num_workers > 0,
            pin_memory=False,
            worker_init_fn=_leave_stop_signals_to_the_main_process if self.num_workers else None,
        )

    def state_dict(self) -> dict[str, Any]:
        """The fitted tokenizer as plain values, saved in Lightning checkpoints."""
        return {"tokenizer": self.tokenizer.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Adopt the checkpoint's tokenizer, or check it equals the one already fitted.

        Raises:
            DataError: If the checkpoint's tokenizer differs from the one fitted on the current data,
                which means token ids would no longer match the model's embeddings.
        """
        if "tokenizer" not in state_dict:
            return
        saved = Tokenizer.from_dict(state_dict["tokenizer"])
        if self._fitted_tokenizer is None:
            self._fitted_tokenizer = saved
        elif saved != self._fitted_tokenizer:
            raise DataError(
                f"the checkpoint's {saved.kind} tokenizer (vocab_size={saved.vocab_size}) differs from the "
                f"{self._fitted_tokenizer.kind} tokenizer fitted on the current data "
                f"(vocab_size={self._fitted_tokenizer.vocab_size}); resume with the data and tokenizer "
                f"settings the checkpoint was trained with."
            )


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker ignores SIGTERM and SIGINT: ``scancel`` and Ctrl-C signal the whole process group, and a
    worker they killed would end the main process with an error before it saves its checkpoint
    (:class:`~swapformer.training.signals.SaveOnSignal`). The workers end with the main process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
