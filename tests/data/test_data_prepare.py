"""swapformer prepare: shards hold exactly the tokenizer's ids of every document plus eos, the same bytes for any
worker count, a stopped prepare resumes to the same bytes, and a folder of another source is refused."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import play_text

from swapformer.data import DataError
from swapformer.data import prepare as prepare_module
from swapformer.data.cache import load_tokenizer_file
from swapformer.data.prepare import prepare
from swapformer.data.shards import PreparedDir
from swapformer.data.tokenizers import CharTokenizer

HAS_DATASETS = importlib.util.find_spec("datasets") is not None
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def read(folder: Path, split: str) -> np.ndarray:
    """A split's ids as numpy.memmap reads the shards named in meta.json, concatenated."""
    meta = json.loads((folder / "meta.json").read_text())
    dtype = {"uint16": "<u2", "uint32": "<u4"}[meta["dtype"]]
    parts = [np.memmap(folder / s["file"], dtype=dtype, mode="r") for s in meta["shards"][split]]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def documents(count: int, *, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [play_text(rng.randint(20, 600), seed=seed * 100_000 + i) for i in range(count)]


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    docs = documents(400)
    path = tmp_path_factory.mktemp("jsonl") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": doc}) + "\n" for i, doc in enumerate(docs)))
    return path, docs


def expected(tokenizer, texts: list[str]) -> list[int]:
    return [i for text in texts for i in [*tokenizer.encode(text), tokenizer.eos_id]]


def test_text_file_is_split_by_position_and_each_side_ends_with_eos(tmp_path: Path) -> None:
    text = play_text(30_000, seed=1)
    (tmp_path / "input.txt").write_text(text)
    meta = prepare(str(tmp_path / "input.txt"), tokenizer="char", out=tmp_path / "out", val_fraction=0.1)
    tokenizer = load_tokenizer_file(tmp_path / "out" / "tokenizer.swapformer.json")
    cut = int(len(text) * 0.9)
    assert tokenizer == CharTokenizer.fit(text[:cut])  # fitted on the training text only
    assert read(tmp_path / "out", "train").tolist() == expected(tokenizer, [text[:cut]])
    assert read(tmp_path / "out", "val").tolist() == expected(tokenizer, [text[cut:]])
    assert meta["dtype"] == "uint16" and meta["eos_id"] == tokenizer.eos_id == 2
    assert meta["tokens"] == {"train": cut + 1, "val": len(text) - cut + 1}
    assert meta["documents"] == {"train": 1, "val": 1}
    assert meta["vocab_size"] == tokenizer.vocab_size and meta["source_kind"] == "text"
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta


def test_a_long_document_cut_into_units_has_the_ids_of_one_encode(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prepare_module, "UNIT_CHARS", 2000)  # a 60k-character file in about 30 units
    text = play_text(60_000, seed=2)
    (tmp_path / "input.txt").write_text(text)
    meta = prepare(str(tmp_path / "input.txt"), tokenizer="bpe:500", out=tmp_path / "out", val_fraction=0.1)
    tokenizer = load_tokenizer_file(tmp_path / "out" / "tokenizer.swapformer.json")
    cut = int(len(text) * 0.9)
    assert read(tmp_path / "out", "train").tolist() == expected(tokenizer, [text[:cut]])
    assert read(tmp_path / "out", "val").tolist() == expected(tokenizer, [text[cut:]])
    assert meta["documents"] == {"train": 1, "val": 1}


def test_jsonl_documents_every_kth_is_validation_across_shards(tmp_path: Path, jsonl) -> None:
    path, docs = jsonl
    meta = prepare(str(path), tokenizer="bpe:400", out=tmp_path / "out", val_fraction=0.01, shard_tokens=5000)
    tokenizer = load_tokenizer_file(tmp_path / "out" / "tokenizer.swapformer.json")
    train = [doc for i, doc in enumerate(docs, 1) if i % 100]
    val = [doc for i, doc in enumerate(docs, 1) if i % 100 == 0]
    assert read(tmp_path / "out", "train").tolist() == expected(tokenizer, train)
    assert read(tmp_path / "out", "val").tolist() == expected(tokenizer, val)
    assert meta["documents"] == {"train": 396, "val": 4}
    assert len(meta["shards"]["train"]) > 2 and all(s["tokens"] == 5000 for s in meta["shards"]["train"][:-1])
    assert tokenizer.decode(read(tmp_path / "out", "val")[: len(tokenizer.encode(val[0]))]) == val[0]


def test_same_bytes_for_any_worker_count(tmp_path: Path, jsonl, monkeypatch) -> None:
    monkeypatch.setattr(prepare_module, "UNIT_CHARS", 4000)  # many units, so both workers get some
    path, _ = jsonl
    outs = []
    for workers in (1, 2):
        outs.append(tmp_path / f"w{workers}")
        prepare(
            str(path),
            tokenizer="bpe:400",
            out=outs[-1],
            workers=workers,
            val_fraction=0.01,
            shard_tokens=7000,
        )
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_a_stopped_prepare_resumes_to_the_same_bytes(tmp_path: Path, jsonl, monkeypatch) -> None:
    monkeypatch.setattr(prepare_module, "UNIT_CHARS", 3000)
    path, _ = jsonl
    whole = tmp_path / "whole"
    prepare(str(path), tokenizer="char", out=whole, val_fraction=0.01, shard_tokens=9000)

    monkeypatch.setattr(prepare_module, "_SAVE_SECONDS", 0.0)
    calls = {"n": 0}
    encode = prepare_module._Encoder.__call__

    def stopping(self, unit):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt  # a kill between units; the shards hold what the last record says
        return encode(self, unit)

    monkeypatch.setattr(prepare_module._Encoder, "__call__", stopping)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        prepare(str(path), tokenizer="char", out=stopped, val_fraction=0.01, shard_tokens=9000)
    state = json.loads((stopped / "prepare.state.json").read_text())
    assert state["units"] == 19 and not (stopped / "meta.json").exists()
    last = stopped / state["shards"][0][-1]["file"]
    with open(last, "ab") as handle:  # what a kill in the middle of a write leaves behind the record
        handle.write(b"\x07" * 333)
    (stopped / "train-00099.bin").write_bytes(b"\x01\x00")  # a shard begun after the record
    monkeypatch.setattr(prepare_module._Encoder, "__call__", encode)
    prepare(str(path), tokenizer="char", out=stopped, val_fraction=0.01, shard_tokens=9000)
    assert sorted(p.name for p in stopped.iterdir()) == sorted(p.name for p in whole.iterdir())
    for file in whole.iterdir():
        assert (stopped / file.name).read_bytes() == file.read_bytes(), file.name


def test_a_finished_folder_is_kept_and_another_source_or_tokenizer_refused(tmp_path: Path, jsonl) -> None:
    path, _ = jsonl
    out = tmp_path / "out"
    prepare(str(path), tokenizer="char", out=out, val_fraction=0.01)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    prepare(str(path), tokenizer="char", out=out, val_fraction=0.01)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(
        DataError, match=r"holds shards of another tokenizer \(char\), not of .* --tokenizer byte"
    ):
        prepare(str(path), tokenizer="byte", out=out, val_fraction=0.01)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "something else " * 50}) + "\n")
    with pytest.raises(DataError, match=r"holds shards of another source \(.*corpus\.jsonl\)"):
        prepare(str(other), tokenizer="char", out=out, val_fraction=0.01)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match=r"is not empty and was not written by swapformer prepare"):
        prepare(str(path), tokenizer="char", out=tmp_path / "mine")


def test_byte_and_hugging_face_tokenizers(tmp_path: Path, jsonl) -> None:
    path, docs = jsonl
    prepare(str(path), tokenizer="bpe:300", out=tmp_path / "bpe", val_fraction=0.01)
    fitted = load_tokenizer_file(tmp_path / "bpe" / "tokenizer.swapformer.json")
    fitted.save_pretrained(tmp_path / "hf")  # a Hugging Face folder of that tokenizer
    meta = prepare(str(path), tokenizer=str(tmp_path / "hf"), out=tmp_path / "from-hf", val_fraction=0.01)
    assert meta["tokenizer_kind"] == "hf"
    assert np.array_equal(read(tmp_path / "from-hf", "train"), read(tmp_path / "bpe", "train"))
    prepare(str(path), tokenizer="byte", out=tmp_path / "byte", val_fraction=0.01)
    train = [doc for i, doc in enumerate(docs, 1) if i % 100]
    assert read(tmp_path / "byte", "train").tolist() == [
        i for doc in train for i in [*(b + 4 for b in doc.encode()), 2]
    ]


def test_uint32_when_the_vocabulary_does_not_fit_16_bits(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "</s>": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "big").mkdir()
    backend.save(str(tmp_path / "big" / "tokenizer.json"))
    (tmp_path / "big" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    lines = [{"text": f"w1 w69999 w{i}"} for i in range(300)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    meta = prepare(
        str(tmp_path / "c.jsonl"), tokenizer=str(tmp_path / "big"), out=tmp_path / "out", val_fraction=0.01
    )
    assert meta["dtype"] == "uint32"
    train = [line["text"] for i, line in enumerate(lines, 1) if i % 100]
    ids = [[int(w[1:]) + 2 for w in text.split()] + [1] for text in train]
    assert read(tmp_path / "out", "train").tolist() == [i for doc in ids for i in doc]


def test_text_folder_files_are_documents(tmp_path: Path) -> None:
    docs = documents(250, seed=3)
    for i, doc in enumerate(docs):
        (tmp_path / "src" / f"{i // 100}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / f"{i // 100}" / f"{i:03d}.txt").write_text(doc)
    prepare(str(tmp_path / "src"), tokenizer="char", out=tmp_path / "out", val_fraction=0.02)
    tokenizer = load_tokenizer_file(tmp_path / "out" / "tokenizer.swapformer.json")
    assert read(tmp_path / "out", "val").tolist() == expected(tokenizer, docs[49::50])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p.write_text('{"content": "a"}\n'),
            r"line 1 has no column 'text'; its columns are \['content'\]",
        ),
        (lambda p: p.write_text("\n\n"), r"holds no text \(0 non-empty documents\)"),
        (lambda p: p.write_text('{"text": 3}\n'), r"'text' holds a int, not text"),
        (lambda p: p.write_text("not json\n"), r"line 1 is not JSON"),
    ],
)
def test_bad_sources(tmp_path: Path, make, message: str) -> None:
    make(tmp_path / "c.jsonl")
    with pytest.raises(DataError, match=message):
        prepare(str(tmp_path / "c.jsonl"), tokenizer="char", out=tmp_path / "out")


def test_bad_arguments(tmp_path: Path, jsonl) -> None:
    path, _ = jsonl
    with pytest.raises(DataError, match=r"--tokenizer wordpiece is neither char, byte, bpe:N"):
        prepare(str(path), tokenizer="wordpiece", out=tmp_path / "a")
    with pytest.raises(DataError, match=r"--workers 0 must be an integer >= 1"):
        prepare(str(path), tokenizer="char", out=tmp_path / "a", workers=0)
    with pytest.raises(DataError, match=r"--val_fraction 1.5 must be strictly between 0 and 1"):
        prepare(str(path), tokenizer="char", out=tmp_path / "a", val_fraction=1.5)


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed: Parquet is read")
def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "c.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"needs pyarrow: pip install 'swapformer\[data\]'"):
        prepare(str(tmp_path / "c.parquet"), tokenizer="char", out=tmp_path / "out")


@pytest.mark.skipif(HAS_DATASETS, reason="datasets is installed: a name is loaded")
def test_dataset_name_without_datasets_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"needs the datasets package: pip install 'swapformer\[data\]'"):
        prepare("someone/corpus", tokenizer="char", out=tmp_path / "out")


@pytest.mark.skipif(HAS_DATASETS, reason="datasets is installed: the folder is loaded")
def test_save_to_disk_folder_without_datasets_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "dataset_info.json").write_text("{}")
    (tmp_path / "saved" / "state.json").write_text("{}")
    with pytest.raises(DataError, match=r"save_to_disk folder\) needs the datasets package: pip install"):
        prepare(str(tmp_path / "saved"), tokenizer="char", out=tmp_path / "out")


@pytest.mark.skipif(not HAS_DATASETS, reason="needs the datasets package (pip install 'swapformer[data]')")
def test_save_to_disk_folder_equals_jsonl(tmp_path: Path, jsonl) -> None:
    import datasets

    path, docs = jsonl
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(tmp_path / "saved"))
    prepare(str(tmp_path / "saved"), tokenizer="char", out=tmp_path / "a", val_fraction=0.01)
    prepare(str(path), tokenizer="char", out=tmp_path / "b", val_fraction=0.01)
    assert np.array_equal(read(tmp_path / "a", "train"), read(tmp_path / "b", "train"))


@pytest.mark.skipif(not HAS_PYARROW, reason="needs pyarrow (pip install 'swapformer[data]')")
def test_parquet_equals_jsonl_and_a_missing_column_names_the_columns(tmp_path: Path, jsonl) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, docs = jsonl
    pq.write_table(pa.table({"id": list(range(len(docs))), "body": docs}), tmp_path / "c.parquet")
    prepare(
        str(tmp_path / "c.parquet"),
        tokenizer="char",
        out=tmp_path / "a",
        val_fraction=0.01,
        text_column="body",
    )
    prepare(str(path), tokenizer="char", out=tmp_path / "b", val_fraction=0.01)
    for split in ("train", "val"):
        assert np.array_equal(read(tmp_path / "a", split), read(tmp_path / "b", split))
    with pytest.raises(
        DataError, match=r"has no column 'text'; its columns are \['id', 'body'\]: pass --text_column"
    ):
        prepare(str(tmp_path / "c.parquet"), tokenizer="char", out=tmp_path / "c")


# ---- reading a prepared folder ------------------------------------------------------------------------------
@pytest.fixture
def prepared(tmp_path: Path, jsonl) -> Path:
    path, _ = jsonl
    prepare(str(path), tokenizer="char", out=tmp_path / "out", val_fraction=0.01, shard_tokens=20_000)
    return tmp_path / "out"


def test_shard_stream_reads_across_shards(prepared: Path) -> None:
    stream = PreparedDir(prepared).streams["train"]
    ids = read(prepared, "train")
    assert stream.numel() == ids.size
    for start, stop in ((0, 10), (19_990, 20_010), (39_999, 60_001), (ids.size - 5, ids.size)):
        assert stream[start:stop].tolist() == ids[start:stop].tolist()
    import pickle

    assert len(pickle.dumps(stream)) < 2_000 < ids.size  # a worker gets file names, never the ids


def _meta(folder: Path, change) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def _replace_val(folder: Path, ids: np.ndarray) -> None:
    (folder / "val-00000.bin").write_bytes(ids.tobytes())
    _meta(folder, lambda m: (m["tokens"].update(val=ids.size), m["shards"]["val"][0].update(tokens=ids.size)))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "train-00000.bin").write_bytes((d / "train-00000.bin").read_bytes()[:-10]),
            r"train-00000\.bin has 39990 bytes but meta\.json says 20000 uint16 tokens = 40000 bytes \(truncated",
        ),
        (
            lambda d: (d / "val-00000.bin").write_bytes(
                np.fromfile(d / "val-00000.bin", dtype="<u2").astype("<u4").tobytes()
            ),
            r"val-00000\.bin has \d+ bytes .* \(it looks written as uint32\)",
        ),
        (
            lambda d: _meta(d, lambda m: m["tokens"].update(train=5)),
            r"says the train split has 5 tokens but its shards list \d+: meta\.json does not match its shards",
        ),
        (
            lambda d: (d / "train-00007.bin").write_bytes(b"\0\0"),
            r"holds shard\(s\) \['train-00007\.bin'\] that meta\.json does not list",
        ),
        (
            lambda d: _meta(d, lambda m: m.update(vocab_size=70_000)),
            r"a vocabulary of 70000 ids does not fit dtype uint16 \(at most 65536\)",
        ),
        (
            lambda d: _replace_val(d, np.full(4, 9999, dtype="<u2")),
            r"val-00000\.bin holds id 9999, beyond the tokenizer's \d+ ids",
        ),
        (lambda d: (d / "meta.json").write_text("{"), r"meta\.json is not valid JSON"),
    ],
)
def test_damaged_folders_are_named(prepared: Path, damage, message: str) -> None:
    damage(prepared)
    with pytest.raises(DataError, match=message):
        PreparedDir(prepared)


def test_the_command_line_shows_documents_and_tokens_per_second(tmp_path: Path, jsonl, capsys) -> None:
    from swapformer.cli import main

    path, _ = jsonl
    main(
        [
            "prepare",
            str(path),
            "--tokenizer",
            "byte",
            "--out",
            str(tmp_path / "out"),
            "--val_fraction",
            "0.01",
        ]
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    tokens = meta["tokens"]["train"] + meta["tokens"]["val"]
    assert re.fullmatch(
        rf"prepare: 400 documents, {tokens / 1e3:.2f}k tokens, [\d.]+[kMG]? tokens/s in .* -> .*out", last
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(path), "--tokenizer", "char", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("swapformer prepare: error: --out ")
