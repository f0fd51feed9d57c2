"""Tensor parallelism in 2 processes (gloo) against one process: ``python tensor_parallel_probe.py PORT``.

Each process builds the same models (weights scaled so that attention is far from uniform), keeps one whole copy
as the reference, splits the other with :func:`swapformer.training.distributed.shard_tensor_parallel`, and
checks: the logits and the auxiliary losses (1e-5), every parameter's gradient gathered whole (1e-5), and
:func:`~swapformer.training.distributed.clip_grad_norm`'s total against torch's ``clip_grad_norm_`` on the
reference, and greedy decoding's tokens. Exits non-zero with the first mismatch.

The models: Llama-style and GPT-2-style (float32), and three that hold the members with their own split
(float64: the split q/k norms run torch's composite norm on DTensors where one process runs the hand-written
CPU kernel, another rounding; in float64 rounding is far below 1e-5, so only a wrong split can fail): ALiBi
with per-head q/k RMSNorms and ``sdpa`` with sinks; T5's relative bias with LayerNorm q/k norms over the whole
projection and ``math`` with sinks; MLA with a low-rank query and a mixture of experts with a shared expert (and
its balance and z losses).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BASE = {"vocab_size": 64, "d_model": 32, "num_layers": 2, "max_seq_len": 16, "dropout": 0.0}
MODELS = {
    "llama": {
        **BASE,
        **{"num_heads": 4, "num_kv_heads": 2, "d_ff": 64, "positional": "rope", "norm": "rmsnorm"},
        **{"ffn": "swiglu", "bias": False},
    },
    "gpt2": {
        **BASE,
        **{"num_heads": 4, "d_ff": 128, "positional": "learned", "norm": "layernorm"},
        **{"ffn": {"name": "gelu", "approximate": "tanh"}, "bias": True},
    },
}
LLAMA = {**BASE, **{"num_heads": 4, "d_ff": 64, "norm": "rmsnorm", "ffn": "swiglu", "bias": False}}
MEMBERS = {  # name: (config, projections and members split: per layer x 2, + the model's positional member)
    "alibi, q/k norm per head, sdpa with sinks": (
        {**LLAMA, "num_kv_heads": 2, "positional": "alibi", "qk_norm": "rmsnorm"}
        | {"attention": {"name": "sdpa", "sinks": True}},
        2 * (4 + 2 + 1 + 3) + 1,  # W_q, W_k, W_v, W_o; q_norm, k_norm; the sinks; gate, up, down; the slopes
    ),
    "t5_relative, q/k norm over the projection, math with sinks": (
        {**LLAMA, "num_kv_heads": 2, "positional": "t5_relative", "qk_norm": "layernorm"}
        | {"qk_norm_scope": "projection", "attention": {"name": "math", "sinks": True}},
        2 * (4 + 2 + 1 + 3) + 1,  # ...; the bias table
    ),
    "mla, moe": (
        {**LLAMA, "positional": "rope", "attention": {"name": "mla", "q_lora_rank": 16}}
        | {"ffn": {"name": "moe", "experts": 4, "top_k": 2, "shared_experts": 1}},
        2 * (4 + 1 + 3),  # q_b_proj, kv_b_proj, W_o, the rope key; the experts; the shared expert's 3
    ),
}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def close(actual: torch.Tensor, expected: torch.Tensor, where: str) -> None:
    torch.testing.assert_close(actual, expected, **TOLERANCE, msg=lambda message: f"{where}: {message}")


def check(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    import swapformer
    from swapformer.training import distributed

    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("tensor_parallel",))
    # gate, up, down / linear1, linear2
    models = {
        name: (config, 2 * (4 + (3 if name == "llama" else 2)), torch.float32)
        for name, config in MODELS.items()
    }
    models |= {name: (config, split, torch.float64) for name, (config, split) in MEMBERS.items()}
    for name, (config, planned, dtype) in models.items():
        torch.manual_seed(0)  # the same weights on every rank
        model = swapformer.build_causal_lm(config).to(dtype)
        with torch.no_grad():  # larger weights: sharp attention, so a head on the wrong rank would show
            for parameter in model.parameters():
                parameter.mul_(4)
        reference = swapformer.build_causal_lm(config).to(dtype)
        reference.load_state_dict(model.state_dict())
        split = distributed.shard_tensor_parallel(model, mesh)
        assert split == planned, f"{name}: {split} projections split"
        ids = torch.randint(config["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
        losses, expected_losses = {}, {}
        logits, expected = model(ids, losses=losses), reference(ids, losses=expected_losses)
        close(logits, expected, f"{name} logits")
        assert losses.keys() == expected_losses.keys(), name
        for key, loss in losses.items():
            close(loss, expected_losses[key], f"{name} {key}")
        for out, aux in ((logits, losses), (expected, expected_losses)):
            loss = torch.nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
            (loss + sum(aux.values())).backward()
        splits = 0
        for (key, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
            grad = p.grad
            if isinstance(grad, DTensor):  # a split weight (a row-wise layer's bias is whole on every rank)
                if grad.placements[0].is_shard():
                    splits += 1
                    assert grad.to_local().numel() * world == q.grad.numel(), f"{name} {key}: not half"
                grad = grad.full_tensor()
            close(grad, q.grad, f"{name} {key} gradient")
        projections = sum(
            isinstance(style, str) for style in distributed.tensor_parallel_plan(reference, world).values()
        )
        assert splits >= projections, f"{name}: {splits} split tensors for {projections} projections"
        total = distributed.clip_grad_norm(model.parameters(), 0.5)
        expected_total = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        close(total, expected_total, f"{name} total norm")
        for (key, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            grad = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
            close(grad, q.grad, f"{name} clipped {key}")
        # decoding with the KV cache (the attention's general path: the split projections are hooked)
        prompt = ids[:, :5]
        tokens = model.eval().generate(prompt, max_new_tokens=6, do_sample=False)
        assert torch.equal(tokens, reference.eval().generate(prompt, max_new_tokens=6, do_sample=False)), name
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(check, args=(2, int(sys.argv[1])), nprocs=2)
