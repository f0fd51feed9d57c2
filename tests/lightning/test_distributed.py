"""Scale out: 2 CPU processes (gloo) under DDP and FSDP2 against one process with the same global batch.

The multi-process fits run ``python -m swapformer fit`` in subprocesses with a timeout (DDP inside pytest would
re-run the test session in its children). One process accumulates 2 micro-batches of 4 windows; two processes
read 4 windows each and accumulate 1: both steps see the same 8 windows (``global_batch_tokens: 256``), so the
per-step ``train/loss`` (mean over the global batch) must agree. Tolerance: 1e-5 relative; measured here, the
largest gap over 6 steps is 2.3e-7 (the summation order of the gradient all-reduce).

The quick tests check the pieces on one process: the accumulation rule, activation checkpointing, compile,
meta-device initialization, and FSDP1's wrap policy (FSDP1 refuses CPUs, so its policy is built, not run).
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning_testlib import RECIPES
from scaleout_testlib import TWO_CPUS, assert_same_trajectory, fit, read_losses, read_probe
from torch import nn
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

import swapformer
from swapformer.cli import main
from swapformer.errors import ConfigError
from swapformer.models import build_causal_lm
from swapformer.tasks import CausalLMModule
from swapformer.training import BlockFSDPStrategy, FSDP2Strategy, distributed

TINY = {"vocab_size": 50, "d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 64, "max_seq_len": 16}


# ---- one process ---------------------------------------------------------------------------------------
def test_accumulation_steps_rule_and_error():
    rule = distributed.accumulation_steps
    assert rule(global_batch_tokens=65536, batch_size=8, seq_len=1024, data_parallel=1) == 8
    assert rule(global_batch_tokens=65536, batch_size=8, seq_len=1024, data_parallel=8) == 1
    with pytest.raises(
        ConfigError, match=r"global_batch_tokens=65536 is not a multiple .* 8 x 1024 x 16 = 131072"
    ):
        rule(global_batch_tokens=65536, batch_size=8, seq_len=1024, data_parallel=16)
    with pytest.raises(ConfigError, match=r"set global_batch_tokens to 6144 or 9216"):
        rule(global_batch_tokens=7000, batch_size=3, seq_len=1024, data_parallel=1)
    with pytest.raises(ConfigError, match=r"global_batch_tokens=0 must be a positive integer"):
        rule(global_batch_tokens=0, batch_size=3, seq_len=1024, data_parallel=1)


def _twins(**options) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = build_causal_lm({**TINY, **options})
    other = build_causal_lm({**TINY, **options})
    other.load_state_dict(reference.state_dict())
    return reference, other


def _loss_and_grads(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(1)  # same dropout masks
    loss = model(ids).logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


def test_checkpoint_blocks_gives_the_same_gradients_and_state_dict_keys():
    reference, checkpointed = _twins(dropout=0.1)
    assert distributed.checkpoint_blocks(checkpointed) == 2
    assert distributed.checkpoint_blocks(checkpointed) == 0  # idempotent
    assert {type(b).__name__ for b in distributed.blocks(checkpointed)} == {"CheckpointWrapper"}
    ids = torch.randint(50, (2, 16))
    loss, grads = _loss_and_grads(reference, ids)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed, ids)
    torch.testing.assert_close(
        loss_ckpt, loss, rtol=0, atol=0
    )  # recomputation replays the RNG: bitwise equal
    for g, g_ckpt in zip(grads, grads_ckpt):
        torch.testing.assert_close(g_ckpt, g, rtol=0, atol=0)
    assert list(checkpointed.state_dict()) == list(reference.state_dict())  # checkpoints stay compatible
    checkpointed.load_state_dict(reference.state_dict())


def test_compile_blocks_matches_eager_and_keeps_state_dict_keys():
    reference, compiled = _twins(dropout=0.0)
    assert distributed.compile_blocks(compiled, {"backend": "aot_eager"}) == 2  # inductor would need minutes
    assert distributed.compile_blocks(compiled) == 0
    ids = torch.randint(50, (2, 16))
    loss, grads = _loss_and_grads(reference, ids)
    loss_compiled, grads_compiled = _loss_and_grads(compiled, ids)
    torch.testing.assert_close(loss_compiled, loss, rtol=1e-6, atol=1e-6)
    for g, g_compiled in zip(grads, grads_compiled):
        torch.testing.assert_close(g_compiled, g, rtol=1e-5, atol=1e-6)
    assert list(compiled.state_dict()) == list(reference.state_dict())


def test_module_options_are_applied_once_in_configure_model():
    module = CausalLMModule(**TINY, activation_checkpointing=True, compile={"backend": "eager"})
    keys = list(module.state_dict())
    module.configure_model()  # as load_from_checkpoint calls it: no trainer, training options wait
    assert {type(b).__name__ for b in distributed.blocks(module.model)} == {"TransformerLayer"}
    module.trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    module.configure_model()
    module.configure_model()  # Lightning calls it again for validate/test: nothing is wrapped twice
    blocks = distributed.blocks(module.model)
    assert {type(b).__name__ for b in blocks} == {"CheckpointWrapper"}
    assert all(b._compiled_call_impl is not None for b in blocks)
    assert list(module.state_dict()) == keys
    assert module.hparams.compile == {"backend": "eager"} and module.hparams.activation_checkpointing


def test_meta_init_allocates_in_configure_model_keeps_tie_and_buffers():
    module = CausalLMModule(**TINY, positional="rope", meta_init=True)
    model = module.model
    assert all(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())  # RoPE tables are computed for real
    assert model.lm_head.weight is model.embedding.token.weight
    module.configure_model()
    assert not any(p.is_meta for p in model.parameters())
    assert model.lm_head.weight is model.embedding.token.weight
    fresh = build_causal_lm({**TINY, "positional": "rope"})
    for (name, buffer), (_, fresh_buffer) in zip(model.named_buffers(), fresh.named_buffers()):
        assert torch.equal(buffer, fresh_buffer), name
    for (name, param), (_, fresh_param) in zip(model.named_parameters(), fresh.named_parameters()):
        # same initialization law as the builder (not the same draws): norms ones/zeros, weights N(0, 0.02)
        if param.ndim == 1:
            assert torch.equal(param, fresh_param), name
        else:
            assert param.std().item() == pytest.approx(fresh_param.std().item(), rel=0.35), name
    loss = module.model(torch.randint(50, (2, 16))).logsumexp(-1).mean()
    assert torch.isfinite(loss)


def test_meta_init_refuses_parameters_it_cannot_initialize():
    class Gain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    with pytest.raises(ConfigError, match=r"meta_init=True needs .*reset_parameters\(\); Gain do not"):
        distributed.check_meta_initializable(nn.Sequential(nn.Linear(3, 3), Gain()))


def test_fsdp1_policy_wraps_blocks_and_keeps_tied_embedding_in_the_root():
    """FSDPStrategy refuses CPUs: the policy is built and applied to the module tree, not run."""
    strategy = BlockFSDPStrategy(activation_checkpointing=True)
    model = build_causal_lm(TINY)
    policy = strategy.kwargs["auto_wrap_policy"]
    wrapped = set(policy._run_policy(model, ignored_modules=set(), root_kwargs={}))
    assert wrapped == set(model.decoder.layers)  # one unit per block; the rest stays in FSDP's root unit
    assert model.embedding.token not in wrapped and model.lm_head not in wrapped
    checkpointed = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]
    assert set(checkpointed._run_policy(model, ignored_modules=set(), root_kwargs={})) == wrapped
    assert strategy.kwargs["use_orig_params"]  # a tied Parameter stays one Parameter


def test_fsdp2_strategy_refuses_tensor_parallel():
    with pytest.raises(ConfigError, match=r"tensor_parallel_size=2: .* set tensor_parallel_size: 1"):
        FSDP2Strategy(tensor_parallel_size=2)


# ---- two processes (the session's ``runs``, conftest.py) -------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_follow_the_one_process_loss_trajectory(runs, strategy):
    reference = read_losses(runs["single"][0])
    losses = read_losses(runs[strategy][0])
    assert sorted(losses) == sorted(reference) == list(range(6))
    assert_same_trajectory(losses, reference)
    assert losses[5] < losses[0]


@pytest.mark.slow
def test_accumulation_adjusts_to_the_device_count_and_is_logged(runs):
    single_root, single_out = runs["single"]
    ddp_root, ddp_out = runs["ddp"]
    assert (
        "global batch: 256 tokens = 8 sequences of 32 = 4 per process x 1 processes x 2 accumulated"
        in single_out
    )
    line = "global batch: 256 tokens = 8 sequences of 32 = 4 per process x 2 processes x 1 accumulated"
    assert ddp_out.count(line) == 1  # printed by rank 0 only
    for root, accumulate in ((single_root, 2), (ddp_root, 1)):
        (hparams,) = (root / "logs").glob("version_*/hparams.yaml")
        logged = yaml.safe_load(hparams.read_text())["global_batch"]
        assert logged["accumulate_grad_batches"] == accumulate and logged["tokens"] == 256
        assert read_probe(root, 0, "end")["accumulate_grad_batches"] == accumulate


@pytest.mark.slow
def test_fsdp2_keeps_tied_embeddings_one_parameter(runs):
    root = runs["fsdp2"][0]
    for rank in (0, 1):
        for hook in ("start", "end"):  # after 6 optimizer steps, too
            probe = read_probe(root, rank, hook)
            assert probe["parameter_type"] == "DTensor"  # really sharded...
            assert probe["same_parameter"] and probe["equal_in_full"]  # ...and still one tensor
        assert probe["block_types"] == ["FSDPTransformerLayer"]


@pytest.mark.slow
def test_logs_and_checkpoints_are_written_once(runs):
    ddp_root = runs["ddp"][0]
    assert len(list((ddp_root / "wandb").glob("offline-run-*"))) == 1
    assert len(list((ddp_root / "logs").glob("version_*"))) == 1
    assert sorted(p.name for p in (ddp_root / "checkpoints").iterdir()) == [
        f"epoch={e}.ckpt" for e in range(3)
    ]
    fsdp2_checkpoints = runs["fsdp2"][0] / "checkpoints"
    assert sorted(p.name for p in fsdp2_checkpoints.iterdir()) == [f"epoch={e}.ckpt" for e in range(3)]
    for folder in fsdp2_checkpoints.iterdir():  # a distributed checkpoint: one shard per rank, one metadata
        assert sorted(p.name for p in folder.iterdir()) == [
            ".metadata",
            "__0_0.distcp",
            "__1_0.distcp",
            "meta.pt",
        ]


@pytest.mark.slow
def test_checkpoints_resume_across_strategies_and_world_sizes(runs, tmp_path):
    """Resume and land on the uninterrupted one-process run's losses, whatever wrote the checkpoint and however
    many processes read it: after epoch 0 (steps 2-5 follow) or in the middle of epoch 1 (after step 3: steps
    3-5). FSDP2's folder of 2 shards is read as it is (no consolidation) by 1 process, DDP and FSDP2 on 1
    process. The global batch is 256 tokens everywhere, so every step must match: weights, AdamW moments,
    schedule and the data position (half of epoch 1 read) all come through a change of world size."""
    reference = read_losses(runs["single"][0])
    ddp, fsdp2 = str(RECIPES / "trainer" / "ddp.yaml"), str(RECIPES / "trainer" / "fsdp2.yaml")
    one_cpu = ["--trainer.accelerator=cpu", "--trainer.devices=1"]
    cases = {  # name: (the run that saved, its checkpoint, where the resumed run trains)
        "ddp->single": ("ddp", "checkpoints/epoch=0.ckpt", ()),
        "fsdp2->single": ("fsdp2", "steps/step=3.ckpt", ()),
        "fsdp2->ddp": ("fsdp2", "steps/step=3.ckpt", ("--config", ddp, *TWO_CPUS)),
        "fsdp2->fsdp2-one-process": ("fsdp2", "checkpoints/epoch=0.ckpt", ("--config", fsdp2, *one_cpu)),
        "single->ddp": ("single", "steps/step=3.ckpt", ("--config", ddp, *TWO_CPUS)),
        "ddp->fsdp2": ("ddp", "steps/step=3.ckpt", ("--config", fsdp2, *TWO_CPUS)),
    }
    for name, (run, checkpoint, args) in cases.items():
        root = tmp_path / name.replace(">", "")
        out = fit(root, *args, "--ckpt_path", str(runs[run][0] / checkpoint))
        assert "Restoring states from the checkpoint" in out, name
        losses = read_losses(root)
        first = 2 if "epoch=0" in checkpoint else 3
        assert sorted(losses) == list(range(first, 6)), (name, losses)
        assert_same_trajectory(losses, reference)


@pytest.mark.slow
def test_fsdp2_meta_init_checkpointing_and_decoding_between_steps(tmp_path):
    """meta_init + activation checkpointing under FSDP2; then validation with samples that only rank 0
    generates, and training again: without gathering the parameters for decoding (and resetting FSDP2's
    forward-order record afterwards) the ranks wait on each other forever."""
    fsdp2 = str(RECIPES / "trainer" / "fsdp2.yaml")
    out = fit(tmp_path, "--config", fsdp2, *TWO_CPUS, "--trainer.max_epochs=2", meta_init=True, sample=True)
    for rank in (0, 1):
        probe = read_probe(tmp_path, rank, "start")
        assert probe["meta_tensors"] == 0 and probe["parameter_type"] == "DTensor"
        assert probe["same_parameter"] and probe["equal_in_full"]
        assert probe["buffers_equal_fresh"]  # RoPE tables were kept, not left empty
        assert probe["shards_differ"]  # each rank drew its own shard, not a copy of rank 0's
        assert probe["norm_weight_mean"] == 1.0
        assert probe["block_types"] == ["FSDPCheckpointWrapper"]  # checkpointed, then sharded
        assert (
            read_probe(tmp_path, rank, "end")["parameter_type"] == "DTensor"
        )  # sharded again after decoding
    assert out.count("samples at step 2:") == 1 and out.count("samples at step 4:") == 1
    losses = read_losses(tmp_path)
    assert sorted(losses) == [0, 1, 2, 3] and all(0 < v < 10 for v in losses.values())


@pytest.mark.slow
def test_fsdp2_samples_after_a_last_step_without_validation(tmp_path):
    """Training ends at step 6 with no validation after it, so SampleCallback prints from on_train_end: every
    rank gathers the parameters for rank 0's decoding (else the run waits forever and the timeout fails it)."""
    fsdp2 = str(RECIPES / "trainer" / "fsdp2.yaml")
    out = fit(
        tmp_path,
        "--config",
        fsdp2,
        *TWO_CPUS,
        "--trainer.max_epochs=3",
        "--trainer.check_val_every_n_epoch=2",
        sample=True,
        timeout=180,
    )
    assert out.count("samples at step 4:") == 1  # after the validation of epoch 2
    assert out.count("samples at step 6:") == 1  # from on_train_end


@pytest.mark.slow
def test_export_reads_a_sharded_folder_and_the_files_of_one_process_and_ddp(runs, tmp_path):
    """``swapformer export`` of each run's last checkpoint: FSDP2's folder of 2 shards is read in this process,
    with the weights torch's own converter (``dcp_to_torch_save``) finds in the shards; the three runs trained
    the same 6 steps, so their exported models agree too."""
    folder = runs["fsdp2"][0] / "checkpoints" / "epoch=2.ckpt"
    dcp_to_torch_save(folder, tmp_path / "torch.pt")
    state = torch.load(tmp_path / "torch.pt", weights_only=True)["state_dict"]
    reference = {name.removeprefix("model."): tensor for name, tensor in state.items()}
    exported = {}
    for run in ("fsdp2", "ddp", "single"):
        main(
            [
                "export",
                "--ckpt_path",
                str(runs[run][0] / "checkpoints" / "epoch=2.ckpt"),
                "--out",
                str(tmp_path / run),
            ]
        )
        exported[run] = swapformer.load(tmp_path / run).state_dict()
    assert exported["fsdp2"].keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(exported["fsdp2"][name], tensor, rtol=0, atol=0)
        for run in ("ddp", "single"):
            torch.testing.assert_close(exported[run][name], tensor, rtol=1e-4, atol=1e-6)
