"""Every output path the docs and ``--help`` name is one a run writes: the recipes run (tiny sizes, a scratch
folder, otherwise as bundled) and each ``runs/<recipe>/...`` path in README.md, docs/*.md and the verbs' help
must exist afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swapformer.cli import main

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIPPED = {
    "bad-inputs.md",
    "wandb.md",
}  # fixtures' paths; the W&B logger's layout (tests/lightning: W&B offline)
TINY = {
    "stdlib-tiny": [
        "--model.init_args.d_model=32",
        "--model.init_args.num_layers=1",
        "--model.init_args.d_ff=64",
        "--data.init_args.max_chars=20000",
        "--data.init_args.seq_len=16",
        "--data.init_args.batch_size=4",
    ],
    "dates": [
        "--model.init_args.d_model=32",
        "--model.init_args.num_encoder_layers=1",
        "--model.init_args.num_decoder_layers=1",
        "--model.init_args.d_ff=64",
        "--data.init_args.num_train=64",
        "--data.init_args.num_val=16",
    ],
}
COMMON = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false"]  # fmt: skip


def named_paths(recipe: str, capsys) -> dict[str, list[str]]:
    """Each ``runs/<recipe>/...`` path the pages and the verbs' ``--help`` name, with where it is named."""
    texts = {page.name: page.read_text() for page in PAGES if page.name not in SKIPPED}
    for verb in ("generate", "evaluate", "export"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        texts[f"{verb} --help"] = capsys.readouterr().out
    found: dict[str, list[str]] = {}
    for where, text in texts.items():
        for path in re.findall(rf"runs/{re.escape(recipe)}/[^\s`'\")\],]*", text):
            found.setdefault(path.rstrip(".:;"), []).append(where)
    return found


@pytest.mark.parametrize("recipe", sorted(TINY))
def test_every_output_path_the_docs_name_is_written_by_the_recipe(recipe, tmp_path, monkeypatch, capsys):
    named = named_paths(recipe, capsys)
    assert named, f"no page names an output of {recipe}"
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", recipe, *TINY[recipe], *COMMON])
    missing = {path: where for path, where in named.items() if not (tmp_path / path).exists()}
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert not missing, f"named but not written: {missing}; the run wrote {written}"
