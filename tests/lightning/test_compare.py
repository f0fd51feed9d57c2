"""``swapformer compare``: a 2x2 grid of tiny runs over two seeds end to end (table, per-run configs, spread and
p-values, plots), the rerun that trains nothing, a grown grid that trains only its new variants, a failing
variant in its own process, the emitted sweep and sbatch files (each run as its job would run it), bad input."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml
from lightning_testlib import CAUSAL_TINY
from scipy import stats

from swapformer.cli import main
from swapformer.cli.compare import full_key, split_values

TINY = [
    *CAUSAL_TINY,
    "--trainer.max_steps=4",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=2",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.callbacks=[]",  # no samples: the figures are what is tested
    "--checkpoint.every_n_train_steps=2",
    "--checkpoint.save_top_k=-1",  # step=2.ckpt stays: the resume test stands a killed run on it
]
GRID = ["--vary", "model.positional=rope,alibi", "--vary", "model.init_args.norm=layernorm,rmsnorm"]
VARIANTS = [
    "positional=rope,norm=layernorm",
    "positional=rope,norm=rmsnorm",
    "positional=alibi,norm=layernorm",
    "positional=alibi,norm=rmsnorm",
]


def compare(*args: str) -> int:
    """``swapformer compare`` in-process; its exit code (0 when it returns)."""
    try:
        main(["compare", "--config", "stdlib-tiny", *args])
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def run_folders(out: Path) -> list[Path]:
    return sorted(p.parent.parent for p in out.glob("*/seed=*/logs/version_*"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory, monkeypatch_module):
    """The 2x2 grid over seeds 1 and 2 (8 tiny runs), made once for the tests that only read it."""
    root = tmp_path_factory.mktemp("compare")
    monkeypatch_module.chdir(root)
    monkeypatch_module.setenv("SWAPFORMER_CACHE_DIR", str(root / "cache"))
    out = root / "runs" / "compare" / "grid"
    assert compare(*GRID, "--seeds", "1,2", "--out", str(out), "--eval_lengths", "16,64", *TINY) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_grid_table_has_a_row_per_run_and_variant(grid):
    rows = read_csv(grid / "results.csv")
    assert list(rows[0])[:11] == [
        "variant",
        "seed",
        "status",
        "val_loss",
        "best_val_loss",
        "tokens_per_s",
        "params",
        "flops_per_token",
        "peak_memory_mb",
        "wall_s",
        "error",
    ]
    assert [(r["variant"], r["seed"]) for r in rows] == [(v, s) for v in VARIANTS for s in ("1", "2")]
    assert {r["status"] for r in rows} == {"finished"}
    for row in rows:
        assert float(row["best_val_loss"]) <= float(row["val_loss"]) < 5.0  # a char model starts near ln(92)
        assert float(row["tokens_per_s"]) > 0 and float(row["flops_per_token"]) > 0
        assert float(row["peak_memory_mb"]) > 0 and float(row["wall_s"]) > 0 and not row["error"]
        assert row["steps"] == "4" and row["tokens"] == str(4 * 4 * 16)  # 4 steps of 4 windows of 16 tokens
        # --eval_lengths: the final model scored at the training length and beyond it (rope and alibi extrapolate)
        assert float(row["val_loss@16"]) > 0 and float(row["val_loss@64"]) > 0
    # rope and alibi have no parameters, layernorm has a bias that rmsnorm has not (bias: false here)
    params = {r["variant"]: int(r["params"]) for r in rows}
    assert params[VARIANTS[0]] == params[VARIANTS[2]] and params[VARIANTS[1]] == params[VARIANTS[3]]

    table = (grid / "results.md").read_text()
    assert (
        "**Equal budget**: every run trained 4 steps on the same 256 tokens in the same order (data seed 1234)"
        in table
    )
    assert "| val loss @16 | val loss @64 |" in table
    lines = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(lines) == 4
    by_variant = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        by_variant[cells[0].strip("`")] = cells
    means = [statistics.fmean(float(r["val_loss"]) for r in rows if r["variant"] == v) for v in by_variant]
    assert means == sorted(means), "the table is sorted by mean val loss"
    baseline = [float(r["val_loss"]) for r in rows if r["variant"] == VARIANTS[0]]
    assert by_variant[VARIANTS[0]][3] == "(baseline)"
    for variant in VARIANTS[1:]:
        losses = [float(r["val_loss"]) for r in rows if r["variant"] == variant]
        cells = by_variant[variant]
        assert cells[1] == "2"
        # mean ± std over the two seeds: the seeds spread
        assert statistics.stdev(losses) > 0
        assert cells[2] == f"{statistics.fmean(losses):.4f} ± {statistics.stdev(losses):.4f}"
        assert cells[3] == f"{statistics.fmean(losses) - statistics.fmean(baseline):+.4f}"
        p_value = stats.ttest_ind(losses, baseline, equal_var=False).pvalue
        assert cells[4] == f"{p_value:.3g}" and 0 < p_value <= 1


def test_grid_plots_are_drawn(grid):
    for name in ("curves.png", "throughput.png"):
        assert (grid / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_run_is_an_ordinary_fit_of_its_variant(grid):
    folders = run_folders(grid)
    assert [f"{p.parent.name}/{p.name}" for p in folders] == sorted(
        f"{v}/seed={s}" for v in VARIANTS for s in (1, 2)
    )
    for folder in folders:
        config = yaml.safe_load((folder / "logs" / "version_0" / "config.yaml").read_text())
        positional, norm = re.fullmatch(r"positional=(\w+),norm=(\w+)", folder.parent.name).groups()
        assert config["model"]["init_args"]["positional"] == positional
        assert config["model"]["init_args"]["norm"] == norm
        assert config["seed_everything"] == int(folder.name.removeprefix("seed="))
        # the equal budget: one data seed, the same steps and evaluation in every run
        assert config["data"]["init_args"]["seed"] == 1234
        assert config["trainer"]["max_steps"] == 4 and config["trainer"]["limit_val_batches"] == 2
        assert (folder / "logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
        summary = json.loads((folder / "run_summary.json").read_text())
        assert summary["variant"] == folder.parent.name and summary["status"] == "finished"
        assert [p["step"] for p in summary["curve"] if "val_loss" in p] == [2, 4]
        # the training curve is the loss the logger wrote for each step (its step count starts at 0)
        logged = [r for r in read_csv(folder / "logs" / "version_0" / "metrics.csv") if r["train/loss"]]
        train = [(p["step"], p["tokens"], p["train_loss"]) for p in summary["curve"] if "train_loss" in p]
        assert train == [
            (int(r["step"]) + 1, 64 * (int(r["step"]) + 1), float(r["train/loss"])) for r in logged
        ]


def test_rerun_trains_nothing(grid, capsys):
    before = {p: p.stat().st_mtime_ns for p in grid.glob("*/seed=*/run_summary.json")}
    capsys.readouterr()
    assert compare(*GRID, "--seeds", "1,2", "--out", str(grid), *TINY) == 0
    out = capsys.readouterr().out
    assert "8 runs, 8 finished or refused earlier, 0 to train" in out
    assert {p: p.stat().st_mtime_ns for p in grid.glob("*/seed=*/run_summary.json")} == before
    assert not list(grid.glob("*/seed=*/logs/version_1"))


def test_an_unfinished_run_resumes_from_its_last_checkpoint(grid, tmp_path, capsys):
    """A run killed after its step-2 checkpoint (no summary, last.ckpt at step 2) trains steps 3 and 4 only,
    in a new version folder, and ends where the uninterrupted run ended."""
    out = tmp_path / "resumed"
    shutil.copytree(grid, out)
    run = out / VARIANTS[3] / "seed=1"
    finished = json.loads((run / "run_summary.json").read_text())
    checkpoints = run / "logs" / "version_0" / "checkpoints"
    (run / "run_summary.json").unlink()
    (checkpoints / "step=4.ckpt").unlink()
    shutil.copyfile(checkpoints / "step=2.ckpt", checkpoints / "last.ckpt")
    capsys.readouterr()
    assert compare(*GRID, "--seeds", "1,2", "--out", str(out), *TINY) == 0
    assert f"[1/1] {VARIANTS[3]} seed=1 (resume)" in capsys.readouterr().out
    resumed = json.loads((run / "run_summary.json").read_text())
    assert (run / "logs" / "version_1").is_dir()
    assert (
        resumed["step"] == 4 and resumed["tokens"] == finished["tokens"]
    )  # the curve came with the checkpoint
    assert [p["step"] for p in resumed["curve"] if "val_loss" in p] == [2, 4]
    assert resumed["val_loss"] == pytest.approx(finished["val_loss"], abs=1e-4)


def test_a_grown_grid_trains_only_its_new_variants(grid, tmp_path, capsys):
    out = tmp_path / "grown"
    shutil.copytree(grid, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed=*/run_summary.json")}
    capsys.readouterr()
    grown = ["--vary", "model.positional=rope,alibi,nope", "--vary", "model.norm=layernorm,rmsnorm"]
    assert compare(*grown, "--seeds", "1", "--out", str(out), *TINY) == 0
    assert "6 runs, 4 finished or refused earlier, 2 to train" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    new = sorted(p.parent.name + "/" + p.name for p in run_folders(out) if "nope" in p.parent.name)
    assert new == [f"positional=nope,norm={n}/seed=1" for n in ("layernorm", "rmsnorm")]
    assert len(read_csv(out / "results.csv")) == 10  # the table holds every run of the folder


def test_a_failing_variant_gets_its_row_and_the_others_run(tmp_path, monkeypatch, capsys):
    """lr=1e12 passes every check and diverges at its first step; both runs go in their own process."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "lr"
    code = compare("--vary", "model.lr=2.0e-3,1e12", "--out", str(out), "--jobs", "2", *TINY)
    assert code == 1
    err = capsys.readouterr().err
    assert "swapformer compare: 1 run(s) failed: lr=1e12 (seed 1234)" in err
    rows = {r["variant"]: r for r in read_csv(out / "results.csv")}
    assert rows["lr=0.002"]["status"] == "finished" and float(rows["lr=0.002"]["val_loss"]) > 0
    failed = rows["lr=1e12"]
    assert failed["status"] == "failed" and not failed["val_loss"]
    assert (
        failed["error"].startswith("the training loss became nan at step 1") and "\n" not in failed["error"]
    )
    assert "`lr=1e12` seed 1234: the training loss became nan" in (out / "results.md").read_text()
    assert (out / "lr=1e12" / "seed=1234" / "compare.log").is_file()  # the run's own output


def test_a_refused_combination_is_a_row_not_a_bad_input(tmp_path, monkeypatch, capsys):
    """nope and learned both pass the check with the recipe's max_seq_len; learned with a table shorter than
    the data's windows is refused by fit's length check, in that variant only."""
    monkeypatch.chdir(tmp_path)
    code = compare(
        "--vary", "model.positional=rope,learned", "--vary", "model.max_seq_len=32,8", "--dry-run", *TINY
    )
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"positional=learned,max_seq_len=8 seed=1234 \[refused: .*seq_len=16 is longer", out)
    assert "positional=rope,max_seq_len=8 seed=1234 [new]" in out


def test_emitted_sweep_runs_one_variant_per_agent_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    assert compare(*GRID, "--seeds", "1,2", "--out", str(out), "--emit", "wandb-sweep", *TINY) == 0
    printed = capsys.readouterr().out
    assert f"wandb sweep {out / 'sweep.yaml'}" in printed and "wandb agent" in printed
    assert not run_folders(out), "nothing trains with --emit"
    sweep = yaml.safe_load((out / "sweep.yaml").read_text())
    assert sweep["method"] == "grid" and list(sweep["parameters"]) == ["config"]
    files = [Path(f) for f in sweep["parameters"]["config"]["values"]]
    assert [f.name for f in files] == [f"{v}.seed={s}.yaml" for v in VARIANTS for s in (1, 2)]
    command = sweep["command"]
    assert command[:3] == ["${env}", "swapformer", "fit"] and command[-1] == "${args}"
    assert "--trainer.max_steps=4" in command, "the command's overrides are every run's"
    # what a W&B agent runs for one point of the grid: ${args} is --config=<that point's file>
    point = files[2 * 3 + 1]  # the last variant, seed 2
    assert yaml.safe_load(point.read_text())["seed_everything"] == 2
    main([*command[2:-1], f"--config={point}"])
    assert [f"{p.parent.name}/{p.name}" for p in run_folders(out)] == [f"{VARIANTS[3]}/seed=2"]
    main(["compare", "--collect", str(out)])
    rows = read_csv(out / "results.csv")
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [(VARIANTS[3], "2", "finished")]
    # the agent's fit is the fit compare runs: same resolved config
    mine = yaml.safe_load(next((out / VARIANTS[3] / "seed=2").rglob("config.yaml")).read_text())
    shutil.rmtree(out / VARIANTS[3])
    one = ["--vary", "model.positional=alibi", "--vary", "model.init_args.norm=rmsnorm"]  # VARIANTS[3] alone
    assert compare(*one, "--seeds", "2", "--out", str(out), *TINY) == 0
    theirs = yaml.safe_load(next((out / VARIANTS[3] / "seed=2").rglob("config.yaml")).read_text())
    assert mine == theirs


def test_emitted_sbatch_array_runs_the_same_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "slurm"
    assert compare(*GRID, "--out", str(out), "--emit", "slurm", *TINY) == 0
    script = (out / "compare.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(out / "compare.sbatch")], check=False).returncode == 0
    assert "#SBATCH --array=0-3" in script
    tasks = re.findall(r"^  (\d+)\) exec swapformer (.*) ;;  # (.*) seed=(\d+)$", script, flags=re.M)
    assert [(t[0], t[2], t[3]) for t in tasks] == [(str(i), v, "1234") for i, v in enumerate(VARIANTS)]
    assert not run_folders(out), "nothing trains with --emit"
    # array task 1 as SLURM would run it (swapformer fit, resumable with --ckpt_path=last)
    argv = shlex.split(tasks[1][1])
    assert argv[0] == "fit" and "--model.init_args.norm=rmsnorm" in argv and "--ckpt_path=last" in argv
    main(argv)
    main(["compare", "--collect", str(out)])
    rows = read_csv(out / "results.csv")
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [(VARIANTS[1], "1234", "finished")]


def test_wandb_runs_join_one_group(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "compare-group-7f3a"
    assert compare("--config", "wandb", "--vary", "model.positional=rope", "--out", str(out), *TINY) == 0
    # offline, a run's settings are in its .wandb file (no config.yaml): the group and the run's name
    (run,) = out.glob("positional=rope/seed=1234/wandb/offline-run-*/run-*.wandb")
    assert b"compare-group-7f3a" in run.read_bytes() and b"positional=rope/seed=1234" in run.read_bytes()
    # the results table, logged by a run of its own (its .wandb file may still be written by W&B's service)
    (table,) = out.glob("wandb/offline-run-*/files/media/table/results_*.table.json")
    table = json.loads(table.read_text())
    assert table["columns"][:3] == ["variant", "seed", "status"]
    assert table["data"][0][:3] == ["positional=rope", 1234, "finished"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--vary", "model.positionl=rope,alibi"],
            r"--vary model\.positionl: .*did you mean '--model\.init_args\.positional'",
        ),
        (
            ["--vary", "model.positional=rope,rop"],
            r"--vary model\.positional=rop: .*unknown positional 'rop' \(did you mean 'rope'\?\)",
        ),
        (["--vary", "model.positional="], r"--vary model\.positional= has no values: the grid is empty"),
        (
            ["--vary", "model.positional=rope,alibi", "--seeds", "1,two"],
            r"--seeds '1,two': 'two' is not a whole number",
        ),
        (["--vary", "model.positional=rope", "--baseline", "alibi"], r"--baseline 'alibi' is not a variant"),
        ([], r"nothing to compare: give --vary"),
        (
            ["--vary", "model.positional=rope", "--seed_everything", "3"],
            r"--seed_everything is set by compare .*--seeds",
        ),
        (["--vary", "model.positional=rope", "--jobs", "0"], r"--jobs '0' is not a positive whole number"),
        (
            ["--vary", "model.positional=rope", "--jobs", "-1", "--dry-run"],
            r"--jobs '-1' is not a positive whole number",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-value",
        "empty-grid",
        "seeds",
        "baseline",
        "no-grid",
        "seed-override",
        "jobs",
        "jobs-dry-run",
    ],
)
def test_bad_input_is_one_line_before_anything_trains(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert compare(*args, *TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("swapformer compare: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()


def test_out_holding_another_recipes_comparison_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "shared"
    main(
        [
            "compare",
            "--config",
            "masked-stdlib-tiny",
            "--vary",
            "model.norm=layernorm",
            "--out",
            str(out),
            "--emit",
            "slurm",
        ]
    )
    assert compare("--vary", "model.norm=rmsnorm", "--out", str(out), *TINY) == 2
    err = capsys.readouterr().err
    assert re.search(
        rf"--out {re.escape(str(out))} holds a comparison of --config .*masked-stdlib-tiny", err
    ), err
    assert "give another --out" in err


def test_variants_file_and_value_parsing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert split_values("rope,{name: rope, base: 500}, [1, 2],'a,b'") == [
        "rope",
        "{name: rope, base: 500}",
        "[1, 2]",
        "'a,b'",
    ]
    assert (
        full_key("model.positional") == full_key("model.init_args.positional") == "model.init_args.positional"
    )
    assert full_key("trainer.max_steps") == "trainer.max_steps"
    variants = tmp_path / "v.yaml"
    variants.write_text(
        "base:\nrope-500k: {model.positional: {name: rope, base: 500000}}\nswiglu: {model.ffn: swiglu}\n"
    )
    assert compare("--variants", str(variants), "--baseline", "swiglu", "--dry-run", *TINY) == 0
    out = capsys.readouterr().out
    assert "(baseline swiglu)" in out
    assert (
        "rope-500k seed=1234 [new]" in out
        and '--model.init_args.positional={"name": "rope", "base": 500000}' in out
    )
    assert "swiglu seed=1234 [new]" in out and "--model.init_args.ffn=swiglu" in out
