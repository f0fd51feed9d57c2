"""``generate(compile=True)``: the compiled one-token step gives the eager step's tokens."""

from __future__ import annotations

import pytest
import torch
from tests.weights import spread_weights

from swapformer import build_causal_lm, build_seq2seq
from swapformer.generation import left_pad

LLAMA_LIKE = dict(
    vocab_size=40,
    d_model=32,
    num_heads=4,
    num_kv_heads=2,
    num_layers=2,
    d_ff=64,
    positional="rope",
    norm="rmsnorm",
    placement="pre",
    ffn="swiglu",
    dropout=0.0,
)


@pytest.mark.slow  # compiles two graphs: about a minute on a CPU
def test_compiled_steps_give_the_eager_tokens():
    # spread weights: at std 0.02 greedy and beam rows repeat the prompt's last token, and an eager step with its
    # queries zeroed (self- or cross-attention) gave the compiled step's tokens
    torch.manual_seed(0)
    causal = spread_weights(build_causal_lm(LLAMA_LIKE).eval(), gain=2.0)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [11, 12, 13]])
    eager = causal.generate(ids, mask, max_new_tokens=12, eos_token_id=[])
    assert torch.equal(causal.generate(ids, mask, max_new_tokens=12, eos_token_id=[], compile=True), eager)
    assert all(len(set(row[-12:].tolist())) > 3 for row in eager)  # rows that vary: the steps matter
    beams = causal.generate(ids, mask, max_new_tokens=6, num_beams=3, eos_token_id=[])
    assert torch.equal(
        causal.generate(ids, mask, max_new_tokens=6, num_beams=3, eos_token_id=[], compile=True), beams
    )

    seq2seq = spread_weights(
        build_seq2seq(dict(vocab_size=40, d_model=32, num_heads=4, num_layers=2, d_ff=64)).eval(), gain=2.0
    )
    source = torch.randint(3, 40, (2, 7))
    kwargs = dict(max_new_tokens=10, decoder_start_token_id=1, eos_token_id=[])
    assert torch.equal(seq2seq.generate(source, compile=True, **kwargs), seq2seq.generate(source, **kwargs))


def test_compile_needs_the_cache():
    net = build_causal_lm(dict(vocab_size=30, d_model=16, num_heads=2, num_layers=1))
    with pytest.raises(ValueError, match=r"compile=True .* pass use_cache=True"):
        net.generate(torch.tensor([[4, 5]]), compile=True, use_cache=False)
