"""CausalLMDataModule on a folder of swapformer prepare: windows read from the shards by memory map, the folder's
tokenizer, disjoint reads per rank and worker, exact mid-epoch resume, and a fit from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from tests.conftest import play_text

from swapformer.data import CausalLMDataModule, DataError
from swapformer.data.cache import load_tokenizer_file
from swapformer.data.prepare import prepare
from swapformer.data.shards import ShardStream

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    lines = [json.dumps({"text": play_text(300 + i % 200, seed=i)}) for i in range(300)]
    (root / "c.jsonl").write_text("\n".join(lines) + "\n")
    prepare(
        str(root / "c.jsonl"), tokenizer="bpe:300", out=root / "out", val_fraction=0.05, shard_tokens=9000
    )
    return root / "out"


def ids(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    maps = [np.memmap(folder / s["file"], dtype="<u2", mode="r") for s in meta["shards"][split]]
    return np.concatenate(maps).astype(np.int64)


def make(folder: Path, **overrides) -> CausalLMDataModule:
    return CausalLMDataModule(**{"path": str(folder), "seq_len": 32, "batch_size": 4, "seed": 5, **overrides})


def test_train_and_val_windows_are_the_shards_ids(folder: Path) -> None:
    data = make(folder)
    assert data.tokenizer == load_tokenizer_file(folder / "tokenizer.swapformer.json")
    assert data.vocab_size == json.loads((folder / "meta.json").read_text())["vocab_size"]
    data.setup("fit")
    assert isinstance(data.train_tokens, ShardStream)
    train, val = ids(folder, "train"), ids(folder, "val")
    loader = data.train_dataloader()
    offsets = list(loader.sampler)
    assert len(offsets) == train.size // 32
    for batch_index, batch in enumerate(loader):
        for row in range(4):
            offset = offsets[batch_index * 4 + row]
            assert batch["input_ids"][row].tolist() == train[offset : offset + 32].tolist()
            assert batch["labels"][row].tolist() == train[offset + 1 : offset + 33].tolist()
        if batch_index == 30:  # windows across the 9000-token shard boundaries are among these
            break
    assert any(o % 9000 > 9000 - 33 for o in offsets[:124])
    inputs = torch.cat([b["input_ids"] for b in data.val_dataloader()]).flatten()
    assert inputs.tolist() == val[: inputs.numel()].tolist() and inputs.numel() == (val.size - 1) // 32 * 32


def test_the_folders_tokenizer_or_none_other(folder: Path, tmp_path: Path) -> None:
    make(folder, tokenizer="bpe")  # its kind: the same
    load_tokenizer_file(folder / "tokenizer.swapformer.json").save_pretrained(tmp_path / "same")
    assert make(folder, tokenizer=str(tmp_path / "same")).vocab_size == make(folder).vocab_size
    with pytest.raises(DataError, match=r"was prepared with --tokenizer bpe:300, not tokenizer='char'"):
        make(folder, tokenizer="char")
    with pytest.raises(DataError, match=r"not tokenizer='bpe' with tokenizer_options \{'vocab_size': 500\}"):
        make(folder, tokenizer="bpe", tokenizer_options={"vocab_size": 500})
    from swapformer.data.tokenizers import ByteTokenizer

    ByteTokenizer().save_pretrained(tmp_path / "byte")
    with pytest.raises(
        DataError, match=r"another tokenizer than that of .*byte \(260 ids\), which the model reads"
    ):
        make(folder, tokenizer=str(tmp_path / "byte"))


def test_workers_and_ranks_read_their_own_windows(folder: Path) -> None:
    data = make(folder, train_samples_per_epoch=64)
    data.setup("fit")
    single = [b["input_ids"] for b in data.train_dataloader()]
    workers = make(folder, train_samples_per_epoch=64, num_workers=2)
    workers.setup("fit")
    assert all(
        torch.equal(a, b["input_ids"]) for a, b in zip(single, workers.train_dataloader(), strict=True)
    )
    sampler = data.train_dataloader().sampler
    ranks = [list(DistributedSamplerWrapper(sampler, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    everything = list(sampler)
    assert ranks[0] == everything[0::2] and ranks[1] == everything[1::2]  # draws split, none read twice


def test_resume_mid_epoch_continues_with_the_same_batches(folder: Path) -> None:
    data = make(folder, train_samples_per_epoch=40)
    data.setup("fit")
    loader = data.train_dataloader()
    loader.sampler.set_epoch(2)
    straight = [b["input_ids"] for b in loader]
    first = make(folder, train_samples_per_epoch=40)
    first.setup("fit")
    loader = first.train_dataloader()
    loader.sampler.set_epoch(2)
    seen = []
    for batch in loader:
        seen.append(batch["input_ids"])
        if len(seen) == 4:
            break
    state = loader.state_dict()
    resumed = make(folder, train_samples_per_epoch=40)
    resumed.setup("fit")
    again = resumed.train_dataloader()
    again.load_state_dict(state)
    again.sampler.set_epoch(2)
    rest = [b["input_ids"] for b in again]
    assert len(seen) + len(rest) == len(straight) == 10
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, straight, strict=True))


def _recipe(tmp_path: Path, name: str, folder: Path) -> Path:
    config = yaml.safe_load((REPO / "recipes" / name).read_text())
    config["model"]["init_args"].update(d_model=32, num_heads=4, num_layers=1, d_ff=64, max_seq_len=32)
    data = config["data"]["init_args"]
    for key in ("tokenizer", "tokenizer_options", "max_chars", "val_fraction"):
        data.pop(key, None)
    data.update(path=str(folder), seq_len=16, batch_size=4, train_samples_per_epoch=8)
    config["trainer"].update(
        max_steps=2, limit_val_batches=1, val_check_interval=None, enable_progress_bar=False
    )
    config["trainer"]["callbacks"] = []
    path = tmp_path / f"{Path(name).stem}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_reads_a_prepared_folder_and_starts_from_a_model_of_its_tokenizer(
    folder: Path, tmp_path: Path
) -> None:
    from swapformer.cli import run

    recipe = _recipe(tmp_path, "causal_lm/stdlib-tiny.yaml", folder)
    cli = run(["fit", "--config", str(recipe), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert cli.trainer.global_step == 2
    assert cli.model.tokenizer == load_tokenizer_file(folder / "tokenizer.swapformer.json")
    assert cli.model.config.vocab_size == cli.datamodule.tokenizer.vocab_size
    last = next((tmp_path / "run").rglob("last.ckpt"))
    again = run(
        [
            "fit",
            "--config",
            str(recipe),
            f"--trainer.default_root_dir={tmp_path / 'again'}",
            f"--model.init_args.init_from={last}",  # its tokenizer is the folder's: accepted
        ]
    )
    assert again.trainer.global_step == 2 and again.datamodule.tokenizer == cli.model.tokenizer


def test_masked_lm_fits_on_a_prepared_folder(folder: Path, tmp_path: Path) -> None:
    from swapformer.cli import run

    recipe = _recipe(tmp_path, "masked_lm/masked-stdlib-tiny.yaml", folder)
    cli = run(["fit", "--config", str(recipe), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert cli.trainer.global_step == 2
    assert isinstance(cli.datamodule.train_tokens, ShardStream)
