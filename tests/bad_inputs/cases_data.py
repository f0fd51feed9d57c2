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


def _prepared(fx, damage=None) -> str:
    """A folder of ``swapformer prepare`` (char tokenizer, 120 small documents) at ``<tmp>/prepared``, then
    ``damage(folder)``."""
    import json

    from swapformer.data.prepare import prepare

    lines = [
        json.dumps({"text": f"line {i}: the quick brown fox jumps over the lazy dog " * 3})
        for i in range(120)
    ]
    source = fx.tmp / "corpus.jsonl"
    source.write_text("\n".join(lines) + "\n")
    folder = fx.tmp / "prepared"
    prepare(str(source), tokenizer="char", out=folder, val_fraction=0.05, progress=False)
    if damage is not None:
        damage(folder)
    return str(folder)


def _edit_meta(folder, change) -> None:
    import json

    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def _truncate(folder) -> None:
    shard = folder / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-100])


def _as_uint32(folder) -> None:
    import numpy as np

    shard = folder / "train-00000.bin"
    shard.write_bytes(np.fromfile(shard, dtype="<u2").astype("<u4").tobytes())


def _jsonl(fx, column: str = "text") -> str:
    """``<tmp>/corpus.jsonl``: 60 small documents under ``column`` (and an ``id``)."""
    import json

    lines = [
        json.dumps({"id": i, column: f"line {i}: the quick brown fox jumps over the lazy dog"})
        for i in range(60)
    ]
    return _text(fx, "corpus.jsonl", "\n".join(lines) + "\n")


def _stream(fx, trainer=None, **data) -> list[str]:
    """``swapformer fit`` of the tiny recipe streaming ``data`` (10 validation documents)."""
    data = {"streaming": True, "val_documents": 10, **data}
    recipe = fx.recipe(data=data, **({"trainer": trainer} if trainer else {}))
    return ["fit", "--config", recipe, f"--trainer.default_root_dir={fx.tmp / 'runs'}"]


def _without_datasets(fx):
    """``CausalLMDataModule(streaming=True)`` where the datasets package is not installed."""
    import importlib.util
    from unittest import mock

    from swapformer.data import CausalLMDataModule

    real = importlib.util.find_spec
    hidden = mock.patch(
        "importlib.util.find_spec", lambda name, *a: None if name == "datasets" else real(name, *a)
    )
    with hidden:
        return CausalLMDataModule(path=_jsonl(fx), streaming=True, tokenizer="byte")


def _resume_with_other_workers(fx) -> list[str]:
    """A streamed run's ``last.ckpt`` (one shard: no workers) resumed with ``num_workers: 2``."""
    argv = _stream(fx, path=_jsonl(fx), tokenizer="byte")
    checkpoint = fx._fit("streaming", argv[2])
    return [*argv, f"--ckpt_path={checkpoint}", "--data.init_args.num_workers=2", "--trainer.max_steps=4"]


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
    Case(
        id="prepare-missing-text-column",
        area="data",
        mistake="`swapformer prepare` of JSON lines without a `text` field",
        expect=r"has no column 'text'; its columns are \['id', 'content'\]: pass --text_column",
        argv=lambda fx: [
            "prepare",
            _text(fx, "c.jsonl", '{"id": 1, "content": "hello"}\n'),
            "--tokenizer",
            "char",
            "--out",
            "out",
        ],
    ),
    Case(
        id="prepare-empty-source",
        area="data",
        mistake="`swapformer prepare` of an empty text file",
        expect=r"SOURCE .*empty\.txt holds no text",
        argv=lambda fx: ["prepare", _text(fx, "empty.txt", ""), "--tokenizer", "char", "--out", "out"],
    ),
    Case(
        id="prepare-out-of-another-source",
        area="data",
        mistake="`swapformer prepare --out DIR` where DIR holds the shards of another corpus",
        expect=r"holds shards of another source .*give another --out, or delete the folder",
        argv=lambda fx: [
            "prepare",
            _text(fx, "other.txt", "another corpus\n" * 50),
            "--tokenizer",
            "char",
            "--out",
            _prepared(fx),
        ],
    ),
    Case(
        id="document-mask-without-pack",
        area="data",
        mistake="`document_mask: true` without `pack: true`",
        expect=r"document_mask: true needs pack: true .*; add pack: true, or drop document_mask",
        argv=lambda fx: _fit(fx, document_mask=True),
    ),
    Case(
        id="pack-plain-text",
        area="data",
        mistake="`pack: true` on a plain text corpus (no document ends)",
        expect=r"pack: true needs a corpus of documents, but data.path=.*plain.txt is plain text .*swapformer prepare",
        argv=lambda fx: _fit(fx, pack=True, path=_text(fx, "plain.txt", "to be or not to be\n" * 200)),
    ),
    Case(
        id="pack-unknown-packing",
        area="data",
        mistake="`pack: first_fit` (not a packing this module has)",
        expect=r"pack='first_fit' is not a packing; use pack: true \(best_fit.*pack: next_fit.*or pack: false",
        argv=lambda fx: _fit(fx, pack="first_fit", path=_prepared(fx)),
    ),
    Case(
        id="pack-linear-kernel",
        area="data",
        mistake="`pack: true` (document masks on) for a model whose attention is `linear`",
        expect=r"data.document_mask is true, but attention 'linear' cannot keep attention within each document",
        argv=lambda fx: [
            *_fit(fx, pack=True, path=_prepared(fx)),
            "--model.init_args.attention=linear",
        ],
    ),
    Case(
        id="prepared-truncated-shard",
        area="data",
        mistake="`data.path` of a prepared folder whose shard was cut short (an interrupted copy)",
        expect=r"train-00000\.bin has \d+ bytes but meta\.json says \d+ uint16 tokens .*truncated",
        argv=lambda fx: _fit(fx, path=_prepared(fx, _truncate)),
    ),
    Case(
        id="prepared-wrong-dtype-shard",
        area="data",
        mistake="`data.path` of a prepared folder whose shard was rewritten as uint32",
        expect=r"it looks written as uint32",
        argv=lambda fx: _fit(fx, path=_prepared(fx, _as_uint32)),
    ),
    Case(
        id="prepared-meta-not-matching-shards",
        area="data",
        mistake="`data.path` of a prepared folder whose meta.json counts other tokens than its shards hold",
        expect=r"meta\.json does not match its shards",
        argv=lambda fx: _fit(
            fx, path=_prepared(fx, lambda d: _edit_meta(d, lambda m: m["tokens"].update(train=12)))
        ),
    ),
    Case(
        id="prepared-vocab-beyond-dtype",
        area="data",
        mistake="`data.path` of a prepared folder whose tokenizer has more ids than its uint16 shards can hold",
        expect=r"a vocabulary of 70000 ids does not fit dtype uint16",
        argv=lambda fx: _fit(
            fx, path=_prepared(fx, lambda d: _edit_meta(d, lambda m: m.update(vocab_size=70000)))
        ),
    ),
    Case(
        id="prepared-other-tokenizer-in-recipe",
        area="data",
        mistake="`data.path` of a folder prepared with `--tokenizer char` and `tokenizer: byte` in the recipe",
        expect=r"was prepared with --tokenizer char, not tokenizer='byte'",
        argv=lambda fx: _fit(fx, path=_prepared(fx), tokenizer="byte"),
    ),
    Case(
        id="prepared-other-tokenizer-than-init-from",
        area="data",
        mistake="`init_from:` a model whose tokenizer is not the one the `data.path` folder was prepared with",
        expect=r"another tokenizer than that of .*last\.ckpt .*prepare the corpus again with --tokenizer",
        argv=lambda fx: [
            *_fit(fx, path=_prepared(fx)),
            f"--model.init_args.init_from={fx.causal_checkpoint}",
        ],
    ),
    Case(
        id="streaming-text-source",
        area="data",
        mistake="`streaming: true` with `data.path` of a plain text file (not a `datasets` source)",
        expect=r"streaming: true reads a datasets source .*but data\.path=.*corpus\.txt is text",
        argv=lambda fx: _stream(fx, path=_text(fx, "corpus.txt", "some text\n" * 400), tokenizer="byte"),
    ),
    Case(
        id="streaming-bpe-tokenizer",
        area="data",
        mistake="`streaming: true` with `tokenizer: bpe` (fitted on a corpus the stream does not hold)",
        expect=r"streaming: true cannot fit tokenizer='bpe'.*swapformer prepare",
        argv=lambda fx: _stream(fx, path=_jsonl(fx), tokenizer="bpe"),
    ),
    Case(
        id="streaming-with-pack",
        area="data",
        mistake="`streaming: true` with `pack: true`",
        expect=r"pack: true with streaming: true is not supported.*drop pack",
        argv=lambda fx: _stream(fx, path=_jsonl(fx), tokenizer="byte", pack=True),
    ),
    Case(
        id="streaming-missing-text-column",
        area="data",
        mistake="`streaming: true` of JSON lines without a `text` field",
        expect=r"has no column 'text'; its columns are \['id', 'content'\]: set data\.text_column",
        argv=lambda fx: _stream(fx, path=_jsonl(fx, column="content"), tokenizer="byte"),
    ),
    Case(
        id="streaming-without-max-steps",
        area="data",
        mistake="`streaming: true` with `max_epochs` and no `max_steps` (a stream has no epochs)",
        expect=r"trainer\.max_steps=-1 never ends the run; set trainer\.max_steps",
        argv=lambda fx: _stream(fx, trainer={"max_steps": -1}, path=_jsonl(fx), tokenizer="byte"),
    ),
    Case(
        id="streaming-val-documents-zero",
        area="data",
        mistake="`streaming: true` with `val_documents: 0` (no validation)",
        expect=r"val_documents=0 is invalid: it must be an integer >= 1",
        argv=lambda fx: _stream(fx, path=_jsonl(fx), tokenizer="byte", val_documents=0),
    ),
    Case(
        id="streaming-without-datasets",
        area="data",
        mistake="`streaming: true` where the `datasets` package is not installed",
        expect=r"streaming: true needs the datasets package: pip install 'swapformer\[data\]'",
        raises=_without_datasets,
    ),
    Case(
        id="streaming-resume-other-workers",
        area="data",
        mistake="resuming a streamed run with another `num_workers` (or device count) than its checkpoint's",
        expect=r"the checkpoint streamed over 1 shard\(s\) .*this run over 2 \(1 x 2\); resume with",
        argv=_resume_with_other_workers,
    ),
]
