"""Data mistakes: files that are missing, empty or not text, and data settings that leave nothing to train on."""

from __future__ import annotations

from .harness import Case


def _fit(fx, **data) -> list[str]:
    """``swapformer fit`` of the tiny recipe with ``data`` changed."""
    return ["fit", "--config", fx.recipe(data=data), f"--trainer.default_root_dir={fx.tmp / 'runs'}"]


def _text(fx, name: str, content: str | bytes) -> str:
    path = fx.tmp / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)


CASES = [
    Case(
        id="missing-data-file",
        area="data",
        mistake="`data.path` of a file that does not exist",
        expect=r"path='nope\.txt' does not exist",
        argv=lambda fx: _fit(fx, path="nope.txt"),
    ),
    Case(
        id="empty-data-file",
        area="data",
        mistake="`data.path` of an empty file",
        expect=r"empty\.txt",
        argv=lambda fx: _fit(fx, path=_text(fx, "empty.txt", "")),
    ),
    Case(
        id="binary-data-file",
        area="data",
        mistake="`data.path` of a binary file",
        expect=r"photo\.jpg",
        argv=lambda fx: _fit(fx, path=_text(fx, "photo.jpg", bytes(range(256)) * 64)),
    ),
    Case(
        id="data-too-short-for-seq-len",
        area="data",
        mistake="a text file shorter than one `seq_len` window",
        expect=r"seq_len",
        argv=lambda fx: _fit(fx, path=_text(fx, "short.txt", "just a few words\n")),
    ),
    Case(
        id="bad-tokenizer-name",
        area="data",
        mistake="`tokenizer: bpee` (a misspelt tokenizer)",
        expect=r"tokenizer='bpee' is neither a kind \(char, byte, bpe\)",
        argv=lambda fx: _fit(fx, tokenizer="bpee"),
    ),
    Case(
        id="bpe-vocab-too-small",
        area="data",
        mistake="`tokenizer: bpe` with `vocab_size: 10` (fewer ids than bytes)",
        expect=r"vocab_size",
        argv=lambda fx: _fit(fx, tokenizer="bpe", tokenizer_options={"vocab_size": 10}),
    ),
    Case(
        id="val-fraction-zero",
        area="data",
        mistake="`val_fraction: 0` (no validation text)",
        expect=r"val_fraction",
        argv=lambda fx: _fit(fx, val_fraction=0),
    ),
    Case(
        id="val-fraction-one",
        area="data",
        mistake="`val_fraction: 1` (no training text)",
        expect=r"val_fraction",
        argv=lambda fx: _fit(fx, val_fraction=1),
    ),
    Case(
        id="batch-size-zero",
        area="data",
        mistake="`batch_size: 0`",
        expect=r"batch_size=0",
        argv=lambda fx: _fit(fx, batch_size=0),
    ),
    Case(
        id="seq-len-negative",
        area="data",
        mistake="`seq_len: -16`",
        expect=r"seq_len=-16",
        argv=lambda fx: _fit(fx, seq_len=-16),
    ),
]
