"""The ``moe`` feed-forward member against transformers' MoE blocks built from configs (Mixtral, Qwen3-MoE, GPT-OSS,
DeepSeek-V3) with the same weights, its losses against the formulas computed independently, and the properties a
dropless MoE keeps: batch independence, bit-for-bit determinism, decoding through ``generate``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock, load_balancing_loss_func

from swapformer import build_causal_lm
from swapformer.components import after_optimizer_step, take_losses
from swapformer.components.ffn import MixtureOfExperts
from swapformer.conformance import VARIANTS, Combination, run_combination
from swapformer.errors import ConfigError
from swapformer.registry import FFN

D, F_, E, K = 16, 8, 4, 2


def _randomize(module: torch.nn.Module, scale: float = 0.5) -> None:
    """Weights of order ``scale``, so routing is far from uniform and experts differ."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn_like(p))


def _tokens(n: int = 3, length: int = 5) -> torch.Tensor:
    return torch.randn(n, length, D)


def _ours(**options) -> MixtureOfExperts:
    member = FFN.build({"name": "moe", "experts": E, "top_k": K, **options}, d_model=D, d_ff=F_)
    return member.eval()


def _copy_experts(ours: MixtureOfExperts, experts: torch.nn.Module) -> None:
    with torch.no_grad():
        ours.gate_up_proj.copy_(experts.gate_up_proj)
        ours.down_proj.copy_(experts.down_proj)


def test_mixtral_block():
    config = transformers.MixtralConfig(
        hidden_size=D,
        intermediate_size=F_,
        num_local_experts=E,
        num_experts_per_tok=K,
        router_jitter_noise=0.0,
    )
    theirs = MixtralSparseMoeBlock(config).eval()
    _randomize(theirs)
    ours = _ours(router="softmax", norm_topk=True)
    _copy_experts(ours, theirs.experts)
    with torch.no_grad():
        ours.router.weight.copy_(theirs.gate.weight)
    x = _tokens()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_topk", [True, False])
def test_qwen3_moe_block(norm_topk):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

    config = transformers.Qwen3MoeConfig(
        hidden_size=D,
        moe_intermediate_size=F_,
        num_experts=E,
        num_experts_per_tok=K,
        norm_topk_prob=norm_topk,
    )
    theirs = Qwen3MoeSparseMoeBlock(config).eval()
    _randomize(theirs)
    ours = _ours(router="softmax", norm_topk=norm_topk)
    _copy_experts(ours, theirs.experts)
    with torch.no_grad():
        ours.router.weight.copy_(theirs.gate.weight)
    x = _tokens()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_gpt_oss_block():
    """Top-k of the biased logits, softmax over the k, the clamped SwiGLU with biases. GPT-OSS interleaves gate
    and up columns and stores weights transposed: ours are [gate; up] rows, as Mixtral's."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP

    config = transformers.GptOssConfig(
        hidden_size=D, intermediate_size=F_, num_local_experts=E, num_experts_per_tok=K
    )
    theirs = GptOssMLP(config).eval()
    _randomize(theirs, scale=1.5)  # large enough that the clamps at +-7 bind somewhere
    ours = _ours(router="topk_softmax", expert="clamped_swiglu", expert_bias=True)
    experts = theirs.experts
    with torch.no_grad():
        ours.router.weight.copy_(theirs.router.weight)
        ours.router.bias.copy_(theirs.router.bias)
        w = experts.gate_up_proj.transpose(1, 2)  # (E, 2F, D), rows interleaved gate, up
        ours.gate_up_proj.copy_(torch.cat((w[:, ::2], w[:, 1::2]), dim=1))
        b = experts.gate_up_proj_bias
        ours.gate_up_bias.copy_(torch.cat((b[:, ::2], b[:, 1::2]), dim=1))
        ours.down_proj.copy_(experts.down_proj.transpose(1, 2))
        ours.down_bias.copy_(experts.down_proj_bias)
    x = _tokens()
    expected, _ = theirs(x)
    # outputs of order 10 at these weights: float32 rounds their sums to about 1e-6 of that
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_deepseek_v3_block():
    """Sigmoid scores, a selection-only bias, group-limited top-k, the routed scaling factor, a shared expert."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    config = transformers.DeepseekV3Config(
        hidden_size=D, moe_intermediate_size=F_, n_routed_experts=8, num_experts_per_tok=K, n_group=4,
        topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True,
    )  # fmt: skip
    theirs = DeepseekV3MoE(config).eval()
    _randomize(theirs)
    with torch.no_grad():
        theirs.gate.e_score_correction_bias.copy_(0.3 * torch.randn(8))
    ours = FFN.build(
        {"name": "moe", "experts": 8, "top_k": K, "router": "sigmoid", "groups": 4, "topk_groups": 2,
         "routed_scaling": 2.5, "shared_experts": 1},
        d_model=D, d_ff=F_,
    ).eval()  # fmt: skip
    _copy_experts(ours, theirs.experts)
    with torch.no_grad():
        ours.router.weight.copy_(theirs.gate.weight)
        ours.selection_bias.copy_(theirs.gate.e_score_correction_bias)
        for name in ("gate_proj", "up_proj", "down_proj"):
            getattr(ours.shared, name).weight.copy_(getattr(theirs.shared_experts, name).weight)
    x = _tokens()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_aux_loss_is_transformers_load_balancing_loss_and_z_loss_the_formula():
    ours = _ours(aux_loss=0.01, z_loss=0.001)
    _randomize(ours)
    ours.train()
    x = _tokens()
    ours(x)
    losses = take_losses(ours)
    logits = ours.router(x.reshape(-1, D))
    expected = 0.01 * load_balancing_loss_func((logits,), E, K)
    torch.testing.assert_close(losses["moe_aux_loss"], expected)
    z = torch.logsumexp(logits, dim=-1)
    torch.testing.assert_close(losses["moe_z_loss"], 0.001 * (z**2).mean())
    assert take_losses(ours) == {}  # taken once
    ours.eval()
    ours(x)
    assert take_losses(ours) == {}  # eval adds none


def test_no_loss_when_coefficients_are_zero():
    ours = _ours(aux_loss=0.0, z_loss=0.0).train()
    ours(_tokens())
    assert take_losses(ours) == {}


def test_a_token_output_does_not_depend_on_the_batch():
    ours = _ours(shared_experts=1)
    _randomize(ours)
    x = _tokens(4, 6)
    together = ours(x)
    for row in range(4):
        torch.testing.assert_close(ours(x[row : row + 1]), together[row : row + 1], rtol=1e-6, atol=1e-6)
    # one token alone, with the others replaced: the same
    other = x.clone()
    other[1:] = torch.randn_like(other[1:])
    torch.testing.assert_close(ours(other)[0], together[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [{}, {"expert_bias": True}, {"expert": "clamped_swiglu", "expert_bias": True}, {"expert": "gelu"},
     {"shared_experts": 1}],
)  # fmt: skip
def test_without_gradients_only_the_chosen_experts_run_and_give_the_same_outputs(options, monkeypatch):
    # decoding skips the experts no token chose (with gradients every expert runs, for DDP and FSDP2); one token
    # (a decoding step at batch 1) runs its K experts directly, without the batch's sorting and gathering back
    ours = _ours(**options)
    _randomize(ours)
    x = _tokens(1, 1)  # one token: K of the E experts
    expected = ours(x)  # with gradients: the batch's path
    calls = []
    linear = F.linear
    monkeypatch.setattr(F, "linear", lambda *args: calls.append(args[1].shape) or linear(*args))
    monkeypatch.setattr(ours, "run_experts", lambda *args: pytest.fail("one token took the batch's path"))
    with torch.no_grad():
        assert torch.equal(ours(x), expected)
    per_expert = 2 if options.get("expert") == "gelu" else 3  # gate (and up) and down of each chosen expert
    shared = 3 if options.get("shared_experts") else 0
    assert len(calls) == 1 + per_expert * K + shared  # and the router


def test_outputs_and_gradients_are_bitwise_deterministic():
    ours = _ours(shared_experts=1).train()
    _randomize(ours)
    x = _tokens(4, 9)

    def run():
        ours.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_()
        y = ours(inputs)
        ((y * torch.arange(D)).sum() + sum(take_losses(ours).values())).backward()
        return y.detach(), inputs.grad, [p.grad.clone() for p in ours.parameters()]

    first, second = run(), run()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert all(torch.equal(a, b) for a, b in zip(first[2], second[2], strict=True))


def test_gradient_reaches_router_and_every_expert_that_got_tokens():
    # norm_topk=False: a renormalized top-1 weight is 1, with no gradient to the router
    ours = _ours(experts=8, top_k=1, norm_topk=False).train()
    _randomize(ours)
    x = _tokens(1, 3)  # three tokens: at most three of eight experts get any
    ours(x).square().sum().backward()
    chosen = ours.route(ours.router(x.reshape(-1, D)))[1].unique()
    for e in range(8):
        got = bool(ours.gate_up_proj.grad[e].ne(0).any()) and bool(ours.down_proj.grad[e].ne(0).any())
        assert got == (e in chosen), e
    assert ours.router.weight.grad.ne(0).any()


def test_loss_free_balancing_moves_the_selection_bias_by_the_sign_of_the_load_error():
    ours = _ours(balance_rate=0.1).train()
    _randomize(ours)
    x = _tokens(2, 8)
    ours(x)
    chosen = ours.route(ours.router(x.reshape(-1, D)))[1]
    load = torch.bincount(chosen.reshape(-1), minlength=E).float()
    assert torch.equal(ours.load, load)
    stats = after_optimizer_step(ours)
    torch.testing.assert_close(stats["moe_imbalance"], load.max() / load.mean())
    torch.testing.assert_close(ours.selection_bias, 0.1 * torch.sign(load.mean() - load))
    assert not ours.load.any()  # counting starts again
    bias = ours.selection_bias.clone()
    stats = after_optimizer_step(ours)  # nothing routed since: every load alike, the bias stays
    assert stats["moe_imbalance"].item() == 1.0
    assert torch.equal(ours.selection_bias, bias)


def test_the_end_of_an_optimizer_step_never_waits_for_the_device():
    """On a meta device any host sync (``bool(tensor)``, ``.item()``) raises: after_optimizer_step runs there,
    so on a GPU it queues its work behind the step's without a sync per MoE layer per step."""
    with torch.device("meta"):
        ours = _ours(balance_rate=0.1)
    ours.load.fill_(1)
    stats = after_optimizer_step(ours, reduce=lambda t: t * 2)
    assert stats["moe_imbalance"].is_meta and ours.selection_bias.is_meta


def test_eval_forward_counts_no_load():
    ours = _ours(balance_rate=0.1)
    ours(_tokens())
    assert not ours.load.any()


def test_checkpoint_recompute_counts_each_token_once():
    from torch.utils.checkpoint import checkpoint

    ours = _ours().train()
    _randomize(ours)
    x = _tokens().requires_grad_()
    checkpoint(ours, x, use_reentrant=False).sum().backward()
    assert ours.load.sum() == x.shape[0] * x.shape[1] * K


def test_generate_decodes_as_the_full_forward():
    """Greedy ``generate`` (the cached decoding path) gives the argmax of the full forward at each step, in a
    model whose MoE layers sit between dense ones (DeepSeek's first-k-dense through the layer pattern)."""
    torch.manual_seed(0)
    layers = {"pattern": ["dense", "moe", "moe"], "types": {"dense": {}, "moe": {"ffn": {"name": "moe"}}}}
    model = build_causal_lm(
        dict(vocab_size=40, d_model=32, num_heads=4, num_layers=3, d_ff=16, max_seq_len=32, positional="rope",
             ffn="swiglu", norm="rmsnorm", layers=layers, init_std=0.2)
    ).eval()  # fmt: skip
    assert [type(layer.feed_forward.sublayer).__name__ for layer in model.decoder.layers] == [
        "GatedFeedForward",
        "MixtureOfExperts",
        "MixtureOfExperts",
    ]
    prompt = torch.randint(1, 40, (2, 4))
    generated = model.generate(prompt, max_new_tokens=6, eos_token_id=[])
    ids = prompt
    with torch.no_grad():
        for _ in range(6):
            ids = torch.cat((ids, model(ids)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(generated, ids)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"experts": 4, "top_k": 5}, r"top_k=5 is more than experts=4"),
        ({"experts": 0}, r"moe needs experts >= 1, got experts=0"),
        ({"router": "softmx"}, r"unknown router 'softmx' \(did you mean 'softmax'\?\)"),
        ({"expert": "swigl"}, r"unknown expert 'swigl'"),
        ({"experts": 6, "groups": 4}, r"groups=4 must divide experts=6"),
    ],
)
def test_bad_options_raise_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        FFN.build({"name": "moe", **options}, d_model=D, d_ff=F_)


def test_loop_and_dense_equivalence_with_one_expert():
    """One expert, top-1, weight 1: the MoE is that expert, the dense SwiGLU with the same weights."""
    ours = _ours(experts=1, top_k=1)
    _randomize(ours)
    x = _tokens()
    gate, up = ours.gate_up_proj[0].chunk(2)
    dense = F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), ours.down_proj[0])
    torch.testing.assert_close(ours(x), dense)


@pytest.mark.parametrize(
    "variant",
    [None, *(("ffn", tuple(options.items())) for options in VARIANTS[("ffn", "moe")])],
    ids=["softmax", "sigmoid", "topk_softmax"],
)
def test_the_mixture_check_runs_on_moe_and_passes(variant):
    combination = Combination("causal_lm", "sdpa", "rope", "rmsnorm", "pre", "moe", variant=variant)
    (result,) = run_combination(combination, checks=["mixture"]).checks[1:]
    assert result.passed and not result.skipped, result.message


def test_the_mixture_check_skips_other_ffn_members():
    result = run_combination(
        Combination("causal_lm", "sdpa", "rope", "rmsnorm", "pre", "swiglu"), checks=["mixture"]
    )
    assert result.checks[1].skipped and "not a mixture of experts" in result.checks[1].message


@pytest.mark.parametrize(
    "options",
    [{"expert": "swiglu"}, {"expert": "gelu"}, {"expert": "clamped_swiglu", "expert_bias": True}],
    ids=["swiglu", "gelu", "clamped_swiglu-bias"],
)
def test_the_grouped_gemm_path_gives_the_loops_outputs_and_gradients(options):
    """The experts as one grouped GEMM (CUDA in bfloat16 in training; torch 2.13's ``grouped_mm`` also runs on
    the CPU, so the path is tested here) against the loop over experts, on the same sorted pairs: outputs and
    gradients to bfloat16's rounding. An empty expert is among them."""
    if not hasattr(F, "grouped_mm"):
        pytest.skip("this torch has no torch.nn.functional.grouped_mm")
    torch.manual_seed(0)
    moe = _ours(**options).train()
    # weights of 0.25: the experts' inputs stay well inside clamped_swiglu's limit of 7, where a rounding
    # difference between the two paths would flip the clamp's gradient
    _randomize(moe, 0.25)
    moe = moe.to(torch.bfloat16)
    sizes = torch.tensor([5, 0, 7, 4])
    experts = torch.repeat_interleave(torch.arange(E), sizes)
    routed = torch.randn(int(sizes.sum()), D, dtype=torch.bfloat16)

    def run(path):
        moe.zero_grad(set_to_none=True)
        x = routed.clone().requires_grad_()
        out = path(x)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out, x.grad, moe.gate_up_proj.grad, moe.down_proj.grad

    grouped = run(lambda x: moe._grouped(x, sizes, experts))
    looped = run(lambda x: moe._looped(x, sizes.tolist()))
    for ours, reference in zip(grouped, looped, strict=True):
        torch.testing.assert_close(ours.float(), reference.float(), rtol=2e-2, atol=2e-2)
    assert grouped[0].abs().max() > 0.1  # the comparison is of real outputs, not zeros
