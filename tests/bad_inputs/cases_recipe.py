"""Recipe mistakes: values in a recipe file that describe no model, or a file that is no recipe."""

from __future__ import annotations

from .harness import Case


def _fit(fx, **changes) -> list[str]:
    """``swapformer fit`` of the tiny recipe with ``changes`` (see :meth:`Fixtures.recipe`)."""
    return ["fit", "--config", fx.recipe(**changes), f"--trainer.default_root_dir={fx.tmp / 'runs'}"]


def _config(fx, text: str) -> list[str]:
    path = fx.tmp / "recipe.yaml"
    path.write_text(text)
    return ["fit", "--config", path]


CASES = [
    Case(
        id="recipe-yaml-syntax-error",
        area="recipe",
        mistake="a recipe file with a YAML syntax error (an unclosed `{`)",
        expect=r"--config .*recipe\.yaml: line 3, column \d+: YAML syntax error",
        argv=lambda fx: _config(fx, "model:\n  init_args: {d_model: 32\ntrainer:\n  max_steps: 2\n"),
    ),
    Case(
        id="recipe-not-text",
        area="recipe",
        mistake="`--config` of a binary file",
        expect=r"--config .*recipe\.yaml is not a text file",
        argv=lambda fx: ["fit", "--config", _binary(fx)],
    ),
    Case(
        id="misspelt-component",
        area="recipe",
        mistake="`positional: rop` (a misspelt component name)",
        expect=r"model\.init_args\.positional: unknown positional 'rop' \(did you mean 'rope'\?\)",
        argv=lambda fx: _fit(fx, model={"positional": "rop"}),
    ),
    Case(
        id="misspelt-attention",
        area="recipe",
        mistake="`attention: flash_attn` (not a registered kernel)",
        expect=r"unknown attention 'flash_attn'",
        argv=lambda fx: _fit(fx, model={"attention": "flash_attn"}),
    ),
    Case(
        id="compile-unknown-backend",
        area="recipe",
        mistake="`compile: {backend: inductr}` (a misspelt torch.compile backend)",
        expect=r"model\.init_args\.compile: backend='inductr' is not a torch\.compile backend \(did you mean 'inductor'\?\); common ones: inductor",
        argv=lambda fx: _fit(fx, model={"compile": {"backend": "inductr"}}),
    ),
    Case(
        id="compile-without-cpp-compiler",
        area="recipe",
        mistake="`compile: true` on a CPU machine without a C++ compiler (here `CXX` names one that does not exist)",
        expect=r"model\.init_args\.compile: torch\.compile's inductor backend needs a C\+\+ compiler on the CPU "
        r"and finds none \(install g\+\+ or set CXX\)",
        argv=lambda fx: _fit(fx, model={"compile": True}),
        subprocess=True,  # torch remembers the compiler it found once in a process
        env={"CXX": "/nonexistent/g++"},
    ),
    Case(
        id="compile-unknown-option",
        area="recipe",
        mistake="`compile: {modes: max-autotune}` (not an option of torch.compile)",
        expect=r"model\.init_args\.compile: 'modes' is not an option of torch\.compile; the options are backend, mode",
        argv=lambda fx: _fit(fx, model={"compile": {"modes": "max-autotune"}}),
    ),
    Case(
        id="d-model-not-divisible-by-heads",
        area="recipe",
        mistake="`d_model: 32, num_heads: 5`",
        expect=r"d_model=32 is not divisible by num_heads=5",
        argv=lambda fx: _fit(fx, model={"num_heads": 5}),
    ),
    Case(
        id="negative-size",
        area="recipe",
        mistake="`num_layers: -1`",
        expect=r"num_layers",
        argv=lambda fx: _fit(fx, model={"num_layers": -1}),
    ),
    Case(
        id="size-as-text",
        area="recipe",
        mistake="`d_ff: four-times` (text where a number goes)",
        expect=r"--model\.init_args\.d_ff 'four-times' is not a whole number",
        argv=lambda fx: _fit(fx, model={"d_ff": "four-times"}),
    ),
    Case(
        id="unknown-model-key",
        area="recipe",
        mistake="`dmodel: 32` (a misspelt model field)",
        expect=r"tiny\.yaml: model\.init_args\.dmodel is not an option.*did you mean 'model\.init_args\.d_model'",
        argv=lambda fx: _fit(fx, model={"dmodel": 32}),
    ),
    Case(
        id="component-option-typo",
        area="recipe",
        mistake="`ffn: {name: swiglu, widht: 3}` (a misspelt component option)",
        expect=r"ffn 'swiglu' takes no option 'widht'",
        argv=lambda fx: _fit(fx, model={"ffn": {"name": "swiglu", "widht": 3}}),
    ),
    Case(
        id="softcap-not-positive",
        area="recipe",
        mistake="`attention: {name: math, softcap: 0}` (a cap must be > 0)",
        expect=r"math: softcap=0 must be a number > 0 \(Gemma 2 uses 50\.0\), or null for no soft-capping",
        argv=lambda fx: _fit(fx, model={"attention": {"name": "math", "softcap": 0}}),
    ),
    Case(
        id="softcap-with-a-fused-kernel",
        area="recipe",
        mistake="`attention: {name: sdpa, softcap: 50}` (the fused kernel never sees the scores)",
        expect=r"attention 'sdpa' takes no option 'softcap'; its options are: sinks, num_heads; flex, math, "
        r"sliding_window take 'softcap'",
        argv=lambda fx: _fit(fx, model={"attention": {"name": "sdpa", "softcap": 50}}),
    ),
    Case(
        id="sinks-with-a-kernel-without-them",
        area="recipe",
        mistake="`attention: {name: linear, sinks: true}` (linear attention has no softmax to add a sink to)",
        expect=r"attention 'linear' takes no option 'sinks'; its options are: none; math, sdpa, sliding_window "
        r"take 'sinks'",
        argv=lambda fx: _fit(fx, model={"attention": {"name": "linear", "sinks": True}}),
    ),
    Case(
        id="mla-latent-rank-above-d-model",
        area="recipe",
        mistake="`attention: {name: mla, kv_lora_rank: 4096}` (a latent wider than the model compresses nothing)",
        expect=r"mla: kv_lora_rank=4096 is larger than d_model=\d+, so the latent compresses nothing; choose "
        r"kv_lora_rank <= \d+ \(DeepSeek-V3: 512 of 7168\)",
        argv=lambda fx: _fit(fx, model={"attention": {"name": "mla", "kv_lora_rank": 4096}}),
    ),
    Case(
        id="schedule-typo",
        area="recipe",
        mistake="`schedule: cosine_warmup` (not a schedule name)",
        expect=r"schedule='cosine_warmup' is unknown; choose one of warmup_cosine",
        argv=lambda fx: _fit(fx, model={"schedule": "cosine_warmup"}),
    ),
    Case(
        id="label-smoothing-out-of-range",
        area="recipe",
        mistake="`label_smoothing: 1.5`",
        expect=r"label_smoothing=1\.5 must be in \[0, 1\)",
        argv=lambda fx: _fit(fx, model={"label_smoothing": 1.5}),
    ),
    Case(
        id="loss-chunk-negative",
        area="recipe",
        mistake="`loss_chunk: -1` (tokens per chunk of the LM loss)",
        expect=r"loss_chunk=-1 must be a whole number >= 0",
        argv=lambda fx: _fit(fx, model={"loss_chunk": -1}),
    ),
    Case(
        id="loss-chunk-not-a-number",
        area="recipe",
        mistake="`loss_chunk: abc` (text where a number of tokens goes)",
        expect=r"loss_chunk 'abc' is not",
        argv=lambda fx: _fit(fx, model={"loss_chunk": "abc"}),
    ),
    Case(
        id="loss-impl-not-installed",
        area="recipe",
        mistake="`loss_impl: liger` where Liger-Kernel is not installed",
        expect=r"loss_impl='liger' needs the liger-kernel package, which is not installed",
        argv=lambda fx: _fit(fx, model={"loss_impl": "liger"}),
    ),
    Case(
        id="flex-training-on-cpu",
        area="recipe",
        mistake="`attention: flex` in a recipe that trains on CPU (torch has no FlexAttention backward there)",
        expect=r"attention 'flex' cannot train on CPU .*train with attention sdpa",
        argv=lambda fx: _fit(fx, model={"attention": "flex", "dropout": 0.0}),
    ),
    Case(
        id="seq-len-beyond-learned-table",
        area="recipe",
        mistake="`positional: learned, max_seq_len: 32` with data `seq_len: 64` (found only once training "
        "started, before)",
        expect=r"data\.init_args\.seq_len=64 is longer than the model's positional 'learned' table \(32 "
        r"positions\)",
        argv=lambda fx: _fit(fx, model={"positional": "learned"}, data={"seq_len": 64}),
    ),
    Case(
        id="max-steps-negative",
        area="recipe",
        mistake="`trainer: {max_steps: -5}`",
        expect=r"max_steps",
        argv=lambda fx: _fit(fx, trainer={"max_steps": -5}),
    ),
]


def _binary(fx):
    path = fx.tmp / "recipe.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00")
    return path


CASES += [
    Case(
        id="negative-learning-rate",
        area="recipe",
        mistake="a negative learning rate: `--model.init_args.lr -1` (torch's optimizer would fail with a traceback)",
        expect=r"model\.init_args\.lr=-1\.0 must be a number >= 0",
        argv=lambda fx: ["fit", "--config", fx.recipe(), "--model.init_args.lr", "-1"],
    ),
    Case(
        id="betas-out-of-range",
        area="recipe",
        mistake="AdamW betas outside [0, 1): `--model.init_args.betas [0.9,1.5]`",
        expect=r"betas=\[0\.9, 1\.5\] must be two numbers in \[0, 1\)",
        argv=lambda fx: ["fit", "--config", fx.recipe(), "--model.init_args.betas", "[0.9,1.5]"],
    ),
]


def _edited(fx, edit) -> list[str]:
    """``swapformer fit --config recipe.yaml``: the tiny recipe with ``edit(config)`` applied to its YAML."""
    import yaml

    config = yaml.safe_load(fx.recipe().read_text())
    edit(config)
    path = fx.tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ["fit", "--config", path, f"--trainer.default_root_dir={fx.tmp / 'runs'}"]


CASES += [
    Case(
        id="recipe-file-misspelt-key",
        area="recipe",
        mistake="a misspelt key inside a recipe file: `trainer: {max_stpes: 10}`",
        expect=r"tiny\.yaml: trainer\.max_stpes is not an option \(did you mean 'trainer\.max_steps'\?\)",
        argv=lambda fx: _fit(fx, trainer={"max_stpes": 10}),
    ),
    Case(
        id="recipe-file-misspelt-section",
        area="recipe",
        mistake="a misspelt section inside a recipe file: `checkpointing:` for `checkpoint:`",
        expect=r"recipe\.yaml: checkpointing\.every_n_train_steps is not an option \(did you mean "
        r"'checkpoint\.every_n_train_steps'\?\)",
        argv=lambda fx: _edited(fx, lambda c: c.update(checkpointing={"every_n_train_steps": 3})),
    ),
    Case(
        id="recipe-file-misspelt-data-option",
        area="recipe",
        mistake="a misspelt data option inside a recipe file: `data: {init_args: {max_char: 3}}`",
        expect=r"recipe\.yaml: data\.init_args\.max_char is not an option \(did you mean "
        r"'data\.init_args\.max_chars'\?\); --data\.help swapformer\.data\.CausalLMDataModule lists them",
        argv=lambda fx: _edited(fx, lambda c: c["data"]["init_args"].update(max_char=3)),
    ),
    Case(
        id="recipe-class-path-typo",
        area="recipe",
        mistake="a misspelt class_path: `swapformer.tasks.CausalLMModul`",
        expect=r"recipe\.yaml: model\.class_path: unknown class swapformer\.tasks\.CausalLMModul \(did you mean "
        r"swapformer\.tasks\.CausalLMModule\?\)",
        argv=lambda fx: _edited(fx, lambda c: c["model"].update(class_path="swapformer.tasks.CausalLMModul")),
    ),
    Case(
        id="recipe-logger-class-typo",
        area="recipe",
        mistake="a misspelt logger class: `logger: {class_path: lightning.pytorch.loggers.CSVLoger}`",
        expect=r"trainer\.logger\.class_path: unknown class lightning\.pytorch\.loggers\.CSVLoger \(did you mean "
        r"lightning\.pytorch\.loggers\.CSVLogger\?\)",
        argv=lambda fx: _edited(
            fx, lambda c: c["trainer"].update(logger={"class_path": "lightning.pytorch.loggers.CSVLoger"})
        ),
    ),
    Case(
        id="seq2seq-module-with-causal-data",
        area="recipe",
        mistake="a seq2seq task module with causal-LM data (`model.class_path: swapformer.tasks.Seq2SeqModule`)",
        expect=r"model swapformer\.tasks\.Seq2SeqModule trains seq2seq models but data "
        r"swapformer\.data\.CausalLMDataModule makes batches for causal_lm and masked_lm models",
        argv=lambda fx: _edited(fx, lambda c: c["model"].update(class_path="swapformer.tasks.Seq2SeqModule")),
    ),
]

CASES += [
    Case(
        id="layered-recipe-alone",
        area="recipe",
        mistake="`swapformer fit --config causal_lm/finetune-imported` alone (it layers over import-hf's "
        "recipe.yaml, which names the model)",
        expect=r"causal_lm/finetune-imported sets model options but names no model class \(model\.class_path\): "
        r".*--config <model recipe> --config causal_lm/finetune-imported",
        argv=lambda fx: ["fit", "--config", "causal_lm/finetune-imported", "--print_config"],
    ),
    Case(
        id="layered-recipe-first",
        area="recipe",
        mistake="a recipe that layers over a model recipe given before it (`--config my-finetune.yaml --config "
        "stdlib-tiny`)",
        expect=r"my-finetune\.yaml sets model options .*given before it: --config causal_lm/stdlib-tiny --config my-finetune\.yaml",
        argv=lambda fx: [
            "fit",
            "--config",
            _named(fx, "my-finetune.yaml", "model:\n  init_args:\n    lr: 3.0e-4\n"),
            "--config",
            "stdlib-tiny",
            "--print_config",
        ],
    ),
]


def _named(fx, name: str, text: str) -> str:
    (fx.tmp / name).write_text(text)
    return name
