"""A new user's path: the wheel, installed into an empty virtual environment, trains from a bundled recipe by
name in an empty folder, and writes nothing outside ``trainer.default_root_dir``.

Offline: the wheel is built without build isolation and installed without dependencies or an index; the
already-installed dependencies (torch, lightning, ...) are made visible through a ``.pth`` file, which adds the
system site-packages to ``sys.path`` after the venv's own (the wheel's swapformer comes first).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--model.init_args.d_model=32",
    "--model.init_args.num_layers=1",
    "--model.init_args.d_ff=64",
    "--model.init_args.max_seq_len=32",
    "--data.init_args.seq_len=16",
    "--data.init_args.batch_size=4",
    "--data.init_args.max_chars=20000",
    "--data.init_args.train_samples_per_epoch=8",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
]


def _run(command: list, cwd: Path, env: dict) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """The virtual environment's bin folder and a clean environment to run it in."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("src", "recipes"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    # no SWAPFORMER_CACHE_DIR (tests/conftest.py sets one): the run's own data cache must land under its root
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "SWAPFORMER_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(root / "home"), WANDB_MODE="offline", OMP_NUM_THREADS="1", PIP_NO_INDEX="1")
    (root / "home").mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", source],
        root,
        env,
    )
    (wheel,) = (root / "dist").glob("swapformer-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root, env)
    python = venv / "bin" / "python"
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], root, env)
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env
    ).strip()
    dependencies = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")])
    (Path(purelib) / "system-dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return venv / "bin", env


@pytest.mark.slow
def test_wheel_trains_from_a_bundled_recipe_and_writes_only_under_its_root(installed, tmp_path):
    bin_dir, env = installed
    home = Path(env["HOME"])
    before_home = sorted(home.rglob("*"))
    where = _run([bin_dir / "python", "-c", "import swapformer; print(swapformer.__file__)"], tmp_path, env)
    assert Path(where.strip()).is_relative_to(bin_dir.parent)  # the wheel's copy, not the checkout's

    listing = _run([bin_dir / "swapformer", "recipes"], tmp_path, env)
    bundled = sorted(
        p.relative_to(REPO / "recipes").with_suffix("").as_posix() for p in REPO.glob("recipes/*/*.yaml")
    )
    assert [
        line.split()[0] for line in listing.splitlines()
    ] == bundled  # every recipe made it into the wheel
    assert "import-hf" in _run([bin_dir / "swapformer", "--help"], tmp_path, env)

    work = tmp_path / "empty"
    work.mkdir()
    command = [bin_dir / "swapformer", "fit", "--config", "stdlib-tiny", "--trainer.default_root_dir", "out"]
    _run([*command, "--trainer.max_steps=2", "--checkpoint.every_n_train_steps=2", *TINY], work, env)
    assert [p.name for p in work.iterdir()] == ["out"]
    written = sorted(p.relative_to(work / "out").as_posix() for p in (work / "out").rglob("*") if p.is_file())
    cache = [path for path in written if path.startswith("cache/")]
    assert any(path.startswith("cache/corpora/") for path in cache), (
        written
    )  # the encoded corpus, under the root
    assert [path for path in written if not path.startswith("cache/")] == [
        "logs/version_0/checkpoints/last.ckpt",
        "logs/version_0/checkpoints/step=2.ckpt",
        "logs/version_0/config.yaml",
        "logs/version_0/hparams.yaml",
        "logs/version_0/metrics.csv",
        "tokenizer.swapformer.json",  # the run's fitted tokenizer, beside its versions
    ]
    # nor in the home folder, but for matplotlib's font cache (a library's, written on its first import)
    new = [p.relative_to(home).as_posix() for p in sorted(home.rglob("*")) if p not in before_home]
    assert not [p for p in new if "matplotlib" not in p and p not in (".cache", ".config")], new
