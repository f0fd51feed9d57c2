"""Command-line mistakes: verbs, options and their values."""

from __future__ import annotations

from pathlib import Path

from .harness import Case


def _fit(fx, *options: str) -> list[str]:
    """``swapformer fit`` of the tiny recipe with ``options``, writing under the case's folder."""
    return ["fit", "--config", fx.recipe(), f"--trainer.default_root_dir={fx.tmp / 'runs'}", *options]


def _file(fx, name: str, content: str | bytes = "") -> Path:
    path = fx.tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


CASES = [
    Case(
        id="unknown-verb",
        area="CLI",
        mistake="a misspelt verb: `swapformer fitt`",
        expect=r"unknown verb 'fitt' \(did you mean 'fit'\?\)",
        argv=lambda fx: ["fitt", "--config", "stdlib-tiny"],
    ),
    Case(
        id="unknown-recipe-name",
        area="CLI",
        mistake="`swapformer fit --config` with a recipe name that does not exist",
        expect=r"stdlib-tinyy.*swapformer recipes",
        argv=lambda fx: ["fit", "--config", "stdlib-tinyy"],
    ),
    Case(
        id="fit-without-recipe",
        area="CLI",
        mistake="`swapformer fit` with no `--config`",
        expect=r"pass --config",
        argv=lambda fx: ["fit"],
    ),
    Case(
        id="unknown-option",
        area="CLI",
        mistake="a misspelt option: `--trainer.max_stpes 3`",
        expect=r"--trainer\.max_stpes \(did you mean '--trainer\.max_steps'\?\)",
        argv=lambda fx: _fit(fx, "--trainer.max_stpes", "3"),
    ),
    Case(
        id="precision-typo",
        area="CLI",
        mistake="`--trainer.precision bf17`",
        expect=r"--trainer\.precision 'bf17' is not one of: .*bf16-mixed",
        argv=lambda fx: _fit(fx, "--trainer.precision", "bf17"),
    ),
    Case(
        id="max-steps-not-a-number",
        area="CLI",
        mistake="`--trainer.max_steps ten`",
        expect=r"--trainer\.max_steps 'ten' is not a whole number",
        argv=lambda fx: _fit(fx, "--trainer.max_steps", "ten"),
    ),
    Case(
        id="strategy-typo",
        area="CLI",
        mistake="`--trainer.strategy dpp`",
        expect=r"strategy='dpp'.*did you mean 'ddp'",
        argv=lambda fx: _fit(fx, "--trainer.strategy", "dpp"),
    ),
    Case(
        id="accelerator-typo",
        area="CLI",
        mistake="`--trainer.accelerator cuad`",
        expect=r"accelerator='cuad'.*did you mean 'cuda'",
        argv=lambda fx: _fit(fx, "--trainer.accelerator", "cuad"),
    ),
    Case(
        id="accelerator-not-on-this-machine",
        area="CLI",
        mistake="`--trainer.accelerator tpu` on a machine without one",
        expect=r"accelerator='tpu': this machine has no tpu device.*accelerator cpu",
        argv=lambda fx: _fit(fx, "--trainer.accelerator", "tpu"),
    ),
    Case(
        id="model-option-not-a-number",
        area="CLI",
        mistake="`--model.init_args.d_model big`",
        expect=r"--model\.init_args\.d_model 'big' is not a whole number",
        argv=lambda fx: _fit(fx, "--model.init_args.d_model", "big"),
    ),
    Case(
        id="model-class-unknown",
        area="CLI",
        mistake="`--model GPT` (not a class path)",
        expect=r"--model 'GPT' is neither a class path",
        argv=lambda fx: _fit(fx, "--model", "GPT"),
    ),
    Case(
        id="root-dir-is-a-file",
        area="CLI",
        mistake="`--trainer.default_root_dir` names a file",
        expect=r"default_root_dir=.*notes\.txt is a file, not a folder",
        argv=lambda fx: [*_fit(fx), f"--trainer.default_root_dir={_file(fx, 'notes.txt', 'x')}"],
    ),
    Case(
        id="root-dir-under-a-file",
        area="CLI",
        mistake="`--trainer.default_root_dir notes.txt/runs` (a folder below a file)",
        expect=r"default_root_dir=.*notes\.txt/runs: .*notes\.txt is a file, not a folder",
        argv=lambda fx: [*_fit(fx), f"--trainer.default_root_dir={_file(fx, 'notes.txt', 'x') / 'runs'}"],
    ),
    Case(
        id="fit-ckpt-path-missing",
        area="CLI",
        mistake="`swapformer fit --ckpt_path` of a file that does not exist (to resume)",
        expect=r"--ckpt_path nope\.ckpt: no such file",
        argv=lambda fx: _fit(fx, "--ckpt_path", "nope.ckpt"),
    ),
    Case(
        id="test-ckpt-path-last-nothing-there",
        area="CLI",
        mistake="`swapformer test --ckpt_path last` in a root with no checkpoint yet (`fit` starts a new run instead)",
        expect=r"no last\*\.ckpt below .*give the folder the run wrote to",
        argv=lambda fx: ["test", *_fit(fx, "--ckpt_path", "last")[1:]],
    ),
    Case(
        id="validate-without-checkpoint",
        area="CLI",
        mistake="`swapformer validate` without `--ckpt_path` (it would score an untrained model)",
        expect=r"no --ckpt_path: validate would use an untrained model",
        argv=lambda fx: ["validate", "--config", fx.recipe()],
    ),
    Case(
        id="generate-without-ckpt-path",
        area="CLI",
        mistake="`swapformer generate --prompt hi` without `--ckpt_path`",
        expect=r"required: --ckpt_path",
        argv=lambda fx: ["generate", "--prompt", "hi"],
    ),
    Case(
        id="generate-without-prompt",
        area="CLI",
        mistake="`swapformer generate` of a causal LM with no prompt",
        expect=r"pass --prompt TEXT or --prompts_file FILE",
        argv=lambda fx: ["generate", "--ckpt_path", fx.causal_checkpoint],
    ),
    Case(
        id="generate-prompt-to-seq2seq",
        area="CLI",
        mistake="`swapformer generate --prompt` with a seq2seq checkpoint",
        expect=r"seq2seq checkpoint translates source lines: pass --input FILE",
        argv=lambda fx: ["generate", "--ckpt_path", fx.seq2seq_checkpoint, "--prompt", "hi"],
    ),
    Case(
        id="generate-prompts-file-missing",
        area="CLI",
        mistake="`swapformer generate --prompts_file` of a file that does not exist",
        expect=r"prompts\.txt: No such file",
        argv=lambda fx: ["generate", "--ckpt_path", fx.causal_checkpoint, "--prompts_file", "prompts.txt"],
    ),
    Case(
        id="generate-last-nothing-there",
        area="CLI",
        mistake="`swapformer generate --ckpt_path last` in a folder with no checkpoint",
        expect=r"--ckpt_path last: no last\*\.ckpt below .*--root DIR",
        argv=lambda fx: ["generate", "--ckpt_path", "last", "--prompt", "hi"],
    ),
    Case(
        id="evaluate-missing-text",
        area="CLI",
        mistake="`swapformer evaluate --path` of a file that does not exist",
        expect=r"held_out\.txt: No such file",
        argv=lambda fx: ["evaluate", "--ckpt_path", fx.causal_checkpoint, "--path", "held_out.txt"],
    ),
    Case(
        id="evaluate-binary-text",
        area="CLI",
        mistake="`swapformer evaluate --path` of a binary file",
        expect=r"--path .*image\.png is not UTF-8 text",
        argv=lambda fx: [
            "evaluate",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--path",
            _file(fx, "image.png", b"\x89PNG\r\n\x1a\n\xff\xfe"),
        ],
    ),
    Case(
        id="evaluate-translation-flags-on-causal",
        area="CLI",
        mistake="`swapformer evaluate --src --ref` with a causal-LM checkpoint",
        expect=r"holds a causal_lm model: pass --path FILE",
        argv=lambda fx: ["evaluate", "--ckpt_path", fx.causal_checkpoint, "--src", "a.txt", "--ref", "b.txt"],
    ),
    Case(
        id="evaluate-seq-len-zero",
        area="CLI",
        mistake="`swapformer evaluate --seq_len 0`",
        expect=r"--seq_len=0 must be at least 1",
        argv=lambda fx: [
            "evaluate",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--path",
            _file(fx, "text.txt", "hello world, hello world\n"),
            "--seq_len",
            "0",
        ],
    ),
    Case(
        id="export-out-is-a-file",
        area="CLI",
        mistake="`swapformer export --out` names an existing file",
        expect=r"--out .*model\.bin is a file: give a folder",
        argv=lambda fx: ["export", "--ckpt_path", fx.causal_checkpoint, "--out", _file(fx, "model.bin", "x")],
    ),
    Case(
        id="export-hf-family-cannot-express",
        area="CLI",
        mistake="`swapformer export --format hf --model_type qwen3` of a model with LayerNorms (Qwen3 has RMSNorms)",
        expect=r"cannot export to Hugging Face qwen3: norm 'layernorm' has no qwen3 equivalent",
        argv=lambda fx: [
            "export",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--out",
            "out",
            "--format",
            "hf",
            "--model_type",
            "qwen3",
        ],
    ),
    Case(
        id="export-model-type-without-hf",
        area="CLI",
        mistake="`swapformer export --model_type phi3` without `--format hf`",
        expect=r"--model_type phi3 picks a Hugging Face family: add --format hf",
        argv=lambda fx: [
            "export",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--out",
            "out",
            "--model_type",
            "phi3",
        ],
    ),
    Case(
        id="import-hf-without-config",
        area="CLI",
        mistake="`swapformer import-hf` of a folder without `config.json`",
        expect=r"config\.json",
        argv=lambda fx: ["import-hf", _file(fx, "model/README.md", "x").parent, "--out", "out"],
    ),
    Case(
        id="import-hf-unsupported-family",
        area="CLI",
        mistake="`swapformer import-hf` of a model family swapformer does not map (CTRL)",
        expect=r"model_type 'ctrl' is not supported; swapformer reads .*gpt2",
        argv=lambda fx: [
            "import-hf",
            _file(
                fx, "ctrl/config.json", '{"model_type": "ctrl", "architectures": ["CTRLLMHeadModel"]}'
            ).parent,
            "--out",
            "out",
        ],
    ),
    Case(
        id="import-hf-of-a-file",
        area="CLI",
        mistake="`swapformer import-hf` of a weights file instead of its folder",
        expect=r"model\.safetensors is not a folder: give a Hugging Face model folder",
        argv=lambda fx: ["import-hf", _file(fx, "model.safetensors", "x"), "--out", "out"],
    ),
    Case(
        id="check-unknown-component",
        area="CLI",
        mistake="`swapformer check roep` (a misspelt component)",
        expect=r"no component is called 'roep' \(did you mean 'rope'\?\)",
        argv=lambda fx: ["check", "roep"],
    ),
    Case(
        id="check-unknown-family",
        area="CLI",
        mistake="`swapformer check attn:math` (a misspelt family)",
        expect=r"unknown component family 'attn'",
        argv=lambda fx: ["check", "attn:math"],
    ),
    Case(
        id="check-unknown-option-variant",
        area="CLI",
        mistake="`swapformer check option:qk_nrom` (a misspelt option variant)",
        expect=r"unknown option variant 'qk_nrom' \(did you mean 'qk_norm'\?\)",
        argv=lambda fx: ["check", "option:qk_nrom"],
    ),
    Case(
        id="components-unknown-family",
        area="CLI",
        mistake="`swapformer components positionl`",
        expect=r"unknown component family 'positionl' \(did you mean 'positional'\?\)",
        argv=lambda fx: ["components", "positionl"],
    ),
    Case(
        id="recipes-cp-onto-existing-file",
        area="CLI",
        mistake="`swapformer recipes cp stdlib-tiny mine.yaml` when mine.yaml exists",
        expect=r"mine\.yaml already exists; pass another destination",
        argv=lambda fx: ["recipes", "cp", "stdlib-tiny", _file(fx, "mine.yaml", "# mine\n")],
    ),
    Case(
        id="recipes-cp-unknown-name",
        area="CLI",
        mistake="`swapformer recipes cp stdlib-tinyy mine.yaml`",
        expect=r"recipe 'stdlib-tinyy' is neither a file nor a bundled recipe \(did you mean 'stdlib-tiny'\?\)",
        argv=lambda fx: ["recipes", "cp", "stdlib-tinyy", "mine.yaml"],
    ),
]

CASES += [
    Case(
        id="components-option-typo",
        area="CLI",
        mistake="`swapformer components --matrx` (a misspelt option)",
        expect=r"unknown option --matrx; the options are \[family \.\.\.\] and --matrix",
        argv=lambda fx: ["components", "--matrx"],
    ),
]


def _compare(fx, *options: str) -> list[str]:
    """``swapformer compare`` of the tiny recipe with ``options`` (every mistake is found before a run starts)."""
    return ["compare", "--config", fx.recipe(), *options]


def _earlier_comparison(fx, recipe: str) -> Path:
    """A comparison folder that ``swapformer compare --emit slurm`` made of ``recipe`` (nothing trained)."""
    import contextlib
    import io

    from swapformer.cli import main

    out = fx.tmp / "runs" / "compare" / "norms"
    with contextlib.redirect_stdout(io.StringIO()):
        main(
            [
                "compare",
                "--config",
                recipe,
                "--vary",
                "model.norm=layernorm,rmsnorm",
                "--out",
                str(out),
                "--emit",
                "slurm",
            ]
        )
    return out


def _folder_with(fx, name: str, *files: str) -> Path:
    """A folder ``name`` of the case's folder holding the (empty JSON) ``files``."""
    for file in files:
        _file(fx, f"{name}/{file}", "{}")
    return fx.tmp / name


CASES += [
    Case(
        id="compare-unknown-key",
        area="CLI",
        mistake="`swapformer compare --vary model.positionl=rope,alibi` (a misspelt key)",
        expect=r"--vary model\.positionl: .*did you mean '--model\.init_args\.positional'",
        argv=lambda fx: _compare(fx, "--vary", "model.positionl=rope,alibi"),
    ),
    Case(
        id="compare-unknown-value",
        area="CLI",
        mistake="`swapformer compare --vary model.positional=rope,rop` (one value misspelt)",
        expect=r"--vary model\.positional=rop: .*unknown positional 'rop' \(did you mean 'rope'\?\)",
        argv=lambda fx: _compare(fx, "--vary", "model.positional=rope,rop"),
    ),
    Case(
        id="compare-empty-grid",
        area="CLI",
        mistake="`swapformer compare --vary model.positional=` (no values)",
        expect=r"--vary model\.positional= has no values: the grid is empty",
        argv=lambda fx: _compare(fx, "--vary", "model.positional="),
    ),
    Case(
        id="compare-seeds-not-integers",
        area="CLI",
        mistake="`swapformer compare ... --seeds 1,two`",
        expect=r"--seeds '1,two': 'two' is not a whole number; .*--seeds 1,2,3",
        argv=lambda fx: _compare(fx, "--vary", "model.positional=rope,alibi", "--seeds", "1,two"),
    ),
    Case(
        id="compare-out-of-another-recipe",
        area="CLI",
        mistake="`swapformer compare --out DIR` where DIR holds a comparison of another base recipe",
        expect=r"holds a comparison of --config masked-stdlib-tiny, not of --config .*tiny\.yaml: give another --out",
        argv=lambda fx: _compare(
            fx, "--vary", "model.norm=rmsnorm", "--out", _earlier_comparison(fx, "masked-stdlib-tiny")
        ),
    ),
    Case(
        id="option-abbreviation",
        area="CLI",
        mistake="a misspelt option that abbreviates another: `--checkpoint.every_n_train_step 3`",
        expect=r"unknown option --checkpoint\.every_n_train_step \(did you mean "
        r"'--checkpoint\.every_n_train_steps'\?\)",
        argv=lambda fx: _fit(fx, "--checkpoint.every_n_train_step", "3"),
    ),
    Case(
        id="import-hf-into-a-folder-with-files",
        area="CLI",
        mistake="`swapformer import-hf` into a folder that already holds a model and an edited recipe.yaml",
        expect=r"--out imported is not empty \(config\.json, recipe\.yaml\): .*pass --overwrite",
        argv=lambda fx: [
            "import-hf",
            _folder_with(fx, "hf", "config.json"),
            "--out",
            _folder_with(fx, "imported", "config.json", "recipe.yaml").name,
        ],
    ),
]

# swapformer's own verbs parse with argparse: its usage block and bare "unrecognized arguments" never reach the user
CASES += [
    Case(
        id="generate-option-typo",
        area="CLI",
        mistake="a misspelt option of `swapformer generate`: `--tempertaure 0.7`",
        expect=r"unknown option --tempertaure \(did you mean '--temperature'\?\); swapformer generate --help",
        argv=lambda fx: ["generate", "--ckpt_path", "last.ckpt", "--prompt", "hi", "--tempertaure", "0.7"],
    ),
    Case(
        id="generate-flag-given-a-value",
        area="CLI",
        mistake="`swapformer generate --do_sample true` (a flag written as an option with a value)",
        expect=r"--do_sample takes no value .*: drop 'true'",
        argv=lambda fx: ["generate", "--ckpt_path", "last.ckpt", "--prompt", "hi", "--do_sample", "true"],
    ),
    Case(
        id="generate-num-beams-not-a-number",
        area="CLI",
        mistake="`swapformer generate --num_beams four`",
        expect=r"--num_beams 'four' is not a whole number",
        argv=lambda fx: ["generate", "--ckpt_path", "last.ckpt", "--prompt", "hi", "--num_beams", "four"],
    ),
    Case(
        id="check-kind-typo",
        area="CLI",
        mistake="`swapformer check rope --kind causal` (a model kind misspelt)",
        expect=r"--kind 'causal' is not one of: causal_lm, masked_lm, seq2seq \(did you mean 'causal_lm'\?\)",
        argv=lambda fx: ["check", "rope", "--kind", "causal"],
    ),
    Case(
        id="export-format-typo",
        area="CLI",
        mistake="`swapformer export --format onnx` (a format swapformer does not write)",
        expect=r"--format 'onnx' is not one of: swapformer, hf",
        argv=lambda fx: ["export", "--ckpt_path", "last.ckpt", "--out", "out", "--format", "onnx"],
    ),
]

# trainer counts that Lightning takes without a word, or fails on with a traceback once the run has started
CASES += [
    Case(
        id="devices-negative",
        area="CLI",
        mistake="`--trainer.devices -2`",
        expect=r"trainer\.devices=-2 must be a positive number of devices",
        argv=lambda fx: _fit(fx, "--trainer.devices", "-2"),
    ),
    Case(
        id="devices-every-one-on-cpu",
        area="CLI",
        mistake="`--trainer.devices -1` (every device) with `accelerator: cpu`",
        expect=r"trainer\.devices=-1 \(every device\) counts GPUs; on the CPU .*--trainer\.devices 1",
        argv=lambda fx: _fit(fx, "--trainer.devices", "-1"),
    ),
    Case(
        id="accumulate-grad-batches-zero",
        area="CLI",
        mistake="`--trainer.accumulate_grad_batches 0` (Lightning divides by it at the first step)",
        expect=r"trainer\.accumulate_grad_batches=0 must be a whole number >= 1",
        argv=lambda fx: _fit(fx, "--trainer.accumulate_grad_batches", "0"),
    ),
    Case(
        id="gradient-clip-negative",
        area="CLI",
        mistake="`--trainer.gradient_clip_val -1` (Lightning would train without clipping, and say nothing)",
        expect=r"trainer\.gradient_clip_val=-1 must be >= 0 .*0 or null: no clipping",
        argv=lambda fx: _fit(fx, "--trainer.gradient_clip_val", "-1"),
    ),
]

# a device this machine does not have: torch's error came from inside the checkpoint's unpickling, as a traceback
CASES += [
    Case(
        id="generate-device-not-here",
        area="CLI",
        mistake="`swapformer generate --device mps` on a machine without one (Linux: no Apple GPU)",
        expect=r"--device mps: this machine has no mps device; use --device cpu",
        argv=lambda fx: [
            "generate",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--prompt",
            "hi",
            "--device",
            "mps",
        ],
    ),
    Case(
        id="evaluate-device-not-a-device",
        area="CLI",
        mistake="`swapformer evaluate --device gpu` (torch calls it cuda)",
        expect=r"--device 'gpu' is not a torch device: give cpu, cuda, cuda:1 or mps",
        argv=lambda fx: [
            "evaluate",
            "--ckpt_path",
            fx.causal_checkpoint,
            "--path",
            _file(fx, "text.txt", "hello world\n"),
            "--device",
            "gpu",
        ],
    ),
    Case(
        id="generate-batch-size-zero",
        area="CLI",
        mistake="`swapformer generate --batch_size 0` with a seq2seq checkpoint",
        expect=r"--batch_size 0 must be at least 1",
        argv=lambda fx: ["generate", "--ckpt_path", fx.seq2seq_checkpoint, "--batch_size", "0"],
        stdin="3 March 2001\n",
    ),
]


def _masked_folder(fx) -> Path:
    """A tiny masked LM saved as a model folder with its tokenizer (what export writes)."""
    import swapformer
    from swapformer.data import ByteTokenizer

    folder = fx.tmp / "bert"
    model = swapformer.build_masked_lm({"vocab_size": 300, "d_model": 16, "num_heads": 2, "num_layers": 1})
    model.save_pretrained(folder)
    ByteTokenizer().save_pretrained(folder)
    return folder


CASES += [
    Case(
        id="evaluate-masked-lm",
        area="CLI",
        mistake="`swapformer evaluate --path` of a masked LM (BERT has no left-to-right perplexity)",
        expect=r"bert holds a masked_lm model, which has no left-to-right perplexity: score its masked tokens "
        r"with swapformer validate --config RECIPE --model\.init_args\.init_from bert",
        argv=lambda fx: [
            "evaluate",
            "--ckpt_path",
            _masked_folder(fx).name,
            "--path",
            _file(fx, "text.txt", "hello world\n"),
        ],
    ),
]

CASES += [
    Case(
        id="validate-ckpt-path-model-folder",
        area="CLI",
        mistake="`swapformer validate --ckpt_path` of a model folder (export, import-hf) rather than a .ckpt of fit",
        expect=r"--ckpt_path bert is a model folder, not a checkpoint of swapformer fit: validate starts from its "
        r"weights with --model\.init_args\.init_from bert",
        argv=lambda fx: ["validate", *_fit(fx, "--ckpt_path", _masked_folder(fx).name)[1:]],
    ),
]
