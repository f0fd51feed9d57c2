"""Tensor parallelism in 2 processes (gloo) against one process: ``python tensor_parallel_probe.py PORT``.

Each process builds the same Llama-style and GPT-2-style models (weights scaled so that attention is far from
uniform), keeps one whole copy as the reference, splits the other with
:func:`swapformer.training.distributed.shard_tensor_parallel`, and checks: the logits (1e-5), every parameter's
gradient gathered whole (1e-5), and :func:`~swapformer.training.distributed.clip_grad_norm`'s total against
torch's ``clip_grad_norm_`` on the reference, and greedy decoding's tokens. Exits non-zero with the first mismatch.
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
    for name, config in MODELS.items():
        torch.manual_seed(0)  # the same weights on every rank
        model = swapformer.build_causal_lm(config)
        with torch.no_grad():  # larger weights: sharp attention, so a head on the wrong rank would show
            for parameter in model.parameters():
                parameter.mul_(4)
        reference = swapformer.build_causal_lm(config)
        reference.load_state_dict(model.state_dict())
        split = distributed.shard_tensor_parallel(model, mesh)
        ffn_projections = 3 if name == "llama" else 2  # gate, up, down / linear1, linear2
        assert split == 2 * (4 + ffn_projections), f"{name}: {split} projections split"
        ids = torch.randint(config["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
        logits, expected = model(ids), reference(ids)
        close(logits, expected, f"{name} logits")
        torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        torch.nn.functional.cross_entropy(expected[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        splits = 0
        for (key, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
            grad = p.grad
            if isinstance(grad, DTensor):  # a split weight (a row-wise layer's bias is whole on every rank)
                if grad.placements[0].is_shard():
                    splits += 1
                    assert grad.to_local().numel() * world == q.grad.numel(), f"{name} {key}: not half"
                grad = grad.full_tensor()
            close(grad, q.grad, f"{name} {key} gradient")
        assert splits >= split, f"{name}: {splits} split tensors for {split} projections"
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
