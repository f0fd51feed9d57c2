"""Encoder/decoder layers and the whole EncoderDecoder against torch.nn's Transformer, weights copied."""

import pytest
import torch
from tests.core.torch_reference import copy_decoder_layer, copy_encoder_layer, copy_norm
from torch import nn

from swapformer import ModelConfig, build_seq2seq
from swapformer.components.attention import causal_mask
from swapformer.models import build_layer

D, H, FF = 32, 4, 64


def config(placement, ffn, attention="sdpa", **kwargs):
    return ModelConfig(
        vocab_size=50, d_model=D, num_heads=H, d_ff=FF, dropout=0.0, attention=attention, placement=placement,
        ffn=ffn, positional="none", **kwargs,
    )  # fmt: skip


def padding(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


CASES = [(p, f, a) for p in ("post", "pre") for f in ("relu", "gelu") for a in ("math", "sdpa")]


@pytest.mark.parametrize(("placement", "ffn", "attention"), CASES)
def test_encoder_layer_equals_nn(placement, ffn, attention):
    ref = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation=ffn, batch_first=True, norm_first=placement == "pre"
    ).eval()
    ours = build_layer(config(placement, ffn, attention), cross_attention=False, num_layers=1).eval()
    copy_encoder_layer(ours, ref)
    x = torch.randn(3, 6, D)
    key_mask = padding([6, 4, 2], 6)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    out = ours(x, attn_mask=key_mask[:, None, None, :])
    expected = ref(x, src_key_padding_mask=~key_mask)
    # torch's fast path returns zeros at padded positions; real positions must agree
    torch.testing.assert_close(out[key_mask], expected[key_mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        ours(x, is_causal=True), ref(x, src_mask=~causal_mask(6, 6)), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(("placement", "ffn", "attention"), CASES)
def test_decoder_layer_equals_nn(placement, ffn, attention):
    ref = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, activation=ffn, batch_first=True, norm_first=placement == "pre"
    ).eval()
    ours = build_layer(config(placement, ffn, attention), cross_attention=True, num_layers=1).eval()
    copy_decoder_layer(ours, ref)
    x, memory = torch.randn(3, 5, D), torch.randn(3, 7, D)
    src_mask, tgt_mask = padding([7, 3, 5], 7), padding([5, 5, 2], 5)
    causal = causal_mask(5, 5)
    out = ours(
        x,
        attn_mask=tgt_mask[:, None, None, :] & causal,
        memory=memory,
        memory_mask=src_mask[:, None, None, :],
    )
    expected = ref(
        x, memory, tgt_mask=~causal, tgt_key_padding_mask=~tgt_mask, memory_key_padding_mask=~src_mask
    )
    torch.testing.assert_close(out[tgt_mask], expected[tgt_mask], atol=1e-5, rtol=1e-5)
    out = ours(x, is_causal=True, memory=memory)
    torch.testing.assert_close(out, ref(x, memory, tgt_mask=~causal), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("placement", "ffn"), [("post", "relu"), ("pre", "gelu")])
def test_encoder_decoder_equals_nn_transformer(placement, ffn):
    # nn.Transformer always ends both stacks with a LayerNorm, whatever norm_first says: final_norm=True.
    cfg = config(
        placement, ffn, num_encoder_layers=2, num_decoder_layers=3, final_norm=True, tie_embeddings=False
    )
    ours = build_seq2seq(cfg).eval()
    ref = nn.Transformer(
        D, H, 2, 3, FF, dropout=0.0, activation=ffn, batch_first=True, norm_first=placement == "pre"
    ).eval()
    for ours_layer, ref_layer in zip(ours.encoder.layers, ref.encoder.layers):
        copy_encoder_layer(ours_layer, ref_layer)
    for ours_layer, ref_layer in zip(ours.decoder.layers, ref.decoder.layers):
        copy_decoder_layer(ours_layer, ref_layer)
    copy_norm(ours.encoder.final_norm, ref.encoder.norm)
    copy_norm(ours.decoder.final_norm, ref.decoder.norm)

    src, tgt = torch.randint(50, (3, 8)), torch.randint(50, (3, 6))
    src_mask, tgt_mask = padding([8, 5, 3], 8), padding([6, 6, 4], 6)
    logits = ours(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask)
    hidden = ref(
        ours.src_embedding.token(src),
        ours.tgt_embedding.token(tgt),
        tgt_mask=~causal_mask(6, 6),
        src_key_padding_mask=~src_mask,
        tgt_key_padding_mask=~tgt_mask,
        memory_key_padding_mask=~src_mask,
        tgt_is_causal=True,
    )
    expected = ours.lm_head(hidden)
    torch.testing.assert_close(logits[tgt_mask], expected[tgt_mask], atol=1e-5, rtol=1e-5)
    assert logits.shape == (3, 6, 50)


def test_tied_embeddings_share_one_parameter():
    tied = build_seq2seq(config("post", "relu"))
    assert tied.lm_head.weight is tied.tgt_embedding.token.weight
    untied = build_seq2seq(config("post", "relu", tie_embeddings=False))
    assert untied.lm_head.weight is not untied.tgt_embedding.token.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == 50 * D


def test_embedding_scaling_multiplies_by_sqrt_d_model():
    plain = build_seq2seq(config("post", "relu"))
    scaled = build_seq2seq(config("post", "relu", scale_embeddings=True))
    scaled.load_state_dict(plain.state_dict())
    ids = torch.randint(50, (2, 4))
    torch.testing.assert_close(scaled.tgt_embedding(ids), plain.tgt_embedding(ids) * D**0.5)


def test_post_norm_has_no_final_norm_and_pre_norm_has_one():
    assert build_seq2seq(config("post", "relu")).decoder.final_norm is None
    assert isinstance(build_seq2seq(config("pre", "relu")).decoder.final_norm, nn.LayerNorm)
    assert isinstance(build_seq2seq(config("pre", "relu", norm="rmsnorm")).encoder.final_norm, nn.RMSNorm)
