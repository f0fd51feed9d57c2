"""Two nodes on one machine: the launch commands of docs/scale-out.md, run as a user would run them.

Two ``torchrun`` agents on loopback (``--nnodes 2 --node-rank R --master-addr 127.0.0.1``), one CPU process
each (gloo), run the ``swapformer fit`` line of ``recipes/slurm/multinode.sbatch`` (``trainer/fsdp2`` then
``trainer/multinode``, 2 nodes of 8 GPUs) with the user's overrides for a CPU (``--trainer.accelerator cpu
--trainer.devices 1``). Two nodes of one process must train as one node of two processes (the session's
``runs``): the same global batch, the same per-step loss within 1e-6 relative.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys

import pytest
import yaml
from lightning_testlib import RECIPES, REPO
from scaleout_testlib import fit_env, read_losses, write_config

from swapformer.cli.preflight import check_launcher, launched_processes
from swapformer.cli.recipes import find
from swapformer.errors import ConfigError

SBATCH = RECIPES / "slurm" / "multinode.sbatch"
CPU_NODE = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]  # one CPU process per "node"


def srun_fit_arguments() -> list[str]:
    """What every task of the sbatch script runs after ``srun swapformer fit`` (``"$RECIPE"`` and ``"$@"`` kept
    as written)."""
    (line,) = [line for line in SBATCH.read_text().splitlines() if line.startswith("srun ")]
    words = shlex.split(line)
    assert words[:3] == ["srun", "swapformer", "fit"], line
    return words[3:]


def test_sbatch_script_parses_and_asks_slurm_for_what_the_recipe_trains_on(monkeypatch):
    text = SBATCH.read_text()
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)  # the shell can parse it
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, flags=re.MULTILINE))
    args = srun_fit_arguments()
    configs = [args[i + 1] for i, word in enumerate(args) if word == "--config"]
    assert configs[0] == "$RECIPE" and configs[-1] == "trainer/multinode"
    for name in configs[1:]:  # bundled recipes, found as fit finds them
        assert find(name).is_file(), name
    trainer = yaml.safe_load((RECIPES / "trainer" / "multinode.yaml").read_text())["trainer"]
    # one task per GPU: SLURM's counts are the recipe's num_nodes x devices (fit refuses any other split)
    assert int(directives["nodes"]) == trainer["num_nodes"]
    assert int(directives["ntasks-per-node"]) == trainer["devices"] == int(directives["gpus-per-node"])
    # what srun tells each task of such a job passes fit's check of the recipe's counts
    tasks = int(directives["nodes"]) * int(directives["ntasks-per-node"])
    srun = {"SLURM_NTASKS": str(tasks), "SLURM_NNODES": directives["nodes"], "SLURM_JOB_NAME": "swapformer"}
    srun["SLURM_NTASKS_PER_NODE"] = f"{directives['ntasks-per-node']}(x{directives['nodes']})"
    for name, value in srun.items():
        monkeypatch.setenv(name, value)
    check_launcher(trainer)
    # requeue on preemption: SIGTERM ahead of the limit, SaveOnSignal's exit code, --ckpt_path last
    assert "requeue" in directives and directives["signal"].startswith("TERM@")
    assert args[args.index("--ckpt_path") + 1] == "last" and args[-1] == "$@"
    assert (
        f'if [ "$status" -eq {128 + signal.SIGTERM} ]' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    )
    # docs/scale-out.md shows the script as it is (its header comments aside)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("# "))
    assert f"```bash\n{body}\n```" in (REPO / "docs" / "scale-out.md").read_text()


def test_the_launchers_process_counts_and_the_one_line_for_a_mismatch(monkeypatch):
    srun = {
        "SLURM_NTASKS": "16",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "8(x2)",
        "SLURM_JOB_NAME": "job",
    }
    assert launched_processes(srun) == ("srun", 2, 8)
    assert launched_processes({**srun, "SLURM_JOB_NAME": "bash"}) is None  # an salloc shell, not srun's task
    torchrun = {"RANK": "3", "GROUP_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}
    assert launched_processes(torchrun) == ("torchrun", 2, 2)
    assert launched_processes({"WORLD_SIZE": "4"}) is None
    for name, value in torchrun.items():
        monkeypatch.setenv(name, value)
    check_launcher({"num_nodes": 2, "devices": 2})
    check_launcher({"num_nodes": 1, "devices": "0,1,2,3"})  # the product is what Lightning needs
    check_launcher({"num_nodes": 2, "devices": "auto"})  # Lightning counts the node's devices itself
    with pytest.raises(
        ConfigError,
        match=r"^trainer\.num_nodes=2 x trainer\.devices=8 = 16 processes, but torchrun started 4 \(2 nodes x 2\): "
        r"set --trainer\.num_nodes 2 --trainer\.devices 2, or launch 2 x 8$",
    ):
        check_launcher({"num_nodes": 2, "devices": 8})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_on_loopback_train_as_one_node_of_two_processes(runs, tmp_path):
    recipe = write_config(tmp_path)  # the tiny model, data and trainer of the runs compared with
    args = [str(recipe) if word == "$RECIPE" else word for word in srun_fit_arguments() if word != "$@"]
    port = _free_port()
    nodes = []
    with contextlib.ExitStack() as logs:
        for rank in (0, 1):
            command = [
                *(sys.executable, "-m", "torch.distributed.run"),  # = torchrun
                *("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank)),
                *("--master-addr", "127.0.0.1", "--master-port", str(port)),
                *("-m", "swapformer", "fit", *args, *CPU_NODE),
            ]
            log = logs.enter_context(
                (tmp_path / f"node{rank}.log").open("w")
            )  # not a pipe: a full one stalls
            nodes.append(
                subprocess.Popen(
                    command, cwd=tmp_path, env=fit_env(), stdout=log, stderr=log, start_new_session=True
                )
            )
        try:
            codes = [node.wait(timeout=300) for node in nodes]
        finally:
            for node in nodes:
                if node.poll() is None:  # the agent and its worker: the session started for them
                    os.killpg(node.pid, signal.SIGKILL)
                    node.wait()
    output = [(tmp_path / f"node{rank}.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], "\n".join(out[-3000:] for out in output)
    assert (
        "no last*.ckpt below" in output[0] and "starting a new run" in output[0]
    )  # --ckpt_path last, first start
    assert "4 per process x 2 processes x 1 accumulated" in output[0]
    reference = read_losses(runs["fsdp2"][0])  # one node, two processes
    losses = read_losses(tmp_path)
    assert sorted(losses) == sorted(reference) == list(range(6))
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=1e-6), (step, loss, reference[step])
    shards = sorted(p.name for p in (tmp_path / "checkpoints" / "epoch=2.ckpt").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]  # one shard from each node
