"""Training mistakes and accidents: resuming with another model, a diverging loss, a run stopped by a signal."""

from __future__ import annotations

import contextlib
import io
import os
import signal

import torch

from .harness import RECIPES, TINY_CAUSAL_DATA, TINY_CAUSAL_MODEL, Case, Fixtures

DIVERGING = [
    *("--model.init_args.lr", "1e30", "--model.init_args.schedule", "constant"),
    *("--trainer.max_steps", "4", "--trainer.max_epochs", "4", "--checkpoint.every_n_train_steps", "1"),
]


def _resume(*overrides: str):
    def argv(fx: Fixtures) -> list[str]:
        return ["fit", "--config", fx.recipe(), "--ckpt_path", fx.causal_checkpoint, *overrides]

    return argv


def _stopped_by(signum: int):
    """A 6-step fit that receives ``signum`` during its third step (sent by the run itself, so the step is the
    same every time); returns the line the run printed, after checking the checkpoint it names."""

    def shows(fx: Fixtures) -> str:
        import lightning.pytorch as pl
        from lightning.pytorch.callbacks import ModelCheckpoint

        from swapformer.data import CausalLMDataModule
        from swapformer.tasks import CausalLMModule
        from swapformer.training.signals import StoppedBySignal

        class SignalDuringStep(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == 2:
                    os.kill(os.getpid(), signum)

        pl.seed_everything(0)
        data = CausalLMDataModule(tokenizer="char", **TINY_CAUSAL_DATA, cache_dir=str(fx.tmp / "cache"))
        module = CausalLMModule(vocab_size=data.vocab_size, **TINY_CAUSAL_MODEL)
        checkpoints = ModelCheckpoint(dirpath=fx.tmp / "checkpoints", save_last=True)
        trainer = pl.Trainer(
            max_steps=6, accelerator="cpu", logger=False, callbacks=[SignalDuringStep(), checkpoints],
            limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False, default_root_dir=fx.tmp,
        )  # fmt: skip
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                trainer.fit(module, datamodule=data)
        except StoppedBySignal as stop:
            if stop.code != 128 + signum:
                raise AssertionError(f"exit code {stop.code}, expected {128 + signum}") from None
        else:
            raise AssertionError(f"the run ended normally after {signal.Signals(signum).name}")
        last = fx.tmp / "checkpoints" / "last.ckpt"
        if not last.is_file() or torch.load(last, weights_only=True, mmap=True)["global_step"] != 3:
            raise AssertionError(f"no checkpoint of step 3 at {last}:\n{out.getvalue()}")
        return next(line for line in out.getvalue().splitlines() if line.startswith("stopped by"))

    return shows


CASES = [
    Case(
        id="resume-with-another-d-model",
        area="training",
        mistake="`fit --ckpt_path` of a d_model 32 checkpoint with `--model.init_args.d_model 64`",
        expect=r"(?s)init_from.*model\.init_args\.d_model: the recipe has 64, the checkpoint has 32",
        argv=_resume("--model.init_args.d_model", "64"),
    ),
    Case(
        id="resume-with-more-layers",
        area="training",
        mistake="`fit --ckpt_path` of a 1-layer checkpoint with `--model.init_args.num_layers 2`",
        expect=r"(?s)drop the overrides.*model\.init_args\.num_layers: the recipe has 2, the checkpoint has 1",
        argv=_resume("--model.init_args.num_layers", "2"),
    ),
    Case(
        id="resume-with-another-attention",
        area="training",
        mistake="`fit --ckpt_path` of an sdpa checkpoint with `--model.init_args.attention linear` (same shapes)",
        expect=r"model\.init_args\.attention: the recipe has 'linear', the checkpoint has 'sdpa'",
        argv=_resume("--model.init_args.attention", "linear"),
    ),
    Case(
        id="resume-with-another-norm",
        area="training",
        mistake="`fit --ckpt_path` of a layernorm checkpoint with `--model.init_args.norm rmsnorm` (same shapes)",
        expect=r"model\.init_args\.norm: the recipe has 'rmsnorm', the checkpoint has 'layernorm'",
        argv=_resume("--model.init_args.norm", "rmsnorm"),
    ),
    Case(
        id="resume-with-another-task",
        area="training",
        mistake="`fit --ckpt_path` of a causal-LM checkpoint with `--model swapformer.tasks.MaskedLMModule`",
        expect=r"model\.init_args\.kind: the recipe has 'masked_lm', the checkpoint has 'causal_lm'",
        argv=_resume("--model", "swapformer.tasks.MaskedLMModule"),
    ),
    Case(
        id="loss-becomes-nan",
        area="training",
        mistake="a learning rate so high the loss diverges (`--model.init_args.lr 1e30`)",
        expect=r"training loss became nan at step 1 .*last checkpoint.*lr=1e\+30",
        argv=lambda fx: ["fit", "--config", fx.recipe(), *DIVERGING],
    ),
    Case(
        id="expert-load-every-negative",
        area="training",
        mistake="a negative period for the MoE expert-load picture (`--model.init_args.expert_load_every -1`)",
        expect=r"model\.init_args\.expert_load_every=-1 must be a whole number >= 0 \(0: no expert-load picture\)",
        argv=lambda fx: ["fit", "--config", fx.recipe(), "--model.init_args.expert_load_every", "-1"],
    ),
    Case(
        id="sigterm-mid-run",
        area="training",
        mistake="SIGTERM (preemption, `scancel`, `kill`) during a run",
        expect=r"stopped by SIGTERM at step 3; saved .*last\.ckpt; resume with --ckpt_path last",
        shows=_stopped_by(signal.SIGTERM),
    ),
    Case(
        id="ctrl-c-mid-run",
        area="training",
        mistake="Ctrl-C (SIGINT) during a run (a second Ctrl-C ends it at once)",
        expect=r"stopped by SIGINT at step 3; saved .*last\.ckpt; resume with --ckpt_path last",
        shows=_stopped_by(signal.SIGINT),
    ),
]


def _torchrun_two_processes(fx) -> str:
    """``torchrun --nproc-per-node 2`` of a recipe that asks for 1 device on 1 node: the line each rank prints."""
    import socket
    import subprocess
    import sys

    from .harness import REPO

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"),
        *("--master-addr", "127.0.0.1", "--master-port", str(port)),
        *("-m", "swapformer", "fit", "--config", str(fx.recipe()), "--trainer.devices", "1"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(command, cwd=fx.tmp, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("swapformer fit: error:")]
    # each rank refuses before anything is set up; torchrun stops the other worker once one has failed, so
    # under load the second may be stopped before it prints its line
    if done.returncode == 0 or not lines or len(set(lines)) != 1:
        raise AssertionError(f"exit code {done.returncode}, {len(lines)} error lines:\n{done.stderr[-3000:]}")
    return lines[0]


CASES += [
    Case(
        id="torchrun-processes-not-nodes-x-devices",
        area="training",
        mistake="`torchrun --nproc-per-node 2 -m swapformer fit` of a recipe with `devices: 1` (num_nodes x devices "
        "not the launcher's processes)",
        expect=r"trainer\.num_nodes=1 x trainer\.devices=1 = 1 process, but torchrun started 2 \(1 node x 2\): "
        r"set --trainer\.num_nodes 1 --trainer\.devices 2",
        shows=_torchrun_two_processes,
    ),
]


# ---- tensor parallelism: refused before any process starts -----------------------------------------------
def _fit_parallel(recipe: str, *options: str):
    def argv(fx: Fixtures) -> list[str]:
        trainer = str(RECIPES / "trainer" / recipe)
        return [
            "fit",
            "--config",
            str(fx.recipe()),
            "--config",
            trainer,
            "--trainer.accelerator=cpu",
            *options,
        ]

    return argv


class GainNorm(torch.nn.Module):
    """A plug-in's norm written without tensor parallelism in mind: it declares no ``tensor_parallel_plan``."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def _plan_with_plug_in_norm(fx: Fixtures) -> object:
    import swapformer
    from swapformer.training.distributed import tensor_parallel_plan

    model = swapformer.build_causal_lm({"vocab_size": 50, **TINY_CAUSAL_MODEL})
    model.decoder.final_norm = GainNorm()
    return tensor_parallel_plan(model, 2)


def _plan_tp(size: int, **members: object):
    def plan(fx: Fixtures) -> object:
        import swapformer
        from swapformer.training.distributed import tensor_parallel_plan

        return tensor_parallel_plan(
            swapformer.build_causal_lm({"vocab_size": 50, **TINY_CAUSAL_MODEL, **members}), size
        )

    return plan


CASES += [
    Case(
        id="tp-mesh-not-world-size",
        area="training",
        mistake="`--config trainer/fsdp2-tp` (tensor_parallel_size: 2) on 3 devices: the mesh does not multiply "
        "to the world size",
        expect=r"data_parallel_size=auto x tensor_parallel_size=2 does not make a mesh of the run's 3 processes.*"
        r"product is 3: 1 x 3, 3 x 1",
        argv=_fit_parallel("fsdp2-tp.yaml", "--trainer.devices=3"),
    ),
    Case(
        id="tp-larger-than-heads",
        area="training",
        mistake="`--config trainer/tp` on 8 devices for a model of 4 heads: TP larger than the heads",
        expect=r"tensor_parallel_size=8 does not divide num_heads=4 .* one of \[1, 2, 4\]",
        argv=_fit_parallel("tp.yaml", "--trainer.devices=8"),
    ),
    Case(
        id="tp-kv-heads-not-divisible",
        area="training",
        mistake="`--config trainer/tp` on 4 devices for a GQA model of 2 kv heads",
        expect=r"tensor_parallel_size=4 does not divide num_kv_heads=2 .* one of \[1, 2\]",
        argv=_fit_parallel("tp.yaml", "--trainer.devices=4", "--model.init_args.num_kv_heads=2"),
    ),
    Case(
        id="tp-member-without-plan",
        area="training",
        mistake="tensor parallelism over a model holding a plug-in member that declares no `tensor_parallel_plan`",
        expect=r"GainNorm \(at decoder.final_norm\) declares no tensor_parallel_plan.*declare one beside its "
        r"definition.*or set tensor_parallel_size: 1",
        raises=_plan_with_plug_in_norm,
    ),
    Case(
        id="tp-meta-init",
        area="training",
        mistake="`--config trainer/tp` with `meta_init: true` (each rank would draw its own whole weights)",
        expect=r"meta_init=true with tensor_parallel_size=2: .* set meta_init: false",
        argv=_fit_parallel("tp.yaml", "--trainer.devices=2", "--model.init_args.meta_init=true"),
    ),
    Case(
        id="tp-moe-experts-not-divisible",
        area="training",
        mistake="`--config trainer/tp` on 2 devices for a mixture of 3 experts (each TP rank holds whole experts)",
        expect=r"moe: tensor_parallel_size=2 does not divide experts=3 .* one of \[1, 3\]",
        argv=_fit_parallel(
            "tp.yaml", "--trainer.devices=2", "--model.init_args.ffn={name: moe, experts: 3, top_k: 1}"
        ),
    ),
    Case(
        id="tp-mla-heads-not-divisible",
        area="training",
        mistake="tensor parallelism of 3 for a model with `attention: mla` of 4 heads",
        expect=r"mla: tensor_parallel_size=3 does not divide num_heads=4 .* one of \[1, 2, 4\]",
        raises=_plan_tp(3, attention="mla", num_heads=4),
    ),
    Case(
        id="tp-alibi-heads-not-divisible",
        area="training",
        mistake="tensor parallelism of 3 for a model with `positional: alibi` of 4 heads (its slopes split by head)",
        expect=r"alibi: tensor_parallel_size=3 does not divide num_heads=4 .* one of \[1, 2, 4\]",
        raises=_plan_tp(3, positional="alibi", num_heads=4),
    ),
]
