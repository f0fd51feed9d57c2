"""The options BERT-family encoders need: ``lm_head_transform`` (dense, activation, norm before the output layer;
the dense layer biased as ``bias`` says) against torch's functional ops on the model's own tensors, ``first_attention_norm: false`` in a forward and in cached
decoding, and the one-line refusals of their bad values. Transformers' ModernBERT checks both against a live
model in tests/interop/test_hf_modernbert.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import swapformer
from swapformer.errors import ConfigError

SMALL = {"vocab_size": 40, "d_model": 16, "num_heads": 2, "num_layers": 2, "d_ff": 32, "max_seq_len": 32}
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_lm_head_transform_is_dense_activation_norm_before_the_output_layer(activation, bias):
    torch.manual_seed(0)
    config = {**SMALL, "lm_head_transform": activation, "bias": bias, "lm_head_bias": True}
    model = swapformer.build_masked_lm(config).eval()
    with torch.no_grad():  # biases start at zero, norms at one: make each count
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    hidden = {}
    model.encoder.register_forward_hook(lambda module, args, out: hidden.setdefault("h", out))
    ids = torch.randint(40, (2, 7))
    with torch.no_grad():
        logits = model(ids)
        dense, norm = model.head_transform.dense, model.head_transform.norm
        x = ACTIVATIONS[activation](F.linear(hidden["h"], dense.weight, dense.bias))
        x = F.layer_norm(x, (16,), norm.weight, norm.bias, norm.eps)
        expected = F.linear(x, model.embedding.token.weight, model.lm_head.bias)  # tied
    assert (dense.bias is not None) == bias
    torch.testing.assert_close(logits, expected)


def test_without_lm_head_transform_the_output_layer_reads_the_final_norm():
    assert swapformer.build_masked_lm(SMALL).head_transform is None


def test_first_attention_norm_false_leaves_only_the_first_self_attention_unnormalized():
    torch.manual_seed(0)
    config = {**SMALL, "placement": "pre", "embedding_norm": True, "first_attention_norm": False}
    model = swapformer.build_causal_lm(config).eval()
    first, second = model.decoder.layers
    assert isinstance(first.self_attention.norm, torch.nn.Identity)
    assert isinstance(first.feed_forward.norm, torch.nn.LayerNorm)
    assert isinstance(second.self_attention.norm, torch.nn.LayerNorm)
    ids = torch.randint(3, 40, (2, 4))
    with torch.no_grad():  # cached decoding (its own plan of the layer) against full forwards
        expected = ids
        for _ in range(6):
            expected = torch.cat([expected, model(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(model.generate(ids, max_new_tokens=6, eos_token_id=[]), expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "masked_lm", "first_attention_norm": "no"}, r"first_attention_norm='no' must be true or false"),
    ],
)  # fmt: skip
def test_bad_encoder_options_are_named_with_their_fix(changes, message):
    with pytest.raises(ConfigError, match=message):
        swapformer.ModelConfig(**{**SMALL, **changes})
