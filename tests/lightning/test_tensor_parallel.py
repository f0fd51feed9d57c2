"""Tensor parallelism (TP) and 2-D meshes on CPU with gloo, against one process and DDP.

Quick tests check the plans and refusals on one process. The slow ones start processes: the probe
(``tensor_parallel_probe.py``, 2 processes) holds TP=2's logits and gradients to one process's for a Llama-style
and a GPT-2-style model and for three models of the members that split themselves (ALiBi, T5's bias, q/k norms
per head and over the projection, MLA, a mixture of experts; 1e-5); ``recipes/trainer/tp.yaml`` on 2 CPUs trains the scale-out tests' 6 steps with
DDP's losses (1e-4; the same 8 windows per step, summed in another order); ``recipes/trainer/fsdp2-tp.yaml`` on
4 CPUs (a 2 x 2 mesh) trains, its loss falls, samples print after validation (every rank decodes: a TP forward
needs the whole group), and its folder of 4 shards resumes on one process and under DDP at the mesh's losses,
and exports.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
import yaml
from lightning_testlib import RECIPES
from scaleout_testlib import HERE, TWO_CPUS, fit, fit_env, read_losses, write_config
from torch import nn
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

import swapformer
from swapformer.cli import main
from swapformer.errors import ConfigError
from swapformer.training import TensorParallelStrategy, distributed
from swapformer.training.strategies import mesh_sizes

TINY = {"vocab_size": 50, "d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 64, "max_seq_len": 16}
LLAMA = {**TINY, "num_kv_heads": 2, "positional": "rope", "norm": "rmsnorm", "ffn": "swiglu", "bias": False}
GPT2 = {**TINY, "positional": "learned", "ffn": {"name": "gelu", "approximate": "tanh"}}


# ---- one process ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "ffn"),
    [(LLAMA, {"gate_proj": "colwise", "up_proj": "colwise", "down_proj": "rowwise"}),
     (GPT2, {"linear1": "colwise", "linear2": "rowwise"})],
)  # fmt: skip
def test_plan_splits_attention_by_heads_and_each_ffn_column_then_row(config, ffn):
    model = swapformer.build_causal_lm(config)
    attention = {"q_proj": "colwise", "k_proj": "colwise", "v_proj": "colwise", "out_proj": "rowwise"}
    expected = {}
    for layer in range(2):
        prefix = f"decoder.layers.{layer}"
        expected |= {f"{prefix}.self_attention.sublayer.{k}": v for k, v in attention.items()}
        expected |= {f"{prefix}.feed_forward.sublayer.{k}": v for k, v in ffn.items()}
    assert distributed.tensor_parallel_plan(model, 2) == expected
    # everything else stays whole: the embedding (tied to the LM head), norms, positional tables
    planned = {f"{path}.{name}" for path in expected for name in ("weight", "bias")}
    whole = [name for name, _ in model.named_parameters() if name not in planned]
    assert "embedding.token.weight" in whole and all("proj" not in n and "linear" not in n for n in whole)


def test_heads_that_tensor_parallelism_cannot_split_are_refused():
    with pytest.raises(
        ConfigError, match=r"tensor_parallel_size=4 does not divide num_kv_heads=2 .* one of \[1, 2\]"
    ):
        distributed.tensor_parallel_plan(swapformer.build_causal_lm(LLAMA), 4)
    with pytest.raises(
        ConfigError, match=r"tensor_parallel_size=8 does not divide num_heads=4 .* \[1, 2, 4\]"
    ):
        distributed.tensor_parallel_plan(swapformer.build_causal_lm(TINY), 8)
    for member, message in (
        ({"ffn": {"name": "moe", "experts": 6}}, r"moe: tensor_parallel_size=4 does not divide experts=6 .* \[1, 2, 3, 6\]"),
        ({"attention": "mla", "num_heads": 2, "d_model": 32}, r"mla: tensor_parallel_size=4 does not divide num_heads=2 .* \[1, 2\]"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=message) as e:
            distributed.tensor_parallel_plan(swapformer.build_causal_lm({**TINY, **member}), 4)
        assert "\n" not in str(e.value)
    for member in ("alibi", "t5_relative"):  # their own check, which a model's attention layers also make
        with pytest.raises(
            ConfigError, match=rf"{member}: tensor_parallel_size=3 does not divide num_heads=4"
        ):
            swapformer.family("positional").build(member, num_heads=4).tensor_parallel_plan(size=3)


@pytest.mark.parametrize("scope", ["head", "projection"])
def test_qk_norms_split_with_the_heads_they_norm(scope):
    from swapformer.components.tensor_parallel import PerHead, WholeWidth

    model = swapformer.build_causal_lm({**LLAMA, "qk_norm": "rmsnorm", "qk_norm_scope": scope})
    plan = distributed.tensor_parallel_plan(model, 2)
    style = PerHead if scope == "head" else WholeWidth
    for layer in range(2):
        prefix = f"decoder.layers.{layer}.self_attention.sublayer"
        assert isinstance(plan[f"{prefix}.q_norm"], style) and isinstance(plan[f"{prefix}.k_norm"], style)
        assert plan[f"{prefix}.q_proj"] == "colwise"
    assert distributed.tensor_parallel_plan(model, 1) == {  # TP 1: the projections' plan only, norms whole
        k: v for k, v in plan.items() if "_norm" not in k
    }


def test_members_splitting_themselves_declare_it_under_their_own_name_and_keep_their_submodules_plans():
    plan = distributed.tensor_parallel_plan(
        swapformer.build_causal_lm(
            {**TINY, "positional": "alibi", "ffn": {"name": "moe", "experts": 4, "shared_experts": 1}}
        ),
        2,
    )
    assert type(plan["positional"]).__name__ == "LocalHeads"  # the member itself (its slopes)
    ffn = "decoder.layers.0.feed_forward.sublayer"
    assert type(plan[ffn]).__name__ == "ExpertParallel"
    assert plan[f"{ffn}.shared.down_proj"] == "rowwise"  # its shared expert still split as an FFN
    assert f"{ffn}.router" not in plan  # the router runs whole on every rank
    mla = distributed.tensor_parallel_plan(swapformer.build_causal_lm({**TINY, "attention": "mla"}), 2)
    attention = "decoder.layers.0.self_attention.sublayer"
    assert {k.removeprefix(attention + "."): str(v) for k, v in mla.items() if k.startswith(attention)} == {
        "q_proj": "colwise", "kv_b_proj": "colwise", "out_proj": "rowwise", "rope_key": "replicated, gradient summed"
    }  # fmt: skip


class PlugInNorm(nn.Module):
    """A norm written without tensor parallelism in mind: it declares nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def test_a_member_that_declares_no_plan_is_refused_in_one_line_naming_it():
    model = swapformer.build_causal_lm(TINY)
    model.decoder.final_norm = PlugInNorm()
    with pytest.raises(
        ConfigError, match=r"PlugInNorm \(at decoder.final_norm\) declares no tensor_parallel_plan"
    ) as e:
        distributed.tensor_parallel_plan(model, 2)
    assert "\n" not in str(e.value)
    distributed.tensor_parallel_plan(swapformer.build_causal_lm(TINY), 1)  # TP 1 splits nothing: no refusal


def test_mesh_sizes_fill_auto_and_refuse_a_product_other_than_the_world_size():
    assert mesh_sizes("auto", "auto", world_size=4) == (1, 4)
    assert mesh_sizes("auto", 2, world_size=4) == (2, 2)
    assert mesh_sizes(1, "auto", world_size=2) == (1, 2)
    with pytest.raises(
        ConfigError,
        match=r"data_parallel_size=2 x tensor_parallel_size=3 .* 4 processes .* 1 x 4, 2 x 2, 4 x 1",
    ):
        mesh_sizes(2, 3, world_size=4)
    with pytest.raises(ConfigError, match=r"tensor_parallel_size=2 .* 3 processes"):
        mesh_sizes("auto", 2, world_size=3)
    TensorParallelStrategy(
        data_parallel_size=2, tensor_parallel_size=2
    )  # checked at setup, against the world


def test_clip_grad_norm_is_torchs_on_whole_tensors():
    torch.manual_seed(0)
    model, reference = nn.Linear(8, 4), nn.Linear(8, 4)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(3, 8)
    model(x).square().sum().backward(), reference(x).square().sum().backward()
    total = distributed.clip_grad_norm(model.parameters(), 0.1)
    torch.testing.assert_close(total, torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1))
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


# ---- several processes ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tp2_gives_one_process_logits_and_gradients_for_llama_gpt2_and_every_self_splitting_member():
    probe = HERE / "tensor_parallel_probe.py"
    done = subprocess.run(
        [sys.executable, str(probe), str(_free_port())],
        capture_output=True,
        text=True,
        env=fit_env(),
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


@pytest.mark.slow
def test_tp2_trains_six_steps_with_ddps_losses(runs, tmp_path):
    out = fit(
        tmp_path,
        "--config",
        str(RECIPES / "trainer" / "tp.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
    )
    assert "4 per process x 1 processes x 2 accumulated" in out  # a TP group reads one batch stream
    losses, reference = read_losses(tmp_path), read_losses(runs["ddp"][0])
    assert sorted(losses) == sorted(reference) == list(range(6))
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=1e-4), (step, loss, reference[step])
    assert (tmp_path / "checkpoints" / "epoch=2.ckpt").is_dir()  # one shard a rank


@pytest.mark.slow
def test_a_2x2_mesh_trains_and_its_checkpoint_resumes_on_one_process_and_exports(tmp_path):
    config = write_config(
        tmp_path, sample=True
    )  # validation, and samples printed by rank 0 (all ranks decode)
    recipe = yaml.safe_load(config.read_text())
    trainer = recipe["trainer"]
    # 6 steps, a checkpoint an epoch (4 processes writing one a step cost more)
    trainer["callbacks"] = [c for c in trainer["callbacks"] if "every_n_train_steps" not in str(c)]
    config.write_text(yaml.safe_dump(recipe))
    command = [
        sys.executable, "-m", "swapformer", "fit", "--config", str(config),
        "--config", str(RECIPES / "trainer" / "fsdp2-tp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=4",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=fit_env(), timeout=300, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "4 per process x 2 processes x 1 accumulated" in out  # 2 data-parallel ranks of 2 TP ranks each
    assert out.count("samples at step") == 3, out[-3000:]  # after each epoch's validation, no hang
    losses = read_losses(tmp_path)
    assert sorted(losses) == list(range(6)) and losses[3] < losses[0] - 0.1, losses
    folder = tmp_path / "checkpoints" / "epoch=1.ckpt"
    assert len(list(folder.glob("*.distcp"))) == 4  # a shard a process

    # the 2-D folder resumes on one process and under DDP (the same 256-token global batch): steps 4 and 5 land
    # on the mesh's own losses (TP sums its partial products in another order: 1e-4, as against DDP)
    ddp = ("--config", str(RECIPES / "trainer" / "ddp.yaml"), *TWO_CPUS)
    for name, args in {"one-process": (), "ddp": ddp}.items():  # and under DDP on 2 processes
        out = fit(tmp_path / name, *args, "--ckpt_path", str(folder))
        assert "Restoring states from the checkpoint" in out, name
        resumed = read_losses(tmp_path / name)
        assert sorted(resumed) == [4, 5], (name, resumed)
        for step, loss in resumed.items():
            assert loss == pytest.approx(losses[step], rel=1e-4), (name, step, loss, losses[step])

    # and swapformer export reads it in this process, with the weights torch's own converter finds in the shards
    last = tmp_path / "checkpoints" / "epoch=2.ckpt"
    dcp_to_torch_save(last, tmp_path / "torch.pt")
    state = torch.load(tmp_path / "torch.pt", weights_only=True)["state_dict"]
    main(["export", "--ckpt_path", str(last), "--out", str(tmp_path / "export")])
    exported = swapformer.load(tmp_path / "export").state_dict()
    assert exported.keys() == {name.removeprefix("model.") for name in state}
    for name, tensor in state.items():
        torch.testing.assert_close(exported[name.removeprefix("model.")], tensor, rtol=0, atol=0)


def test_components_matrix_shows_which_members_split_and_how():
    from swapformer.cli.components import format_tensor_parallel

    rows = {tuple(line.split(None, 3)) for line in format_tensor_parallel()[2:]}
    assert ("ffn", "swiglu", "yes", "gate_proj colwise, up_proj colwise, down_proj rowwise") in rows
    assert ("ffn", "gelu", "yes", "linear1 colwise, linear2 rowwise") in rows
    assert ("ffn", "moe", "yes", "experts split (expert parallel)") in rows
    assert ("positional", "alibi", "yes", "slopes of the local heads") in rows
    assert ("positional", "t5_relative", "yes", "table colwise") in rows
    assert all(row[2] == "yes" for row in rows), [row for row in rows if row[2] != "yes"]
    assert ("attention", "sdpa", "yes", "unsplit, on the local heads") in rows
