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


def _cache() -> object:
    from swapformer.nn import KVCache

    return KVCache(CONFIG["num_layers"])


def _ids(length: int = 5) -> torch.Tensor:
    return torch.arange(4, 4 + 2 * length).reshape(2, length)


def _build(**changes: object) -> object:
    import swapformer

    return swapformer.build_causal_lm({**CONFIG, **changes})


def _from_hf_ctrl() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.CTRLConfig(vocab_size=50, n_embd=16, n_layer=1, n_head=2, dff=32, n_positions=16)
    return from_hf(transformers.CTRLModel(config))


def _from_hf_bert_setting(fx: object, model_type: str, **setting: object) -> object:
    """``from_hf`` of a tiny BERT or RoBERTa folder whose ``config.json`` says ``setting`` (as an older or
    another checkpoint's does)."""
    import json

    import transformers

    from swapformer.interop import from_hf

    config = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}[model_type](
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    folder = fx.tmp / model_type
    transformers.AutoModelForMaskedLM.from_config(config).save_pretrained(folder)
    written = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**written, **setting}))
    return from_hf(folder)


MASKED_BERT = dict(
    kind="masked_lm",
    norm={"name": "layernorm", "eps": 1e-12},
    embedding_norm=True,
    lm_head_bias=True,
    token_types=2,
    lm_head_transform="gelu",
)


def _to_hf_roberta_offset(fx: object) -> object:
    import swapformer

    model = swapformer.build({**CONFIG, **MASKED_BERT, "positional": {"name": "learned", "offset": 2}})
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="roberta")


def _masked_with_types(**changes: object) -> torch.nn.Module:
    import swapformer

    return swapformer.build_masked_lm({**CONFIG, **changes}).eval()


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


def _to_hf_llama_sinks(fx: object) -> object:
    import swapformer

    llama = dict(positional="rope", norm="rmsnorm", placement="pre", ffn="swiglu", bias=False)
    model = _build(**llama, attention={"name": "sdpa", "sinks": True})
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="llama")


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


def _from_hf_mixtral_jitter() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.MixtralConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        num_local_experts=4, router_jitter_noise=0.1,
    )  # fmt: skip
    return from_hf(transformers.MixtralForCausalLM(config))


def _to_hf_mixtral_unnormalized(fx: object) -> object:
    import swapformer

    moe = {"name": "moe", "experts": 4, "top_k": 2, "norm_topk": False}
    model = _build(positional="rope", norm="rmsnorm", ffn=moe, bias=False)
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="mixtral")


def _from_hf_gpt_oss_alpha() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.GptOssConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
        intermediate_size=8, num_local_experts=4, num_experts_per_tok=2, swiglu_alpha=1.5,
    )  # fmt: skip
    return from_hf(transformers.GptOssForCausalLM(config))


def _from_hf_gpt_oss_sliding_without_window() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.GptOssConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, head_dim=8,
        intermediate_size=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
    )  # fmt: skip
    return from_hf(transformers.GptOssForCausalLM(config))


def _from_hf_qwen3_sliding_without_window() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.Qwen3Config(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, intermediate_size=32, layer_types=["full_attention", "sliding_attention"],
    )  # fmt: skip
    return from_hf(transformers.Qwen3ForCausalLM(config))


def _to_hf_gpt_oss_without_sinks(fx: object) -> object:
    import swapformer

    moe = {"name": "moe", "experts": 4, "top_k": 2, "expert": "clamped_swiglu", "router": "topk_softmax",
           "expert_bias": True}  # fmt: skip
    model = _build(positional="rope", norm="rmsnorm", ffn=moe, bias=True)
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="gpt_oss")


def _from_hf_deepseek_v3_grouped_kv() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.DeepseekV3Config(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=16, moe_intermediate_size=8, n_routed_experts=4, n_group=1, topk_group=1,
        kv_lora_rank=8, q_lora_rank=None, qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4,
    )  # fmt: skip
    return from_hf(transformers.DeepseekV3ForCausalLM(config))


def _to_hf_deepseek_v3_dense_after_moe(fx: object) -> object:
    import swapformer

    moe = {"name": "moe", "experts": 4, "top_k": 2, "router": "sigmoid", "shared_experts": 1}
    layers = [{}, {"ffn": "swiglu", "d_ff": 32}]
    model = _build(positional="rope", norm="rmsnorm", attention="mla", ffn=moe, num_layers=2, layers=layers)
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="deepseek_v3")


def _from_hf_quantized(fx: object) -> object:
    import json

    import transformers

    from swapformer.interop import from_hf

    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    folder = fx.tmp / "quantized"
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    written = json.loads((folder / "config.json").read_text())
    written["quantization_config"] = {"quant_method": "mxfp4"}  # as GPT-OSS's released checkpoints say
    (folder / "config.json").write_text(json.dumps(written))
    return from_hf(folder)


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


def _from_hf_modernbert_scaled_rope() -> object:
    import transformers

    from swapformer.interop import from_hf

    config = transformers.ModernBertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 160000.0},
            "sliding_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        },
    )
    return from_hf(transformers.ModernBertForMaskedLM(config))


MODERNBERT = dict(
    positional="rope",
    norm={"name": "layernorm", "bias": False},
    placement="pre",
    ffn="geglu",
    bias=False,
    embedding_norm=True,
    first_attention_norm=False,
    lm_head_transform="gelu",
    lm_head_bias=True,
)


def _to_hf_modernbert_first_norm(fx: object) -> object:
    import swapformer

    model = swapformer.build_masked_lm({**CONFIG, **MODERNBERT, "first_attention_norm": True})
    return swapformer.to_hf(model, fx.tmp / "hf", model_type="modernbert")


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
        id="api-document-ids-shape",
        area="API",
        mistake="`document_ids` of another length than the ids (packed rows)",
        expect=r"document_ids has shape \(2, 4\) and dtype int64; pass an integer tensor of the ids' shape \(2, 5\)",
        raises=lambda fx: _model("causal")(_ids(), document_ids=torch.zeros(2, 4, dtype=torch.long)),
    ),
    Case(
        id="api-document-ids-with-cache",
        area="API",
        mistake="`document_ids` passed with a KV cache (decoding)",
        expect=r"document_ids with a KV cache: decoding continues one document; drop document_ids",
        raises=lambda fx: _model("causal")(
            _ids(), document_ids=torch.zeros(2, 5, dtype=torch.long), cache=_cache()
        ),
    ),
    Case(
        id="api-document-ids-linear-kernel",
        area="API",
        mistake="`document_ids` given to a model whose attention is `linear` (no document mask)",
        expect=r"attention 'linear' cannot keep attention within each document of a packed row \(document_ids\); use",
        raises=lambda fx: _build(attention="linear")(
            _ids(), document_ids=torch.zeros(2, 5, dtype=torch.long)
        ),
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
        mistake="`from_hf` of a model family swapformer does not read (CTRL)",
        expect=r"model_type 'ctrl' is not supported; swapformer reads ",
        raises=lambda fx: _from_hf_ctrl(),
    ),
    Case(
        id="api-from-hf-bert-relative-positions",
        area="API",
        mistake="`from_hf` of a BERT whose config.json asks for relative positions "
        "(`position_embedding_type: relative_key`)",
        expect=r"bert: position_embedding_type 'relative_key' has no swapformer equivalent \(only 'absolute'\)",
        raises=lambda fx: _from_hf_bert_setting(fx, "bert", position_embedding_type="relative_key"),
    ),
    Case(
        id="api-from-hf-bert-decoder",
        area="API",
        mistake="`from_hf` of a BERT made a causal decoder (`is_decoder: true`)",
        expect=r"bert: is_decoder: true \(a causal decoder\) has no swapformer masked_lm equivalent",
        raises=lambda fx: _from_hf_bert_setting(fx, "bert", is_decoder=True),
    ),
    Case(
        id="api-from-hf-roberta-cross-attention",
        area="API",
        mistake="`from_hf` of a RoBERTa with cross-attention layers (`add_cross_attention: true`)",
        expect=r"roberta: add_cross_attention: true \(cross-attention\) has no swapformer masked_lm equivalent",
        raises=lambda fx: _from_hf_bert_setting(fx, "roberta", add_cross_attention=True),
    ),
    Case(
        id="api-from-hf-roberta-unknown-activation",
        area="API",
        mistake="`from_hf` of a RoBERTa whose `hidden_act` (mish) swapformer has no member for",
        expect=r"roberta: hidden_act 'mish' has no swapformer member \(known: gelu, ",
        raises=lambda fx: _from_hf_bert_setting(fx, "roberta", hidden_act="mish"),
    ),
    Case(
        id="api-to-hf-roberta-position-offset",
        area="API",
        mistake="`to_hf(model_type='roberta')` of a masked LM whose positions start at row 2 while RoBERTa's "
        "start at pad_token_id + 1 (1 for pad_token_id 0)",
        expect=r"cannot export to Hugging Face roberta: positional .* \(RoBERTa has learned positions from row "
        r"pad_token_id \+ 1 = 1: \{name: learned, offset: 1\}\)",
        raises=_to_hf_roberta_offset,
    ),
    Case(
        id="api-config-token-types-negative",
        area="API",
        mistake="a masked LM with `token_types: -1`",
        expect=r"token_types=-1 must be a non-negative integer \(BERT uses 2; 0 = no table\)",
        raises=lambda fx: _masked_with_types(token_types=-1),
    ),
    Case(
        id="api-config-lm-head-transform-unknown",
        area="API",
        mistake="a misspelt `lm_head_transform` activation (`gleu`)",
        expect=r"lm_head_transform='gleu' is not a head activation \(did you mean 'gelu'\?\); use one of",
        raises=lambda fx: _masked_with_types(lm_head_transform="gleu"),
    ),
    Case(
        id="api-config-token-types-of-a-causal-lm",
        area="API",
        mistake="`token_types: 2` in a config of `kind: causal_lm` (its builder has no token-type table)",
        expect=r"token_types is an option of masked_lm models, not causal_lm; set kind: masked_lm or drop it",
        raises=lambda fx: _build(kind="causal_lm", token_types=2),
    ),
    Case(
        id="api-masked-token-types-without-table",
        area="API",
        mistake="`token_type_ids` passed to a masked LM built without a token-type table (`token_types: 0`)",
        expect=r"token_type_ids given, but the model has no token-type table \(token_types: 0\); drop them",
        raises=lambda fx: _model("masked")(_ids(), token_type_ids=torch.zeros(2, 5, dtype=torch.long)),
    ),
    Case(
        id="api-masked-token-types-beyond-table",
        area="API",
        mistake="`token_type_ids` holding type 2 for a masked LM of `token_types: 2` (types 0 and 1)",
        expect=r"token_type_ids holds types from 0 to 2 but the model has token_types=2 \(0\.\.1\)",
        raises=lambda fx: _masked_with_types(token_types=2)(
            _ids(), token_type_ids=torch.arange(10).reshape(2, 5) % 3
        ),
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
        id="api-from-hf-mixtral-router-jitter",
        area="API",
        mistake="`from_hf` of a Mixtral whose router input is jittered in training (`router_jitter_noise: 0.1`)",
        expect=r"mixtral: router_jitter_noise=0.1 \(noise on the router's input in training\) has no swapformer "
        r"equivalent; set it to 0",
        raises=lambda fx: _from_hf_mixtral_jitter(),
    ),
    Case(
        id="api-from-hf-gpt-oss-swiglu-alpha",
        area="API",
        mistake="`from_hf` of a GPT-OSS whose experts' SwiGLU has another sigmoid gain (`swiglu_alpha: 1.5`; "
        "swapformer's `clamped_swiglu` is GPT-OSS's, 1.702)",
        expect=r"gpt_oss: swiglu_alpha=1\.5 has no swapformer equivalent: the moe expert clamped_swiglu is "
        r"GPT-OSS's with swiglu_alpha 1\.702 and swiglu_limit 7\.0",
        raises=lambda fx: _from_hf_gpt_oss_alpha(),
    ),
    Case(
        id="api-from-hf-gpt-oss-sliding-without-window",
        area="API",
        mistake="`from_hf` of a GPT-OSS whose `layer_types` name sliding layers but whose `sliding_window` is null",
        expect=r"gpt_oss: layer_types\[0\] is 'sliding_attention' but gpt_oss has no window: set sliding_window$",
        raises=lambda fx: _from_hf_gpt_oss_sliding_without_window(),
    ),
    Case(
        id="api-from-hf-qwen3-sliding-without-window",
        area="API",
        mistake="`from_hf` of a Qwen3 whose `layer_types` name sliding layers but with `use_sliding_window: "
        "false` (Qwen3Config then drops `sliding_window`)",
        expect=r"qwen3: layer_types\[1\] is 'sliding_attention' but qwen3 has no window: set sliding_window, and "
        r"use_sliding_window: true$",
        raises=lambda fx: _from_hf_qwen3_sliding_without_window(),
    ),
    Case(
        id="api-from-hf-quantized",
        area="API",
        mistake="`from_hf` of a checkpoint whose weights are stored quantized (`quantization_config` in its "
        "config.json: GPT-OSS's released MXFP4 experts)",
        expect=r"holds quantized weights \(quantization_config with quant_method 'mxfp4'\); swapformer reads "
        r"full-precision weights: dequantize the model in transformers",
        raises=_from_hf_quantized,
    ),
    Case(
        id="api-from-hf-deepseek-v3-grouped-kv-heads",
        area="API",
        mistake="`from_hf` of a DeepSeek-V3 whose `num_key_value_heads` (2) is not `num_attention_heads` (4): "
        "latent attention expands keys and values for every head",
        expect=r"deepseek_v3: num_key_value_heads=2 beside num_attention_heads=4 has no swapformer equivalent",
        raises=lambda fx: _from_hf_deepseek_v3_grouped_kv(),
    ),
    Case(
        id="api-from-hf-modernbert-scaled-rope",
        area="API",
        mistake="`from_hf` of a ModernBERT whose local layers' rope is scaled (`rope_type: linear`)",
        expect=r"modernbert: rope_parameters\.sliding_attention\.rope_type 'linear' is not read for ModernBERT",
        raises=lambda fx: _from_hf_modernbert_scaled_rope(),
    ),
    Case(
        id="api-to-hf-modernbert-first-attention-norm",
        area="API",
        mistake="`to_hf(model_type='modernbert')` of a ModernBERT-shaped model that keeps the first layer's "
        "attention norm (`first_attention_norm: true`)",
        expect=r"cannot export to Hugging Face modernbert: first_attention_norm: true \(ModernBERT's first layer",
        raises=_to_hf_modernbert_first_norm,
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
        id="api-to-hf-llama-attention-sinks",
        area="API",
        mistake="`to_hf(model_type='llama')` of a Llama-shaped model with attention sinks "
        "(`attention: {name: sdpa, sinks: true}`), which Llama's attention has no parameter for",
        expect=r"cannot export to Hugging Face llama: attention \{'name': 'sdpa', 'sinks': True\} \(attention sinks\)",
        raises=_to_hf_llama_sinks,
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
        id="api-to-hf-mixtral-unnormalized-top-k",
        area="API",
        mistake="`to_hf(model_type='mixtral')` of an MoE whose top-k weights are not renormalized "
        "(`{name: moe, norm_topk: false}`; Mixtral renormalizes them, Qwen3-MoE may not)",
        expect=r"cannot export to Hugging Face mixtral: moe norm_topk: false has no mixtral equivalent",
        raises=_to_hf_mixtral_unnormalized,
    ),
    Case(
        id="api-to-hf-gpt-oss-without-sinks",
        area="API",
        mistake="`to_hf(model_type='gpt_oss')` of a GPT-OSS-shaped model whose attention has no sinks "
        "(`attention: sdpa`; GPT-OSS's every layer has them)",
        expect=r"cannot export to Hugging Face gpt_oss: attention 'sdpa' of layer 0 without sinks \(GPT-OSS attends "
        r"with sinks on every layer: sinks: true\)",
        raises=_to_hf_gpt_oss_without_sinks,
    ),
    Case(
        id="api-to-hf-deepseek-v3-dense-after-moe",
        area="API",
        mistake="`to_hf(model_type='deepseek_v3')` of an MLA model whose dense layer comes after an MoE layer "
        "(DeepSeek-V3's dense layers are the first `first_k_dense_replace`)",
        expect=r"cannot export to Hugging Face deepseek_v3: dense layers \[1\] \(DeepSeek-V3's are the "
        r"first_k_dense_replace first ones\)",
        raises=_to_hf_deepseek_v3_dense_after_moe,
    ),
    Case(
        id="api-to-hf-gemma3-projection-scope",
        area="API",
        mistake="`to_hf(model_type='gemma3_text')` of a Gemma 3-shaped model whose q/k norms take the whole "
        "projections (`qk_norm_scope: projection`; Gemma 3's take each head)",
        expect=r"cannot export to Hugging Face gemma3_text: qk_norm_scope 'projection' \(gemma3_text normalizes each",
        raises=_to_hf_gemma3_projection_scope,
    ),
    Case(
        id="api-moe-top-k-above-experts",
        area="API",
        mistake="a mixture of experts whose tokens each pick more experts than there are (`{name: moe, experts: "
        "4, top_k: 6}`)",
        expect=r"moe: top_k=6 is more than experts=4; .*lower top_k or raise experts",
        raises=lambda fx: _build(ffn={"name": "moe", "experts": 4, "top_k": 6}),
    ),
    Case(
        id="api-moe-no-experts",
        area="API",
        mistake="a mixture of experts without experts (`{name: moe, experts: 0}`)",
        expect=r"moe needs experts >= 1, got experts=0; write e\.g\. \{name: moe, experts: 8, top_k: 2\}",
        raises=lambda fx: _build(ffn={"name": "moe", "experts": 0}),
    ),
    Case(
        id="api-moe-unknown-router",
        area="API",
        mistake="a misspelt MoE router (`{name: moe, router: softmx}`)",
        expect=r"moe: unknown router 'softmx' \(did you mean 'softmax'\?\); routers: sigmoid, softmax, topk_softmax",
        raises=lambda fx: _build(ffn={"name": "moe", "router": "softmx"}),
    ),
]


def _save_onto_file(fx: object) -> object:
    (fx.tmp / "model.bin").write_text("x")
    return _model("causal").save_pretrained(fx.tmp / "model.bin")


def _from_hf_integer_dtype(fx: object) -> object:
    import swapformer

    # refused before the folder is read: this one does not even exist
    return swapformer.from_hf(fx.tmp / "no-such-model", dtype="int8")


def _load_config_of_another_model(fx: object) -> object:
    import json

    import swapformer

    folder = _model("causal").save_pretrained(fx.tmp / "saved")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "d_model": 32}))  # edited, weights unchanged
    return swapformer.load(folder)


CASES += [
    Case(
        id="api-save-pretrained-onto-file",
        area="API",
        mistake="`model.save_pretrained(path)` where path is an existing file",
        expect=r"model\.bin is a file: save_pretrained writes a folder .*give a folder path",
        raises=_save_onto_file,
    ),
    Case(
        id="api-load-config-of-another-model",
        area="API",
        mistake="`swapformer.load(folder)` whose config.json was edited (`d_model`) beside the saved weights",
        expect=r"embedding\.token\.weight is \[50, 16\] in the file but \[50, 32\] for config\.json \(and \d+ more "
        r"tensors\): the config\.json and the weights are not of one model",
        raises=_load_config_of_another_model,
    ),
    Case(
        id="api-from-hf-dtype-not-floating",
        area="API",
        mistake='`swapformer.from_hf(path, dtype="int8")`',
        expect=r"from_hf got dtype='int8', which is not a floating dtype: pass one of float32, bfloat16, .*'auto'",
        raises=_from_hf_integer_dtype,
    ),
]
