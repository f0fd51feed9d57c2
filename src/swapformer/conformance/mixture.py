"""The conformance check of a mixture-of-experts feed-forward member: what routing must keep.

Run on every :class:`~swapformer.components.ffn.MixtureOfExperts` inside a model (the combinations whose ffn
member is one; :meth:`.Combination.unsupported` skips the others), each member alone, in training mode:

* batch independence: a token's output is the same in a batch as alone (dropless routing drops no token, so no
  other token can push it out of its expert);
* padding: tokens appended after the real ones (padding holds random vectors) leave the real tokens' outputs
  unchanged;
* the balance loss equals ``coefficient * E * sum_i f_i P_i`` counted here token by token from the member's own
  choices and the router's probabilities;
* the gradient of the output reaches the router and every expert that received a token, and no expert that
  received none.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swapformer.components.auxiliary import take_losses
from swapformer.components.ffn.moe import MixtureOfExperts
from swapformer.conformance.failure import ConformanceFailure

TOKENS, PADDING, SEED = 12, 5, 23


def _close(actual: Tensor, expected: Tensor, what: str, tolerance: float = 1e-5) -> None:
    if not torch.allclose(actual, expected, atol=tolerance, rtol=tolerance):
        diff = (actual - expected).abs().nan_to_num(float("inf")).max().item()
        raise ConformanceFailure(f"{what} (max |difference| {diff:.2g} > {tolerance:g})")


def _hand_balance_loss(member: MixtureOfExperts, tokens: Tensor) -> Tensor:
    """``coefficient * E * sum_i f_i P_i``: f_i the share of the T tokens whose k choices include i (k shares
    in all), P_i the mean probability the router gives i, counted with Python loops."""
    logits = member.router(tokens)
    _, chosen = member.route(logits)
    scores = logits.double().sigmoid() if member.router_kind == "sigmoid" else logits.double().exp()
    probabilities = scores / scores.sum(-1, keepdim=True)  # softmax, or sigmoid scores normalized
    experts, count = member.num_experts, tokens.size(0)
    routed = [0] * experts
    for choices in chosen.tolist():
        for expert in choices:
            routed[expert] += 1
    balance = sum(routed[i] / count * probabilities[:, i].mean() for i in range(experts)) * experts
    return (member.aux_loss * balance).float()


def _check_member(name: str, member: MixtureOfExperts, d_model: int) -> None:
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(2, TOKENS, d_model, generator=generator)
    with torch.no_grad():
        together = member(x)
        for row in range(2):
            _close(
                member(x[row : row + 1]),
                together[row : row + 1],
                f"{name}: row {row} alone differs from in the batch",
            )
        for token in (0, TOKENS - 1):
            alone = member(x[:1, token : token + 1])
            _close(alone[0, 0], together[0, token], f"{name}: token {token} alone differs from in the batch")
        padded = torch.cat((x, torch.randn(2, PADDING, d_model, generator=generator)), dim=1)
        _close(
            member(padded)[:, :TOKENS], together, f"{name}: padding tokens changed the real tokens' outputs"
        )
    take_losses(member)

    tokens = x.reshape(-1, d_model)
    member.zero_grad(set_to_none=True)
    out = member(x)
    losses = take_losses(member)
    if member.aux_loss:
        if "moe_aux_loss" not in losses:
            raise ConformanceFailure(f"{name}: aux_loss={member.aux_loss:g} but no moe_aux_loss was added")
        with torch.no_grad():
            expected = _hand_balance_loss(member, tokens)
        _close(
            losses["moe_aux_loss"].detach(), expected, f"{name}: moe_aux_loss differs from E sum_i f_i P_i"
        )
    out.square().sum().backward()
    with torch.no_grad():
        received = torch.bincount(
            member.route(member.router(tokens))[1].reshape(-1), minlength=member.num_experts
        )
    starved = [
        e
        for e in range(member.num_experts)
        if received[e]
        and not (member.gate_up_proj.grad[e].ne(0).any() and member.down_proj.grad[e].ne(0).any())
    ]
    fed = [
        e for e in range(member.num_experts) if not received[e] and member.gate_up_proj.grad[e].ne(0).any()
    ]
    router = member.router.weight.grad
    member.zero_grad(set_to_none=True)
    if starved:
        raise ConformanceFailure(f"{name}: experts {starved} received tokens but no gradient")
    if fed:
        raise ConformanceFailure(f"{name}: experts {fed} received no token but a gradient")
    # the router's weights reach the output unless every token takes every expert or one renormalized weight
    weighed = member.top_k < member.num_experts and (member.top_k > 1 or not member.norm_topk)
    if weighed and (router is None or not router.ne(0).any()):
        raise ConformanceFailure(f"{name}: no gradient reaches the router")


def check_mixture(model: nn.Module) -> None:
    """Every mixture of experts in ``model`` keeps what routing must keep (see the module docstring); the
    members' load counts and modes are restored afterwards."""
    members = [(n, m) for n, m in model.named_modules() if isinstance(m, MixtureOfExperts)]
    for name, member in members:
        load, training = member.load.clone(), member.training
        member.train()
        try:
            _check_member(name, member, model.config.d_model)
        finally:
            member.train(training)
            member.load.copy_(load)
