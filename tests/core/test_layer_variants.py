"""ScaleNorm, GeGLU, squared ReLU, sandwich and DeepNorm placements against their papers' formulas, by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swapformer import build_causal_lm, build_seq2seq, family
from swapformer.components.placement import DeepNorm, deepnorm_constants

D, FF = 16, 24


def test_scalenorm_is_g_times_x_over_its_norm():
    norm = family("norm").build("scalenorm", d_model=D)
    assert norm.scale.item() == pytest.approx(math.sqrt(D)) and sum(p.numel() for p in norm.parameters()) == 1
    x = torch.randn(3, 5, D)
    torch.testing.assert_close(norm(x), math.sqrt(D) * x / x.norm(dim=-1, keepdim=True))
    with torch.no_grad():
        norm.scale.fill_(2.5)
    torch.testing.assert_close(norm(x).norm(dim=-1), torch.full((3, 5), 2.5))
    assert (norm(torch.zeros(2, D)) == 0).all()  # eps keeps a zero vector finite


def test_geglu_is_gelu_gate_times_up_then_down():
    ffn = family("ffn").build("geglu", d_model=D, d_ff=FF)
    x = torch.randn(2, 5, D)
    gate, up, down = ffn.gate_proj.weight, ffn.up_proj.weight, ffn.down_proj.weight
    expected = (F.gelu(x @ gate.T) * (x @ up.T)) @ down.T
    torch.testing.assert_close(ffn(x), expected)
    assert ffn.gate_proj.bias is None


def test_relu2_is_squared_relu_between_two_linear_layers():
    ffn = family("ffn").build("relu2", d_model=D, d_ff=FF)
    x = torch.randn(2, 5, D)
    hidden = x @ ffn.linear1.weight.T + ffn.linear1.bias
    expected = torch.clamp(hidden, min=0) ** 2 @ ffn.linear2.weight.T + ffn.linear2.bias
    torch.testing.assert_close(ffn(x), expected)


def test_sandwich_norms_before_and_after_the_sublayer_with_two_norms():
    sublayer = nn.Linear(D, D)
    step = family("placement").build("sandwich", sublayer=sublayer, norm=nn.LayerNorm(D))
    assert type(step).final_norm is True
    with torch.no_grad():  # two distinct norms with their own parameters
        step.post_norm.weight.mul_(3.0)
    assert step.post_norm.weight is not step.norm.weight
    x = torch.randn(2, 5, D)
    expected = x + F.layer_norm(sublayer(F.layer_norm(x, (D,))), (D,), weight=torch.full((D,), 3.0))
    torch.testing.assert_close(step(x), expected)


@pytest.mark.parametrize(
    ("kwargs", "alpha", "beta"),
    [
        ({"num_layers": 12}, (2 * 12) ** 0.25, (8 * 12) ** -0.25),  # decoder-only
        ({"num_layers": 12, "is_encoder": True}, (2 * 12) ** 0.25, (8 * 12) ** -0.25),  # encoder-only
        ({"num_layers": 6, "is_encoder": True, "num_decoder_layers": 4}, 0.81 * (6**4 * 4) ** (1 / 16), 0.87 * (6**4 * 4) ** (-1 / 16)),
        ({"num_layers": 4, "num_encoder_layers": 6}, (3 * 4) ** 0.25, (12 * 4) ** -0.25),
    ],
    ids=["decoder-only", "encoder-only", "encoder", "decoder"],
)  # fmt: skip
def test_deepnorm_constants_are_the_papers(kwargs, alpha, beta):
    assert deepnorm_constants(**kwargs) == (pytest.approx(alpha), pytest.approx(beta))


def test_deepnorm_step_is_layernorm_of_alpha_x_plus_sublayer():
    sublayer = nn.Linear(D, D)
    step = DeepNorm(sublayer=sublayer, norm=nn.LayerNorm(D), num_layers=8)
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(step(x), F.layer_norm(16**0.25 * x + sublayer(x), (D,)))
    assert type(step).final_norm is False


def test_builders_give_deepnorm_each_stacks_depths_and_the_papers_init():
    cfg = dict(vocab_size=50, d_model=128, num_heads=4, d_ff=256, placement="deepnorm", ffn="relu")
    lm = build_causal_lm({**cfg, "num_layers": 3})
    layer = lm.decoder.layers[0]
    beta = (8 * 3) ** -0.25
    assert layer.self_attention.alpha == pytest.approx((2 * 3) ** 0.25)
    assert layer.feed_forward.beta == pytest.approx(beta)
    attention, ffn = layer.self_attention.sublayer, layer.feed_forward.sublayer
    xavier = math.sqrt(2 / (128 + 128))  # Xavier-normal std of a D x D weight
    for weight, std in [
        (attention.q_proj.weight, xavier),
        (attention.k_proj.weight, xavier),
        (attention.v_proj.weight, beta * xavier),
        (attention.out_proj.weight, beta * xavier),
        (ffn.linear1.weight, beta * math.sqrt(2 / (128 + 256))),
    ]:
        assert weight.std().item() == pytest.approx(std, rel=0.06)

    seq2seq = build_seq2seq({**cfg, "num_encoder_layers": 6, "num_decoder_layers": 2})
    encoder, decoder = seq2seq.encoder.layers[0], seq2seq.decoder.layers[0]
    assert encoder.self_attention.alpha == pytest.approx(0.81 * (6**4 * 2) ** (1 / 16))
    assert decoder.cross_attention.alpha == pytest.approx((3 * 2) ** 0.25)
    assert decoder.cross_attention.sublayer.v_proj.weight.std().item() == pytest.approx(
        (12 * 2) ** -0.25 * xavier, rel=0.06
    )
