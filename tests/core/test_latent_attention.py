"""Multi-head latent attention (``mla``) against transformers' DeepseekV3Attention, its KV cache against GQA's."""

import math

import pytest
import torch

from swapformer import build_causal_lm, family
from swapformer.components.attention import MultiHeadLatentAttention
from swapformer.errors import ConfigError
from swapformer.generation import KVCache

D, H, L = 64, 4, 10
SIZES = dict(kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6)


def deepseek(q_lora_rank, rope_interleave, rope_parameters):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3Attention,
        DeepseekV3RotaryEmbedding,
    )

    config = DeepseekV3Config(
        hidden_size=D, num_attention_heads=H, num_key_value_heads=H, q_lora_rank=q_lora_rank,
        rope_interleave=rope_interleave, rope_parameters=rope_parameters, max_position_embeddings=64,
        num_hidden_layers=1, attention_bias=True, **SIZES,
    )  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = DeepseekV3Attention(config, layer_idx=0).eval()
    with torch.no_grad():  # weights large enough that attention is far from uniform
        for parameter in theirs.parameters():
            parameter.normal_(std=0.4)
    return theirs, DeepseekV3RotaryEmbedding(config)


def ours_like(theirs, positional, **options):
    ours = MultiHeadLatentAttention(
        d_model=D, num_heads=H, q_lora_rank=theirs.q_lora_rank, bias=True, positional=positional,
        **SIZES, **options,
    ).eval()  # fmt: skip
    missing, unexpected = ours.load_state_dict(
        {k.replace("o_proj", "out_proj"): v for k, v in theirs.state_dict().items()}, strict=False
    )
    assert not unexpected and all(
        k.startswith("positional") for k in missing
    )  # every weight, DeepSeek's names
    return ours


CASES = {
    "plain": (None, False, {"rope_type": "default", "rope_theta": 10000.0}, "rope", {}),
    "q_lora interleaved": (16, True, {"rope_type": "default", "rope_theta": 10000.0}, "rope", {}),
    "yarn mscale": (
        16,
        True,
        {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16,
         "mscale": 0.7, "mscale_all_dim": 0.7, "beta_fast": 32.0, "beta_slow": 1.0},
        {"name": "rope", "scaling": "yarn", "factor": 4.0, "original_max_seq_len": 16, "attention_factor": 1.0},
        {"mscale": 0.1 * 0.7 * math.log(4.0) + 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_mla_equals_deepseek_v3_attention(case):
    q_lora_rank, interleave, rope_parameters, rope, options = CASES[case]
    theirs, rotary = deepseek(q_lora_rank, interleave, rope_parameters)
    positional = family("positional").build(rope, head_dim=SIZES["qk_rope_head_dim"])
    ours = ours_like(theirs, positional, rope_interleave=interleave, **options)
    assert ours.scale == pytest.approx(theirs.scaling)
    x = torch.randn(2, L, D)
    causal = torch.zeros(L, L).masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    with torch.no_grad():
        expected, _ = theirs(x, rotary(x, torch.arange(L)[None]), causal[None, None])
        got = ours(x, is_causal=True)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # decoding through the KV cache: the prompt expanded, each step absorbed, the same outputs
        cache = KVCache(1)[0].self_attention
        steps = [ours(x[:, :4], is_causal=True, cache=cache)]
        steps += [ours(x[:, i : i + 1], offset=i, cache=cache) for i in range(4, L)]
        torch.testing.assert_close(torch.cat(steps, 1), expected, atol=1e-5, rtol=1e-5)


def test_the_absorbed_step_equals_the_expanded_one_and_each_attends():
    theirs, _ = deepseek(16, False, {"rope_type": "default", "rope_theta": 10000.0})
    positional = family("positional").build("rope", head_dim=SIZES["qk_rope_head_dim"])
    absorbed, expanded = (ours_like(theirs, positional, absorb=a) for a in (True, False))
    x = torch.randn(2, L, D)
    caches = [KVCache(1)[0].self_attention for _ in range(2)]
    with torch.no_grad():
        for model, cache in zip((absorbed, expanded), caches, strict=True):
            model(x[:, :-1], is_causal=True, cache=cache)
        step, weights = absorbed(x[:, -1:], offset=L - 1, cache=caches[0], need_weights=True)
        reference, reference_weights = expanded(x[:, -1:], offset=L - 1, cache=caches[1], need_weights=True)
    torch.testing.assert_close(step, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, reference_weights, atol=1e-6, rtol=1e-5)
    assert weights.max() > 2 / L  # not uniform


def test_the_kv_cache_holds_the_latent_and_the_rope_key_per_token():
    base = dict(vocab_size=50, d_model=D, num_heads=H, num_layers=2, positional="rope")
    mla = {"name": "mla", **SIZES}
    prompt, new = 7, 5
    sizes = {}
    for name, config in {"mla": {**base, "attention": mla}, "gqa": {**base, "num_kv_heads": 2}}.items():
        model = build_causal_lm(config).eval()
        cache = KVCache(2, capacity=prompt + new)
        with torch.no_grad():
            model(torch.randint(50, (3, prompt)), cache=cache)
            for _ in range(new):
                model(torch.randint(50, (3, 1)), cache=cache)
        sizes[name] = cache.nbytes / (3 * (prompt + new) * 2 * 4)  # values per token per layer (fp32)
    assert sizes["mla"] == SIZES["kv_lora_rank"] + SIZES["qk_rope_head_dim"]  # 24 + 4
    assert sizes["gqa"] == 2 * 2 * (D // H)  # 2 x kv_heads x head_dim = 64


def test_latent_ranks_and_kernels_are_checked():
    with pytest.raises(
        ConfigError, match=r"mla: kv_lora_rank=80 is larger than d_model=64, .*choose kv_lora_rank <= 64"
    ):
        MultiHeadLatentAttention(d_model=D, num_heads=H, kv_lora_rank=80)
    with pytest.raises(ConfigError, match=r"mla: q_lora_rank=65 is larger than d_model=64"):
        MultiHeadLatentAttention(d_model=D, num_heads=H, q_lora_rank=65)
    with pytest.raises(ConfigError, match=r"mla: qk_rope_head_dim=3 must be a positive even integer"):
        MultiHeadLatentAttention(d_model=D, num_heads=H, qk_rope_head_dim=3)
    with pytest.raises(ConfigError, match=r"mla: kernel 'linear' cannot attend inside latent attention"):
        MultiHeadLatentAttention(d_model=D, num_heads=H, kernel="linear")
    with pytest.raises(ConfigError, match=r"qk_norm does not apply to attention 'mla'"):
        build_causal_lm(
            dict(vocab_size=50, d_model=D, num_heads=H, num_layers=1, attention="mla", qk_norm="rmsnorm")
        )


def test_mla_over_a_sliding_window_with_sinks_caches_only_the_window():
    kernel = {"name": "sliding_window", "window": 3, "sinks": True}
    config = dict(vocab_size=50, d_model=32, num_heads=4, num_layers=2, positional="rope", init_std=0.2,
                  attention={"name": "mla", "q_lora_rank": 8, "kernel": kernel})  # fmt: skip
    model = build_causal_lm(config).eval()
    assert model.decoder.layers[0].self_attention.sublayer.kernel.kernel.sinks.shape == (4,)
    ids = torch.randint(50, (2, 9))
    cache = KVCache(2)
    with torch.no_grad():
        steps = [model(ids[:, :3], cache=cache)] + [
            model(ids[:, i : i + 1], cache=cache) for i in range(3, 9)
        ]
        torch.testing.assert_close(torch.cat(steps, 1), model(ids), atol=1e-5, rtol=1e-5)
    assert [layer.self_attention.keys.size(2) for layer in cache.layers] == [3, 3]
