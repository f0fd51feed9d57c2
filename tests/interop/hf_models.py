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
}


def hf_model(name: str, seed: int = 0):
    """The HF model ``name`` of :data:`CAUSAL`, random weights (biases and norms too), in eval mode."""
    torch.manual_seed(seed)
    config = CAUSAL[name]()
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # HF initializes biases to zero and norms to one: make them tell tensors apart
        for key, tensor in model.state_dict().items():
            if (
                key.endswith("bias")
                or "norm" in key
                or key.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
            ):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return model


def save(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory
