"""Checkpoint mistakes: files that are not a checkpoint of ``swapformer fit``, each named with what it is,
through every way a checkpoint is read (generate, evaluate, export, fit's --ckpt_path, init_from, load)."""

from __future__ import annotations

from .harness import Case


def _folder(fx):
    """A folder of shards without the index and meta.pt that make it a distributed checkpoint (a partial copy)."""
    path = fx.tmp / "sharded.ckpt"
    path.mkdir(exist_ok=True)
    (path / "__0_0.distcp").write_bytes(b"shard")
    return path


def _text(fx, name: str, content: str | bytes):
    path = fx.tmp / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def _generate(path) -> list:
    return ["generate", "--ckpt_path", path, "--prompt", "hi"]


def _load(path, module: str = "SwapformerModule"):
    import swapformer.tasks

    return getattr(swapformer.tasks, module).load(path)


CASES = [
    Case(
        id="generate-missing-checkpoint",
        area="checkpoint",
        mistake="`swapformer generate --ckpt_path` of a file that does not exist",
        expect=r"no checkpoint at missing\.ckpt",
        argv=lambda fx: _generate("missing.ckpt"),
    ),
    Case(
        id="generate-truncated-checkpoint",
        area="checkpoint",
        mistake="`swapformer generate` of a checkpoint cut short (a copy interrupted)",
        expect=r"truncated\.ckpt is truncated",
        argv=lambda fx: _generate(fx.truncated_checkpoint),
    ),
    Case(
        id="generate-not-a-checkpoint",
        area="checkpoint",
        mistake="`swapformer generate` of a text file named .ckpt",
        expect=r"notes\.ckpt is not a checkpoint \(not a file written by torch\.save\)",
        argv=lambda fx: _generate(_text(fx, "notes.ckpt", "step 100: loss 2.3\n")),
    ),
    Case(
        id="generate-checkpoint-runs-code",
        area="checkpoint",
        mistake="`swapformer generate` of a file whose loading would run code (a pickled `__reduce__`)",
        expect=r"runs-code\.ckpt was refused for safety: .*nothing in it ran",
        argv=lambda fx: _generate(fx.code_checkpoint),
    ),
    Case(
        id="generate-sharded-folder",
        area="checkpoint",
        mistake="`swapformer generate` of a folder of shards without their `.metadata` and `meta.pt` (a partial copy)",
        expect=r"sharded\.ckpt is a folder but not a distributed checkpoint \(no \.metadata or meta\.pt in it\)",
        argv=lambda fx: _generate(_folder(fx)),
    ),
    Case(
        id="evaluate-state-dict",
        area="checkpoint",
        mistake="`swapformer evaluate` of a bare state_dict (a Hugging Face `pytorch_model.bin`)",
        expect=r"pytorch_model\.bin holds bare tensors .*swapformer import-hf",
        argv=lambda fx: ["evaluate", "--ckpt_path", fx.state_dict_file, "--path", "x.txt"],
    ),
    Case(
        id="evaluate-empty-file",
        area="checkpoint",
        mistake="`swapformer evaluate` of an empty .ckpt (a save that never wrote)",
        expect=r"empty\.ckpt is empty \(0 bytes\)",
        argv=lambda fx: ["evaluate", "--ckpt_path", _text(fx, "empty.ckpt", b""), "--path", "x.txt"],
    ),
    Case(
        id="export-other-lightning-checkpoint",
        area="checkpoint",
        mistake="`swapformer export` of another program's Lightning checkpoint",
        expect=r"other\.ckpt was written by another program \(a Lightning checkpoint without swapformer",
        argv=lambda fx: ["export", "--ckpt_path", fx.other_lightning_checkpoint, "--out", "out"],
    ),
    Case(
        id="export-safetensors",
        area="checkpoint",
        mistake="`swapformer export --ckpt_path model.safetensors`",
        expect=r"model\.safetensors is a safetensors file .*config\.json",
        argv=lambda fx: ["export", "--ckpt_path", _safetensors(fx), "--out", "out"],
    ),
    Case(
        id="fit-resume-from-truncated",
        area="checkpoint",
        mistake="`swapformer fit --ckpt_path` of a truncated checkpoint (to resume)",
        expect=r"truncated\.ckpt is truncated",
        argv=lambda fx: [
            "fit",
            "--config",
            fx.recipe(),
            f"--trainer.default_root_dir={fx.tmp / 'runs'}",
            "--ckpt_path",
            fx.truncated_checkpoint,
        ],
    ),
    Case(
        id="init-from-runs-code",
        area="checkpoint",
        mistake="`init_from:` a file whose loading would run code",
        expect=r"runs-code\.ckpt was refused for safety",
        argv=lambda fx: [
            "fit",
            "--config",
            fx.recipe(model={"init_from": str(fx.code_checkpoint)}),
            f"--trainer.default_root_dir={fx.tmp / 'runs'}",
        ],
    ),
    Case(
        id="init-from-missing",
        area="checkpoint",
        mistake="`init_from:` a folder that does not exist",
        expect=r"nothing at .*imported: give a model directory",
        argv=lambda fx: [
            "fit",
            "--config",
            fx.recipe(model={"init_from": str(fx.tmp / "imported")}),
            f"--trainer.default_root_dir={fx.tmp / 'runs'}",
        ],
    ),
    Case(
        id="load-runs-code",
        area="checkpoint",
        mistake="`SwapformerModule.load(path)` of a file whose loading would run code",
        expect=r"runs-code\.ckpt was refused for safety",
        raises=lambda fx: _load(fx.code_checkpoint),
    ),
    Case(
        id="load-with-the-wrong-module",
        area="checkpoint",
        mistake="`Seq2SeqModule.load` of a causal-LM checkpoint",
        expect=r"holds a causal_lm model, not one Seq2SeqModule trains: load it with SwapformerModule\.load",
        raises=lambda fx: _load(fx.causal_checkpoint, "Seq2SeqModule"),
    ),
]


def _safetensors(fx):
    import torch
    from safetensors.torch import save_file

    path = fx.tmp / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    return path


def _saved_folder(fx, **changes):
    """A model folder written by ``save_pretrained`` (config.json + model.safetensors, no tokenizer)."""
    import swapformer

    config = dict(vocab_size=40, d_model=16, num_heads=2, num_layers=1, **changes)
    return swapformer.build_causal_lm(config).save_pretrained(fx.tmp / "saved")


CASES += [
    Case(
        id="generate-model-folder-without-tokenizer",
        area="checkpoint",
        mistake="`swapformer generate` of a model folder written by `save_pretrained` (no tokenizer.json)",
        expect=r"saved holds no tokenizer: give a \.ckpt of swapformer fit, or a model folder with its "
        r"tokenizer\.json",
        argv=lambda fx: _generate(_saved_folder(fx)),
    ),
    Case(
        id="export-hf-without-equivalent",
        area="checkpoint",
        mistake="`swapformer export --format hf` of a model with a component no Hugging Face family has",
        expect=r"positional 'alibi' .*has no GPT-2 equivalent, so this model cannot be exported to Hugging Face",
        argv=lambda fx: [
            "export",
            "--ckpt_path",
            _saved_folder(fx, positional="alibi"),
            "--out",
            "hf",
            "--format",
            "hf",
        ],
    ),
]


def _sharded_missing_one(fx):
    """The tiny causal checkpoint as FSDP2 lays it out (tensors in torch.distributed.checkpoint shards, the rest
    in meta.pt), one shard per tensor, then one shard deleted (a copy that lost a file)."""
    import torch
    import torch.distributed.checkpoint as dcp

    checkpoint = torch.load(fx.causal_checkpoint, map_location="cpu", weights_only=True)
    folder = fx.tmp / "last.ckpt"
    writer = dcp.FileSystemWriter(folder, single_file_per_rank=False)
    dcp.save({"state_dict": checkpoint.pop("state_dict")}, storage_writer=writer, no_dist=True)
    checkpoint.pop("optimizer_states")
    torch.save(checkpoint, folder / "meta.pt")
    (folder / "__0_1.distcp").unlink()
    return folder


CASES += [
    Case(
        id="fit-checkpoint-folder-missing-shard",
        area="checkpoint",
        mistake="`swapformer fit --ckpt_path` of an FSDP2 checkpoint folder that lost one of its shards",
        expect=r"last\.ckpt is missing the shard __0_1\.distcp \(\d+ of the \d+ shards its \.metadata names",
        argv=lambda fx: ["fit", "--config", fx.recipe(), "--ckpt_path", _sharded_missing_one(fx)],
    ),
    Case(
        id="export-checkpoint-folder-missing-shard",
        area="checkpoint",
        mistake="`swapformer export` of an FSDP2 checkpoint folder that lost one of its shards",
        expect=r"last\.ckpt is missing the shard __0_1\.distcp",
        argv=lambda fx: ["export", "--ckpt_path", _sharded_missing_one(fx), "--out", "exported"],
    ),
]
