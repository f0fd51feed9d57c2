"""Constants shared by the Lightning tests (imported by name: this folder has no __init__.py, on purpose,
so that it is never mistaken for the ``lightning`` package)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"

CAUSAL_TINY = [
    "--model.init_args.d_model=32",
    "--model.init_args.num_heads=4",
    "--model.init_args.num_layers=1",
    "--model.init_args.d_ff=64",
    "--model.init_args.max_seq_len=32",
    "--data.init_args.seq_len=16",
    "--data.init_args.batch_size=4",
    "--data.init_args.max_chars=20000",
    "--data.init_args.train_samples_per_epoch=8",
]
SEQ2SEQ_TINY = [
    "--model.init_args.d_model=32",
    "--model.init_args.num_heads=4",
    "--model.init_args.num_encoder_layers=1",
    "--model.init_args.num_decoder_layers=1",
    "--model.init_args.d_ff=64",
    "--model.init_args.max_seq_len=160",
    "--model.init_args.max_decode_len=8",
    "--data.init_args.batch_size=4",
]
