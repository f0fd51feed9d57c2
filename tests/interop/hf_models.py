"""Hugging Face models built from configs with random weights (no download), saved to a local directory."""

from __future__ import annotations

from pathlib import Path

import torch

transformers = __import__("pytest").importorskip(
    "transformers", reason="the references are Hugging Face models"
)

CAUSAL = {
    "gpt2-tied": lambda: transformers.GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=4,
        vocab_size=61,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gpt2-untied-relu": lambda: transformers.GPT2Config(
        n_embd=24,
        n_layer=2,
        n_head=2,
        n_inner=40,
        vocab_size=61,
        n_positions=64,
        activation_function="relu",
        tie_word_embeddings=False,
        layer_norm_epsilon=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "llama-gqa": lambda: transformers.LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "llama-mqa-tied-bias-llama3-headdim": lambda: transformers.LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=12,
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=True,
        attention_bias=True,
        mlp_bias=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "mistral-window": lambda: transformers.MistralConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        sliding_window=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen2-biases": lambda: transformers.Qwen2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen2-gqa-yarn": lambda: transformers.Qwen2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        max_position_embeddings=64,
        rope_parameters={  # a ramp over the dimensions at this head size: betas of 8 and 1 over 16 positions
            "rope_type": "yarn",
            "rope_theta": 1000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "beta_fast": 8.0,
            "beta_slow": 1.0,
        },
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen2-gqa-untied-late-window": lambda: transformers.Qwen2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=False,
        use_sliding_window=True,  # layers from max_window_layers on slide: layers 1 and 2
        sliding_window=3,
        max_window_layers=1,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen2-mqa-window-pattern": lambda: transformers.Qwen2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        intermediate_size=48,
        vocab_size=61,
        use_sliding_window=True,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],  # period 2 over 3
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "llama-mqa-yarn-mscale-untruncated": lambda: transformers.LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=12,
        intermediate_size=48,
        vocab_size=61,
        max_position_embeddings=64,
        rope_parameters={  # DeepSeek's attention factor (mscale over mscale_all_dim), gpt-oss's untruncated ramp
            "rope_type": "yarn",
            "rope_theta": 500.0,
            "factor": 8.0,
            "original_max_position_embeddings": 8,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
            "truncate": False,
        },
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen3-gqa-headdim-late-window": lambda: transformers.Qwen3Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        intermediate_size=48,
        vocab_size=61,
        use_sliding_window=True,  # layers from max_window_layers on slide: layers 1 and 2, a list of layers
        sliding_window=4,
        max_window_layers=1,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen3-mqa-tied-bias-pattern": lambda: transformers.Qwen3Config(
        hidden_size=32,
        num_hidden_layers=5,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=True,
        attention_bias=True,
        use_sliding_window=True,
        sliding_window=3,
        layer_types=["sliding_attention", "full_attention"] * 2 + ["sliding_attention"],  # period 2 of 5
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "smollm3-gqa-nope-every-third": lambda: transformers.SmolLM3Config(
        hidden_size=32,
        num_hidden_layers=5,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        no_rope_layer_interval=3,  # layer 2 is NoPE: a pattern of period 3 over 5 layers
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "smollm3-mqa-headdim-window-untied-biases": lambda: transformers.SmolLM3Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=12,  # not a SmolLM3Config field, but its attention and rope read it
        intermediate_size=48,
        vocab_size=61,
        no_rope_layers=[1, 0, 1, 1],
        use_sliding_window=True,  # the NoPE layer slides
        sliding_window=4,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "phi3-gqa-window": lambda: transformers.Phi3Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=61,
        sliding_window=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "phi3-mqa-headdim-tied": lambda: transformers.Phi3Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=12,  # not a Phi3Config field, but Phi3Attention and its rope read it
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gemma2-gqa-headdim-capped-pattern": lambda: transformers.Gemma2Config(
        hidden_size=32,
        num_hidden_layers=5,  # layer_types left out: sliding, full, ... a pattern of period 2 over 5 layers
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        query_pre_attn_scalar=10,  # scores scaled by 10^-0.5, not head_dim^-0.5
        intermediate_size=48,
        vocab_size=61,
        sliding_window=4,
        attn_logit_softcapping=1.5,  # caps near the scores and logits (a few units): they move the logits by 1-3
        final_logit_softcapping=10.0,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gemma2-mqa-untied-bias-uncapped-list": lambda: transformers.Gemma2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        query_pre_attn_scalar=8,
        intermediate_size=48,
        vocab_size=61,
        layer_types=["full_attention", "sliding_attention", "sliding_attention"],  # a list: no period repeats
        sliding_window=3,
        attn_logit_softcapping=None,  # full layers: sdpa
        final_logit_softcapping=None,
        attention_bias=True,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gemma3-gqa-headdim-pattern-local-rope": lambda: transformers.Gemma3TextConfig(
        hidden_size=32,
        num_hidden_layers=5,
        sliding_window_pattern=3,  # sliding, sliding, full: a period of 3 over 5 layers
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        query_pre_attn_scalar=10,
        intermediate_size=48,
        vocab_size=61,
        sliding_window=4,
        final_logit_softcapping=10.0,
        attn_logit_softcapping=1.5,  # ignored by transformers' Gemma 3 attention, and so by the import
        rope_parameters={  # the full layers' rope scaled, the sliding layers' of another base
            "full_attention": {"rope_type": "linear", "rope_theta": 5000.0, "factor": 2.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        },
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gemma3-mqa-untied-bias-list": lambda: transformers.Gemma3TextConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        query_pre_attn_scalar=8,
        intermediate_size=48,
        vocab_size=61,
        layer_types=[
            "full_attention",
            "sliding_attention",
            "full_attention",
        ],  # period 2 over 3; bases 1e6, 1e4
        sliding_window=3,
        attention_bias=True,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "olmo2-gqa-headdim-tied-linear-rope": lambda: transformers.Olmo2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,  # not an Olmo2Config field, but Olmo2Attention and its rope read it: q_norm over 48
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "olmo2-mqa-untied-bias-geglu-llama3": lambda: transformers.Olmo2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,  # k_norm over one head's E
        intermediate_size=48,
        vocab_size=61,
        tie_word_embeddings=False,
        attention_bias=True,  # q, k, v and o
        hidden_act="gelu",  # a GeGLU FFN
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "mixtral-gqa-window-top2": lambda: transformers.MixtralConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=24,  # each expert's width
        num_local_experts=4,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.02,
        vocab_size=61,
        sliding_window=4,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "mixtral-mqa-headdim-tied-top3": lambda: transformers.MixtralConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=12,
        intermediate_size=16,
        num_local_experts=5,
        num_experts_per_tok=3,
        vocab_size=61,
        sliding_window=None,  # full attention
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen3_moe-gqa-headdim-every-second-sparse": lambda: transformers.Qwen3MoeConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        intermediate_size=40,  # the dense layers' width
        moe_intermediate_size=16,  # each expert's
        num_experts=4,
        num_experts_per_tok=2,
        decoder_sparse_step=2,  # layers 1 and 3 sparse, 0 and 2 dense: a pattern
        norm_topk_prob=False,  # the top-k softmax weights as they are
        vocab_size=61,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "qwen3_moe-mqa-tied-window-mlp-only-normalized": lambda: transformers.Qwen3MoeConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=40,
        moe_intermediate_size=16,
        num_experts=4,
        num_experts_per_tok=2,
        mlp_only_layers=[0],  # one dense layer, then two sparse: a list
        norm_topk_prob=True,
        use_sliding_window=True,  # every layer slides
        sliding_window=5,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        vocab_size=61,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gpt_oss-gqa-headdim-window-yarn-top2": lambda: transformers.GptOssConfig(
        hidden_size=32,
        num_hidden_layers=3,  # sliding, full, sliding: a pattern of period 2 over 3 layers
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,  # H E = 48, not D
        intermediate_size=16,  # each expert's width
        num_local_experts=4,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.02,
        sliding_window=4,  # shorter than the inputs
        max_position_embeddings=64,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 500.0,
            "factor": 4.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 16,
        },
        vocab_size=61,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "gpt_oss-mqa-tied-full-sliding-list-top3": lambda: transformers.GptOssConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=16,
        num_local_experts=5,
        num_experts_per_tok=3,
        layer_types=["full_attention", "sliding_attention", "sliding_attention"],  # no pattern: a list
        sliding_window=3,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        rms_norm_eps=1e-6,
        vocab_size=61,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "deepseek_v3-qlora-interleaved-yarn-grouped-first-dense": lambda: transformers.DeepseekV3Config(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=16,  # the low-rank query path
        kv_lora_rank=24,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=6,
        rope_interleave=True,  # DeepSeek's checkpoints: rope dims in pairs
        rope_parameters={  # YaRN, the softmax scaled by mscale_all_dim's mscale, cos and sin by the ratio
            "rope_type": "yarn",
            "rope_theta": 1000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "mscale": 1.0,
            "mscale_all_dim": 0.8,
        },
        max_position_embeddings=64,
        intermediate_size=48,  # the dense layer's width
        moe_intermediate_size=16,  # each expert's (the shared one's: n_shared_experts x 16)
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,  # experts from the 2 best of 4 groups
        first_k_dense_replace=1,  # layer 0 dense, 1 and 2 sparse: a list
        routed_scaling_factor=2.5,
        vocab_size=61,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "deepseek_v3-plain-q-halves-bias-tied-unnormalized": lambda: transformers.DeepseekV3Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=None,  # one q_proj
        kv_lora_rank=16,
        qk_nope_head_dim=12,
        qk_rope_head_dim=8,
        v_head_dim=10,
        rope_interleave=False,  # rope dims in halves
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        attention_bias=True,
        intermediate_size=40,
        moe_intermediate_size=12,
        n_routed_experts=6,
        n_shared_experts=2,
        num_experts_per_tok=3,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=0,  # every layer sparse
        norm_topk_prob=False,
        routed_scaling_factor=1.5,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        vocab_size=61,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
}

SEQ2SEQ = {
    "t5-v1_1-gated-gelu": lambda: transformers.T5Config(
        d_model=32,
        d_kv=12,  # H E = 48, not D: the projections are D -> H E
        d_ff=48,
        num_layers=3,
        num_decoder_layers=2,  # not more than num_layers: transformers 5.24 sizes T5's decoder cache by num_layers
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,  # as v1.1 configs say: transformers 5 then skips the output scale
        vocab_size=61,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    ),
    "t5-v1_0-relu-scaled": lambda: transformers.T5Config(
        d_model=24,
        d_kv=6,
        d_ff=40,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=6,
        relative_attention_max_distance=12,
        feed_forward_proj="relu",  # tie_word_embeddings left alone: the decoder output is scaled by D^-0.5
        layer_norm_epsilon=1e-5,
        vocab_size=61,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    ),
    "bart-tied": lambda: transformers.BartConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        vocab_size=61,
        max_position_embeddings=40,
    ),
    "bart-scaled-untied": lambda: transformers.BartConfig(
        d_model=24,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=40,
        decoder_ffn_dim=40,
        vocab_size=61,
        max_position_embeddings=40,
        scale_embedding=True,
        tie_word_embeddings=False,
    ),
    "marian-swish": lambda: transformers.MarianConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        vocab_size=61,
        max_position_embeddings=64,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=3,
        decoder_start_token_id=3,
        eos_token_id=0,
    ),
    "marian-unshared": lambda: transformers.MarianConfig(
        d_model=24,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=40,
        decoder_ffn_dim=40,
        vocab_size=61,
        decoder_vocab_size=47,
        share_encoder_decoder_embeddings=False,
        max_position_embeddings=64,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=3,
        decoder_start_token_id=3,
        eos_token_id=0,
    ),
}

MASKED = {  # every one away from a default: activations, norm eps, token types, ties, RoBERTa's padding id
    "bert-types-tanh-eps": lambda: transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        vocab_size=61,
        max_position_embeddings=40,
        type_vocab_size=3,
        hidden_act="gelu_new",
        layer_norm_eps=1e-7,
    ),
    "bert-untied-relu": lambda: transformers.BertConfig(
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=40,
        vocab_size=61,
        max_position_embeddings=32,
        hidden_act="relu",
        tie_word_embeddings=False,
        pad_token_id=2,
    ),
    "roberta-tied": lambda: transformers.RobertaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        vocab_size=61,
        max_position_embeddings=42,
        type_vocab_size=1,
    ),
    "roberta-untied-relu-pad3": lambda: transformers.RobertaConfig(
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=40,
        vocab_size=61,
        max_position_embeddings=40,
        type_vocab_size=2,
        hidden_act="relu",  # the FFN's; RoBERTa's head keeps exact GELU
        tie_word_embeddings=False,
        pad_token_id=3,
        layer_norm_eps=1e-5,
    ),
}


def hf_model(name: str, seed: int = 0):
    """The HF model ``name`` of :data:`CAUSAL`, :data:`SEQ2SEQ` or :data:`MASKED`, random weights (biases and
    norms too), in eval mode."""
    torch.manual_seed(seed)
    if name in MASKED:
        model = transformers.AutoModelForMaskedLM.from_config(MASKED[name]()).eval()
        _spread_weights(model, gain=1.5)
    elif name in SEQ2SEQ:
        model = transformers.AutoModelForSeq2SeqLM.from_config(SEQ2SEQ[name]()).eval()
        with (
            torch.no_grad()
        ):  # HF's small layer weights beside unit embeddings make greedy decoding repeat the
            for (
                key,
                weight,
            ) in model.named_parameters():  # start token; weights of 1/sqrt(fan_in) make it vary
                if weight.dim() == 2 and "embed" not in key and "shared" not in key and "relative" not in key:
                    weight.normal_(0.0, weight.size(1) ** -0.5)
    else:
        model = transformers.AutoModelForCausalLM.from_config(CAUSAL[name]()).eval()
        _spread_weights(model, gain=1.5)
    with torch.no_grad():  # HF initializes biases to zero and norms to one: make them tell tensors apart
        for key, tensor in model.state_dict().items():
            if (
                key.endswith("bias")
                or "norm" in key
                or "LayerNorm" in key  # BERT's
                or key.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
            ):
                tensor.add_(torch.randn_like(tensor) * 0.1)
            elif key.endswith("self_attn.sinks"):  # GPT-OSS's, N(0, 0.02): logits of a few units, as trained
                tensor.normal_(0.0, 1.0)
            elif key.endswith("mlp.router.weight"):  # GPT-OSS's router is no nn.Linear: routing by the token
                tensor.normal_(0.0, 1.5 * tensor.size(1) ** -0.5)
    return model


def _spread_weights(model, *, gain: float) -> None:
    """Every weight matrix, embeddings and output layer included, drawn with std ``gain / sqrt(fan_in)``.

    With HF's std 0.02 attention is nearly uniform and the logits are near zero: a wrong rope base or a wrong
    1 / sqrt(E) moves them by less than 1e-4, and greedy decoding repeats one token. Here q . k / sqrt(E) and the
    logits are a few units; gain 1.5 (rather than 1) is what makes every greedy row of the tests vary, with top-2
    logit gaps along the way far above fp32 noise.
    """
    from transformers.pytorch_utils import Conv1D

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Conv1D):  # GPT-2's projections store (in, out)
                module.weight.normal_(0.0, gain * module.weight.size(0) ** -0.5)
            elif isinstance(module, torch.nn.Linear | torch.nn.Embedding):  # (out, in); (V, D)
                module.weight.normal_(0.0, gain * module.weight.size(1) ** -0.5)
        for weight in model.parameters():  # an MoE's experts, stacked: (E, out, in)
            if weight.dim() == 3:
                weight.normal_(0.0, gain * weight.size(2) ** -0.5)
        for module in model.modules():  # a sigmoid router's weight (DeepSeek-V3's): scores spread over (0, 1)
            if hasattr(module, "e_score_correction_bias"):
                module.weight.normal_(0.0, gain * module.weight.size(1) ** -0.5)


def save(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory
