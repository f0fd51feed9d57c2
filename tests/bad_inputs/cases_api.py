"""Python API mistakes: model configs, the ids and masks a model is called with, and generate's arguments."""

from __future__ import annotations

from functools import cache

import torch

from .harness import Case

CONFIG = {"vocab_size": 50, "d_model": 16, "num_heads": 2, "num_layers": 1, "d_ff": 32, "max_seq_len": 16}


@cache
def _model(kind: str) -> torch.nn.Module:
    import swapformer

    build = {"causal": swapformer.build_causal_lm, "seq2seq": swapformer.build_seq2seq}
    build["masked"] = swapformer.build_masked_lm
    return build[kind](CONFIG).eval()


def _ids(length: int = 5) -> torch.Tensor:
    return torch.arange(4, 4 + 2 * length).reshape(2, length)


def _build(**changes: object) -> object:
    import swapformer

    return swapformer.build_causal_lm({**CONFIG, **changes})


def _from_hf_bert() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    return from_hf(transformers.BertModel(config))


def _with_defaults(**settings: object) -> torch.nn.Module:
    import swapformer

    model = swapformer.build_causal_lm(CONFIG).eval()
    model.generation_config = swapformer.GenerationDefaults(**settings)
    return model


def _load_with_generation_config(fx: object, settings: dict) -> object:
    import json

    import swapformer

    directory = _with_defaults(max_length=10).save_pretrained(fx.tmp / "saved")
    (directory / "generation_config.json").write_text(json.dumps(settings))
    return swapformer.load(directory)


GEMMA = dict(
    positional="rope",
    norm={"name": "rmsnorm", "unit_offset": True},
    placement="sandwich",
    ffn={"name": "geglu", "approximate": "tanh", "bias": False},
    bias=False,
    scale_embeddings=True,
)


def _to_hf_gemma2_scale(fx: object) -> object:
    import swapformer

    return swapformer.to_hf(_build(**GEMMA, attention_scale=0.3), fx.tmp / "hf", model_type="gemma2")


def _to_hf_gemma3_capped(fx: object) -> object:
    import swapformer

    model = _build(
        **GEMMA, qk_norm={"name": "rmsnorm", "unit_offset": True}, attention={"name": "math", "softcap": 50.0}
    )
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="gemma3_text")


def _to_hf_olmo2_head_scope(fx: object) -> object:
    import swapformer

    olmo2 = dict(positional="rope", norm="rmsnorm", placement="res_post", ffn="swiglu", bias=False)
    model = _build(**olmo2, qk_norm="rmsnorm", qk_norm_scope="head")
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="olmo2")


def _to_hf_gemma3_projection_scope(fx: object) -> object:
    import swapformer

    model = _build(**GEMMA, qk_norm={"name": "rmsnorm", "unit_offset": True}, qk_norm_scope="projection")
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="gemma3_text")


def _from_hf_bidirectional_gemma2() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.Gemma2Config(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        head_dim=8,
        intermediate_size=32,
        use_bidirectional_attention=True,
    )
    return from_hf(transformers.Gemma2ForCausalLM(config))


def _from_hf_partial_rope() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.Phi3Config(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        pad_token_id=0,
        eos_token_id=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    )
    return from_hf(transformers.Phi3ForCausalLM(config))


CASES = [
    Case(
        id="api-causal-float-ids",
        area="API",
        mistake="a causal LM called with float token ids (`torch.tensor([[1.0, 5.0]])`)",
        expect=r"input_ids has dtype float32; token ids must be integers: pass input_ids\.long\(\)",
        raises=lambda fx: _model("causal")(_ids().float()),
    ),
    Case(
        id="api-causal-1d-ids",
        area="API",
        mistake="a causal LM called with one sequence of ids, no batch dimension",
        expect=r"input_ids has shape \(5,\); expected \(N, L\): add the batch dimension with input_ids\.unsqueeze\(0\)",
        raises=lambda fx: _model("causal")(_ids()[0]),
    ),
    Case(
        id="api-causal-ids-beyond-vocab",
        area="API",
        mistake="token ids from a tokenizer larger than the model's vocabulary",
        expect=r"input_ids holds ids from 4 to 60 but the model's vocabulary has 50 ids .* the tokenizer and the "
        r"model disagree",
        raises=lambda fx: _model("causal")(torch.tensor([[4, 60]])),
    ),
    Case(
        id="api-causal-negative-ids",
        area="API",
        mistake="ids holding -100 (the loss's ignore index) passed as input",
        expect=r"input_ids holds ids from -100 to \d+",
        raises=lambda fx: _model("causal")(torch.tensor([[5, 6, -100]])),
    ),
    Case(
        id="api-empty-ids",
        area="API",
        mistake="a model called with ids of length 0",
        expect=r"input_ids has shape \(2, 0\): pass a non-empty \(N, L\) batch",
        raises=lambda fx: _model("causal")(_ids()[:, :0]),
    ),
    Case(
        id="api-causal-float-additive-mask",
        area="API",
        mistake="an additive float mask (0 / -inf) as `attention_mask`",
        expect=r"attention_mask has dtype float32; expected bool or 0/1 integers.*\(attention_mask == 0\)",
        raises=lambda fx: _model("causal")(_ids(), torch.zeros(2, 5)),
    ),
    Case(
        id="api-causal-mask-shape",
        area="API",
        mistake="an `attention_mask` of another length than the ids",
        expect=r"attention_mask has shape \(2, 4\) but the ids have shape \(2, 5\)",
        raises=lambda fx: _model("causal")(_ids(), torch.ones(2, 4, dtype=torch.bool)),
    ),
    Case(
        id="api-mask-not-0-1",
        area="API",
        mistake="an integer mask holding token ids instead of 0 and 1",
        expect=r"attention_mask holds values from 4 to 13; expected 0 \(padding\) and 1 \(real token\)",
        raises=lambda fx: _model("masked")(_ids(), _ids()),
    ),
    Case(
        id="api-masked-3d-ids",
        area="API",
        mistake="a masked LM called with a 3-D batch of ids",
        expect=r"input_ids has shape \(1, 2, 5\); expected \(N, L\)",
        raises=lambda fx: _model("masked")(_ids()[None]),
    ),
    Case(
        id="api-masked-sequence-beyond-table",
        area="API",
        mistake="a masked LM (learned positions) called with a sequence longer than its max_seq_len",
        expect=r"beyond the learned positional table of size max_seq_len=16.*raise max_seq_len",
        raises=lambda fx: _model("masked")(torch.full((1, 20), 5)),
    ),
    Case(
        id="api-seq2seq-tgt-beyond-vocab",
        area="API",
        mistake="a seq2seq model's target ids beyond its vocabulary",
        expect=r"tgt_ids holds ids from 4 to 99 but the model's vocabulary has 50 ids",
        raises=lambda fx: _model("seq2seq")(_ids(), torch.tensor([[4, 99], [5, 6]])),
    ),
    Case(
        id="api-seq2seq-src-mask-dtype",
        area="API",
        mistake="a float `src_mask` for a seq2seq model",
        expect=r"src_mask has dtype float32; expected bool or 0/1 integers",
        raises=lambda fx: _model("seq2seq")(_ids(), _ids(), torch.ones(2, 5)),
    ),
    Case(
        id="api-generate-eos-outside-vocab",
        area="API",
        mistake="`generate(eos_token_id=...)` with an id the model's vocabulary does not have",
        expect=r"eos_token_id=50256 is not a token id of the model's vocabulary \(0\.\.49\).*tokenizer\.eos_id",
        raises=lambda fx: _model("causal").generate(_ids(), eos_token_id=50256),
    ),
    Case(
        id="api-generate-pad-negative",
        area="API",
        mistake="`generate(pad_token_id=-1)` (a tokenizer without padding)",
        expect=r"pad_token_id=-1 is not a token id of the model's vocabulary",
        raises=lambda fx: _model("causal").generate(_ids(), pad_token_id=-1),
    ),
    Case(
        id="api-generate-start-outside-vocab",
        area="API",
        mistake="a seq2seq `generate(decoder_start_token_id=...)` outside the target vocabulary",
        expect=r"decoder_start_token_id=50 is not a token id.*tokenizer\.bos_id",
        raises=lambda fx: _model("seq2seq").generate(_ids(), decoder_start_token_id=50),
    ),
    Case(
        id="api-generate-1d-prompt",
        area="API",
        mistake="`generate` given one prompt without the batch dimension",
        expect=r"input_ids has shape \(5,\); expected \(N, L\)",
        raises=lambda fx: _model("causal").generate(_ids()[0]),
    ),
    Case(
        id="api-generate-max-new-tokens-0",
        area="API",
        mistake="`generate(max_new_tokens=0)`",
        expect=r"max_new_tokens=0 must be an int >= 1",
        raises=lambda fx: _model("causal").generate(_ids(), max_new_tokens=0),
    ),
    Case(
        id="api-generate-num-beams-0",
        area="API",
        mistake="`generate(num_beams=0)`",
        expect=r"num_beams=0 must be an int >= 1",
        raises=lambda fx: _model("causal").generate(_ids(), num_beams=0),
    ),
    Case(
        id="api-generate-top-p-above-1",
        area="API",
        mistake="`generate(do_sample=True, top_p=1.5)`",
        expect=r"top_p=1\.5 must be in \(0, 1\]",
        raises=lambda fx: _model("causal").generate(_ids(), do_sample=True, top_p=1.5),
    ),
    Case(
        id="api-generate-temperature-0-sampling",
        area="API",
        mistake="`generate(do_sample=True, temperature=0)` for greedy output",
        expect=r"temperature=0 must be > 0 when sampling \(for the argmax, do_sample=False\)",
        raises=lambda fx: _model("causal").generate(_ids(), do_sample=True, temperature=0),
    ),
    Case(
        id="api-generate-top-k-without-sampling",
        area="API",
        mistake="`generate(top_k=50)` without `do_sample=True`",
        expect=r"apply only when sampling: pass do_sample=True",
        raises=lambda fx: _model("causal").generate(_ids(), top_k=50),
    ),
    Case(
        id="api-generate-max-length-no-room",
        area="API",
        mistake="`generate(max_length=4)` for 5-token prompts (max_length counts the prompt, as in transformers)",
        expect=r"max_length=4 \(passed\) leaves no room for a new token after 5 prompt tokens: pass max_new_tokens",
        raises=lambda fx: _model("causal").generate(_ids(), max_length=4),
    ),
    Case(
        id="api-generate-no-repeat-ngram-negative",
        area="API",
        mistake="`generate(no_repeat_ngram_size=-1)`",
        expect=r"no_repeat_ngram_size=-1 must be an int >= 0 \(0 = off\)",
        raises=lambda fx: _model("causal").generate(_ids(), no_repeat_ngram_size=-1),
    ),
    Case(
        id="api-generate-forced-eos-outside-vocab",
        area="API",
        mistake="`generate(forced_eos_token_id=...)` with an id the model's vocabulary does not have",
        expect=r"forced_eos_token_id=50 holds 50, which is not a token id of the model's vocabulary \(0\.\.49\)",
        raises=lambda fx: _model("causal").generate(_ids(), forced_eos_token_id=50),
    ),
    Case(
        id="api-generate-unapplied-default",
        area="API",
        mistake="`generate()` of a model whose generation defaults hold a setting swapformer cannot apply "
        "(group beam search)",
        expect=r"sets num_beam_groups=2, which changes the tokens and has no swapformer equivalent: remove it",
        raises=lambda fx: _with_defaults(unapplied={"num_beam_groups": 2}).generate(_ids()),
    ),
    Case(
        id="api-generation-defaults-wrong-type",
        area="API",
        mistake="a `generation_config.json` whose num_beams is a string",
        expect=r"generation_config\.json: num_beams='4' must be an int",
        raises=lambda fx: _load_with_generation_config(fx, {"num_beams": "4"}),
    ),
    Case(
        id="api-config-heads-do-not-divide",
        area="API",
        mistake="`build_causal_lm` with d_model not divisible by num_heads",
        expect=r"d_model=30 is not divisible by num_heads=4; pick num_heads from \[",
        raises=lambda fx: _build(d_model=30, num_heads=4),
    ),
    Case(
        id="api-config-unknown-component",
        area="API",
        mistake="a misspelt component name (`norm: rmsnrom`)",
        expect=r"unknown norm 'rmsnrom' \(did you mean 'rmsnorm'\?\)",
        raises=lambda fx: _build(norm="rmsnrom"),
    ),
    Case(
        id="api-config-unknown-key",
        area="API",
        mistake="a misspelt ModelConfig key (`dmodel`)",
        expect=r"unknown key 'dmodel' \(did you mean 'd_model'\?\)",
        raises=lambda fx: _build(dmodel=64),
    ),
    Case(
        id="api-config-eos-outside-vocab",
        area="API",
        mistake="a ModelConfig whose eos_token_id is not below vocab_size",
        expect=r"eos_token_id=60 is outside the vocabulary \(vocab_size=50\)",
        raises=lambda fx: _build(eos_token_id=60),
    ),
    Case(
        id="api-config-kv-heads",
        area="API",
        mistake="num_heads not divisible by num_kv_heads (grouped-query attention)",
        expect=r"num_heads=8 is not divisible by num_kv_heads=3",
        raises=lambda fx: _build(num_heads=8, num_kv_heads=3),
    ),
    Case(
        id="api-builder-wrong-kind",
        area="API",
        mistake="`build_causal_lm` given a seq2seq config",
        expect=r"this builder makes causal_lm models but the config's kind is 'seq2seq'",
        raises=lambda fx: _build(kind="seq2seq"),
    ),
    Case(
        id="api-from-hf-unsupported",
        area="API",
        mistake="`from_hf` of a model family swapformer does not read (BERT)",
        expect=r"model_type 'bert' is not supported; swapformer reads ",
        raises=lambda fx: _from_hf_bert(),
    ),
    Case(
        id="api-from-hf-unsupported-option",
        area="API",
        mistake="`from_hf` of a Phi-3 whose rope turns half of each head (`partial_rotary_factor: 0.5`)",
        expect=r"phi3: partial_rotary_factor=0\.5 \(rope on part of each head\) has no swapformer equivalent",
        raises=lambda fx: _from_hf_partial_rope(),
    ),
    Case(
        id="api-from-hf-bidirectional-decoder",
        area="API",
        mistake="`from_hf` of a Gemma 2 whose decoder sees later tokens (`use_bidirectional_attention: true`)",
        expect=r"gemma2: use_bidirectional_attention: true \(a decoder that sees later tokens\) has no swap",
        raises=lambda fx: _from_hf_bidirectional_gemma2(),
    ),
    Case(
        id="api-to-hf-gemma2-attention-scale",
        area="API",
        mistake="`to_hf(model_type='gemma2')` of a Gemma-shaped model whose `attention_scale` (0.3) is no "
        "integer's `query_pre_attn_scalar ** -0.5`",
        expect=r"cannot export to Hugging Face gemma2: attention_scale=0\.3 \(Gemma's scale is an integer",
        raises=_to_hf_gemma2_scale,
    ),
    Case(
        id="api-to-hf-gemma3-capped-scores",
        area="API",
        mistake="`to_hf(model_type='gemma3_text')` of a model with q/k norms whose attention scores are soft-capped "
        "(`attention: {name: math, softcap: 50.0}`)",
        expect=r"cannot export to Hugging Face gemma3_text: attention softcap 50\.0 \(transformers' Gemma 3 ignores",
        raises=_to_hf_gemma3_capped,
    ),
    Case(
        id="api-rope-yarn-betas-swapped",
        area="API",
        mistake="a YaRN rope whose `beta_fast` is below its `beta_slow` (`{name: rope, scaling: yarn, factor: 4, "
        "beta_fast: 1, beta_slow: 32}`)",
        expect=r"rope yarn needs beta_fast above beta_slow .*got beta_fast=1\.0, beta_slow=32\.0: swap them",
        raises=lambda fx: _build(
            positional={"name": "rope", "scaling": "yarn", "factor": 4.0, "beta_fast": 1.0, "beta_slow": 32.0}
        ),
    ),
    Case(
        id="api-rope-option-of-another-scaling",
        area="API",
        mistake="a YaRN option on a Llama 3 rope (`{name: rope, scaling: llama3, factor: 8, beta_fast: 16}`)",
        expect=r"rope options beta_fast belong to scaling: yarn, not scaling: llama3",
        raises=lambda fx: _build(
            positional={"name": "rope", "scaling": "llama3", "factor": 8.0, "beta_fast": 16.0}
        ),
    ),
    Case(
        id="api-to-hf-olmo2-head-scope",
        area="API",
        mistake="`to_hf(model_type='olmo2')` of an OLMo 2-shaped model whose q/k norms take each head "
        "(`qk_norm_scope: head`; OLMo 2's take the whole projections)",
        expect=r"cannot export to Hugging Face olmo2: qk_norm_scope 'head' \(olmo2 normalizes the whole q and k",
        raises=_to_hf_olmo2_head_scope,
    ),
    Case(
        id="api-to-hf-gemma3-projection-scope",
        area="API",
        mistake="`to_hf(model_type='gemma3_text')` of a Gemma 3-shaped model whose q/k norms take the whole "
        "projections (`qk_norm_scope: projection`; Gemma 3's take each head)",
        expect=r"cannot export to Hugging Face gemma3_text: qk_norm_scope 'projection' \(gemma3_text normalizes each",
        raises=_to_hf_gemma3_projection_scope,
    ),
]
