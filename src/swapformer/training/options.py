"""The training options every task module takes: optimizer, schedule, batch, scale-out and safety settings.

They are the ``model.init_args`` keys that are not model fields (:data:`swapformer.config.MODEL_KEYS`); a task
module may change their defaults. :func:`training_options` checks them before the optimizer or any data sees
them, and its return value becomes the checkpoint's hyperparameters.
"""

from __future__ import annotations

import inspect
from typing import Any

from swapformer.errors import ConfigError, did_you_mean
from swapformer.nn.lm_loss import check_loss_options
from swapformer.training.guards import NONFINITE_ACTIONS, NonfiniteAction
from swapformer.training.optim import SCHEDULES


def training_options(
    *,
    lr: float = 3e-4,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    schedule: str = "warmup_cosine",
    warmup_steps: int = 100,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.1,
    label_smoothing: float = 0.0,
    loss_chunk: int | None = None,
    loss_impl: str = "torch",
    global_batch_tokens: int | None = None,
    activation_checkpointing: bool = False,
    compile: bool | dict[str, Any] = False,
    meta_init: bool = False,
    init_from: str | None = None,
    nonfinite_loss: NonfiniteAction = "stop",
    expert_load_every: int | None = None,
) -> dict[str, Any]:
    """The training options every task module takes (a module may change their defaults), checked.

    Args:
        lr: peak learning rate (``inverse_sqrt``: a scale on the paper's formula, 1.0 = the paper).
        weight_decay: AdamW decoupled weight decay of weight matrices (never norms, biases, embeddings).
        betas, eps: AdamW.
        schedule: a name in :data:`~swapformer.training.optim.SCHEDULES`: ``warmup_cosine``, ``inverse_sqrt``,
            ``constant``, or one a plug-in registers.
        warmup_steps: optimizer steps of linear warmup.
        total_steps: end of the cosine decay; None = the trainer's ``estimated_stepping_batches``.
        min_lr_ratio: the cosine's floor, as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        loss_chunk: tokens per chunk of the LM loss, whose head and cross-entropy run a chunk at a time so the
            whole logits never exist (see :mod:`swapformer.nn.lm_loss`); None = as many tokens as make 2^25
            logits (256 at a 128k vocabulary); 0 = the full logits at once.
        loss_impl: who computes the LM loss: ``torch`` (the chunked loss), or ``liger`` (Liger-Kernel's fused
            linear cross-entropy) or ``cut_cross_entropy`` (Apple's Cut Cross-Entropy) where that package is
            installed, on CUDA GPUs.
        global_batch_tokens: tokens per optimizer step over all processes; sets
            ``trainer.accumulate_grad_batches = global_batch_tokens / (batch_size x seq_len x processes)`` at fit
            start, so the effective batch does not depend on the device count. None = the trainer's setting.
        activation_checkpointing: recompute each block's activations in backward (less memory, ~1/3 more time).
        compile: ``torch.compile`` each block (True, or a dict of ``torch.compile`` options); off by default.
        meta_init: create the parameters on the meta device and allocate them in ``configure_model``, after
            FSDP2 has sharded them (each process then holds only its shards); for models too big for one device.
        init_from: start from a trained model's weights (not its optimizer or step): a directory of
            ``save_pretrained``, ``swapformer export`` or ``import-hf``, a Hugging Face model directory, or a
            ``.ckpt`` of ``swapformer fit``. The model fields must describe that model (``import-hf`` writes them
            all); components without weights (an attention kernel, rope scaling) may be swapped, and tensors the
            new config adds start from the usual initialization. The vocabulary is the model's (the data module
            then uses its tokenizer, which must fit in it).
        nonfinite_loss: what a NaN or infinite training loss does, checked before backward (see
            :mod:`swapformer.training.guards`): ``stop`` the run with an error naming the step (every checkpoint
            stays finite), ``skip`` the batch (no backward, no optimizer step; the count is printed at the end),
            or ``ignore`` it (no check, no host sync per step).
        expert_load_every: optimizer steps between pictures of each MoE layer's expert load, logged as
            ``train/moe_expert_load`` (:class:`~swapformer.training.ExpertLoadLogger`, added when the model has an
            MoE layer and the trainer a logger); None = 10 x the trainer's ``log_every_n_steps``; 0 = no picture.
    """
    options = dict(locals())  # the arguments only: taken before any local of the checks below
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"schedule='{schedule}' is unknown{did_you_mean(schedule, SCHEDULES)}; choose one of {', '.join(SCHEDULES)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1)")
    loss_problems = check_loss_options(loss_chunk, loss_impl)
    if loss_problems:
        raise ConfigError("; ".join(loss_problems))
    if nonfinite_loss not in NONFINITE_ACTIONS:
        raise ConfigError(
            f"nonfinite_loss='{nonfinite_loss}' is unknown; choose one of {', '.join(NONFINITE_ACTIONS)}"
        )
    problems = [
        f"{name}={value} must be {rule}"
        for name, value, rule, ok in (
            ("lr", lr, "a number >= 0 (e.g. 3e-4)", lr >= 0),
            ("weight_decay", weight_decay, "a number >= 0 (0 turns it off)", weight_decay >= 0),
            ("eps", eps, "a number > 0 (e.g. 1e-8)", eps > 0),
            ("warmup_steps", warmup_steps, "a whole number >= 0", warmup_steps >= 0),
            (
                "total_steps",
                total_steps,
                "a whole number >= 1, or null",
                total_steps is None or total_steps >= 1,
            ),
            ("min_lr_ratio", min_lr_ratio, "in [0, 1]", 0 <= min_lr_ratio <= 1),
            (
                "global_batch_tokens",
                global_batch_tokens,
                "a whole number >= 1, or null",
                global_batch_tokens is None or global_batch_tokens >= 1,
            ),
            (
                "expert_load_every",
                expert_load_every,
                "a whole number >= 0 (0: no expert-load picture), or null (10 x log_every_n_steps)",
                expert_load_every is None or expert_load_every >= 0,
            ),
        )
        if not ok
    ]
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        problems.append(f"betas={list(betas)} must be two numbers in [0, 1), e.g. [0.9, 0.95]")
    if problems:  # before the optimizer (torch's own message names no key) and before any data is read
        raise ConfigError([f"model.init_args.{p}" for p in problems], title="invalid training options")
    return options


TRAINING_KEYS = tuple(inspect.signature(training_options).parameters)
