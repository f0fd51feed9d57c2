#!/usr/bin/env bash
# One command for a GPU machine (H100/H200): the checks of issue 17 and issue 30's per-strategy figures, each
# with a header, in about 8 minutes on one GPU (about 13 on four).
#
#   bash benchmarks/gpu.sh                    # data from ../shared/data relative to the repository
#   SWAPFORMER_DATA=/path/to/data bash benchmarks/gpu.sh
#
# Steps and their GPU budgets (estimates for an H100/H200; total about 8 minutes on one GPU):
#   1. sdpa-path   the flash kernel for causal and padded inputs (bf16)                       ~15 s
#   2. gpt2-124m   GPT-2 124M, bf16-mixed, torch.compile: tokens/s and MFU (goal >= 50%),
#                  150 steps of 8 x 1024 tokens, the first 40 (compilation) left out of the timing  ~90 s
#   3. fsdp2       the shakespeare-char recipe under trainer/fsdp2 on one GPU, 300 steps           ~30 s
#   4. fsdp        the same under trainer/fsdp (FSDP1), 300 steps                                  ~30 s
#   5. multi30k    the multi30k-de-en recipe for $MULTI30K_EPOCHS epochs (default 15, 227 steps
#                  each, validated every 5), then sacreBLEU on test_2016_flickr (goal >= 35)     ~3.5 min
#   6. tp, 2-D     with more than one GPU: shakespeare-char under trainer/tp on 2 GPUs (TP 2), then
#                  trainer/fsdp2-tp on 4 (2 data parallel x 2 tensor parallel), 300 steps each        ~1 min
#   7. seq2seq-generate  Marian-, BART- and T5-shaped decoding, greedy and beam-4, batch 1 and 8, against
#                  transformers' generate on the same weights (same tokens checked)               ~40 s
#   8. strategies  tokens/s, MFU and peak memory per strategy (benchmarks/strategy_figures.py, eager, bf16-mixed,
#                  20 steps, 5 untimed) for the GPT-2 124M shape and a Llama-style 1B shape: one device; with 2
#                  or more GPUs DDP, FSDP2 and TP on 2; with 4 or more the 2-D mesh (2 x 2)      ~1 min a GPU,
#                                                                                                 ~5 min on 4
#   9. moe         8 experts top-2 against a dense SwiGLU of the same active width, bf16, 65,536 tokens at
#                  d_model 2048: the experts' grouped GEMM, tokens/s and MFU of each                ~20 s
#  10. flex        packed rows' document masks, one attention call at 4 x 4 heads x 1024 x 32, forward and
#                  backward, bf16: flex (FlexAttention, compiled, its block mask built per call and kept)
#                  against sdpa's spans, the dense mask and causal (benchmarks/flex_attention.py)     ~1 min
# Without CUDA it runs what a CPU can at toy sizes (a few steps each, under a minute) and prints
# "SKIP <step>: <reason>" for the GPU-only parts. Nothing is downloaded. Exit status 1 if a step failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${SWAPFORMER_DATA:-$repo/../shared/data}"
python="${PYTHON:-python}"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$repo"

failed=()
header() { printf '\n=== %s ===\n' "$1"; }
skip() { echo "SKIP $1: $2"; }
run_step() {  # run_step NAME COMMAND...: a failing step is reported and the next one still runs
    local name="$1"
    shift
    if ! "$@"; then
        echo "FAIL $name"
        failed+=("$name")
    fi
}
swapformer() {  # the CLI with its output less the profiler's and the libraries' warning lines; its exit status
    local status=0
    "$python" -m swapformer "$@" >"$work/output" 2>&1 || status=$?
    grep -Ev '^USDT|Warning|warn\(|LeafSpec|litlogger' "$work/output" || true
    return "$status"
}

if "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    gpu=1
    "$python" -c "import torch; print('device:', torch.cuda.get_device_name())"
else
    gpu=0
    echo "device: CPU (no CUDA device): toy sizes, GPU-only steps skipped"
fi
shakespeare="$data/tinyshakespeare/input.txt"
multi30k="$data/multi30k"

header "1. sdpa-path: which attention kernel runs for causal and padded inputs"
run_step sdpa-path "$python" benchmarks/sdpa_path.py
[ "$gpu" = 1 ] || skip sdpa-path "no CUDA device: the flash kernel is a GPU kernel; the CPU kernels are reported above"

header "2. gpt2-124m: tokens/s and MFU (bf16-mixed, torch.compile)"
if [ "$gpu" = 1 ]; then
    run_step gpt2-124m "$python" benchmarks/gpt2_mfu.py --steps 150 --warmup 40
else
    skip gpt2-124m "no CUDA device: GPT-2 124M in bf16 with torch.compile and MFU need a GPU; the same path at toy sizes:"
    run_step gpt2-toy "$python" benchmarks/gpt2_mfu.py --tiny --steps 4 --warmup 1
fi

# The shakespeare-char recipe, validated once at the end on a few batches, no samples printed
if [ "$gpu" = 1 ]; then steps=300; else steps=3; fi
sharded=(--config causal_lm/shakespeare-char "--data.init_args.path=$shakespeare"
    "--trainer.max_steps=$steps" "--model.init_args.total_steps=$steps" "--trainer.val_check_interval=$steps"
    --trainer.limit_val_batches=2 --trainer.devices=1 --trainer.enable_checkpointing=false
    "--trainer.callbacks=[{class_path: swapformer.training.TokenThroughput}]")

header "3. fsdp2: shakespeare-char under trainer/fsdp2, one device"
if [ -f "$shakespeare" ]; then
    run_step fsdp2 swapformer fit "${sharded[@]}" --config trainer/fsdp2 "--trainer.default_root_dir=$work/fsdp2"
else
    skip fsdp2 "no $shakespeare (set SWAPFORMER_DATA)"
fi

header "4. fsdp: shakespeare-char under trainer/fsdp (FSDP1), one device"
if [ "$gpu" = 0 ]; then
    skip fsdp "no CUDA device: FSDP1 runs on CUDA only (Lightning's FSDPStrategy refuses CPU)"
elif [ -f "$shakespeare" ]; then
    run_step fsdp swapformer fit "${sharded[@]}" --config trainer/fsdp "--trainer.default_root_dir=$work/fsdp"
else
    skip fsdp "no $shakespeare (set SWAPFORMER_DATA)"
fi

header "5. multi30k: multi30k-de-en recipe, then sacreBLEU on test_2016_flickr"
pairs=(--config seq2seq/multi30k-de-en
    "--data.init_args.src_path=$multi30k/train.de.gz" "--data.init_args.tgt_path=$multi30k/train.en.gz"
    "--data.init_args.val_src_path=$multi30k/val.de.gz" "--data.init_args.val_tgt_path=$multi30k/val.en.gz"
    "--data.init_args.test_src_path=$multi30k/test_2016_flickr.de.gz"
    "--data.init_args.test_tgt_path=$multi30k/test_2016_flickr.en.gz" "--trainer.default_root_dir=$work/multi30k"
    "--trainer.callbacks=[{class_path: swapformer.training.TokenThroughput}]")
if [ ! -f "$multi30k/test_2016_flickr.en.gz" ]; then
    skip multi30k "no $multi30k/test_2016_flickr.en.gz (set SWAPFORMER_DATA)"
elif [ "$gpu" = 1 ]; then
    epochs="${MULTI30K_EPOCHS:-15}"
    run_step multi30k swapformer fit "${pairs[@]}" "--trainer.max_epochs=$epochs" --trainer.check_val_every_n_epoch=5
    run_step multi30k-test swapformer test "${pairs[@]}" --ckpt_path last
    bleu="$(grep -Eo 'test/bleu[^0-9]*[0-9.]+' "$work/output" | grep -Eo '[0-9.]+$' || echo 0)"
    if "$python" -c "import sys; sys.exit(0 if float('$bleu') >= 35 else 1)"; then
        echo "sacreBLEU on test_2016_flickr: $bleu; goal >= 35: PASS"
    else
        echo "sacreBLEU on test_2016_flickr: $bleu; goal >= 35: FAIL"
        failed+=(multi30k-bleu)
    fi
else
    skip multi30k "no CUDA device: BLEU >= 35 takes minutes of GPU training; a toy run of the same path instead"
    # toy sizes: a 300-token BPE, batches of 4, two steps, one test batch decoded to 8 tokens
    toy=(--data.init_args.tokenizer_options.vocab_size=300 --data.init_args.batch_size=4
        --model.init_args.max_decode_len=8 --trainer.limit_test_batches=1)
    run_step multi30k swapformer fit "${pairs[@]}" "${toy[@]}" --trainer.max_steps=2 --trainer.limit_val_batches=1
    run_step multi30k-test swapformer test "${pairs[@]}" "${toy[@]}" --ckpt_path last
fi

header "6. tp and 2-D: shakespeare-char under trainer/tp (TP 2), then trainer/fsdp2-tp (2 x 2)"
gpus="$("$python" -c "import torch; print(torch.cuda.device_count())")"
if [ "$gpus" -lt 2 ]; then
    skip tp "$gpus GPU(s): tensor parallelism needs more than one (tests/lightning/test_tensor_parallel.py runs it on CPUs)"
elif [ ! -f "$shakespeare" ]; then
    skip tp "no $shakespeare (set SWAPFORMER_DATA)"
else
    run_step tp swapformer fit "${sharded[@]}" --config trainer/tp --trainer.devices=2 "--trainer.default_root_dir=$work/tp"
    if [ "$gpus" -lt 4 ]; then
        skip 2-D "$gpus GPUs: a 2 x 2 mesh needs 4"
    else
        run_step 2-D swapformer fit "${sharded[@]}" --config trainer/fsdp2-tp --trainer.devices=4 \
            "--trainer.default_root_dir=$work/fsdp2-tp"
    fi
fi

header "7. seq2seq-generate: encoder-decoder decoding against transformers' generate"
if [ "$gpu" = 1 ]; then
    run_step seq2seq-generate "$python" benchmarks/seq2seq_generate.py --device cuda --rounds 3
else
    skip seq2seq-generate "no CUDA device: the GPU comparison needs one; the CPU comparison at a toy length:"
    run_step seq2seq-generate "$python" benchmarks/seq2seq_generate.py --new-tokens 4 --rounds 1 --batches 1
fi

header "8. strategies: tokens/s, MFU and peak memory per strategy, GPT-2 124M and Llama-style 1B shapes"
figures=(--steps "${STRATEGY_STEPS:-20}" --warmup 5)
if [ "$gpu" = 1 ]; then
    for shape in gpt2-124m llama-1b; do
        run_step "strategies-$shape-single" "$python" benchmarks/strategy_figures.py --shape "$shape" "${figures[@]}"
        if [ "$gpus" -lt 2 ]; then
            skip "strategies-$shape" "$gpus GPU: DDP, FSDP2, TP and 2-D need more than one"
            continue
        fi
        for strategy in ddp fsdp2 tp; do
            run_step "strategies-$shape-$strategy" "$python" benchmarks/strategy_figures.py --shape "$shape" \
                --strategy "$strategy" --devices 2 "${figures[@]}"
        done
        if [ "$gpus" -lt 4 ]; then
            skip "strategies-$shape-2d" "$gpus GPUs: a 2 x 2 mesh needs 4"
        else
            run_step "strategies-$shape-2d" "$python" benchmarks/strategy_figures.py --shape "$shape" \
                --strategy 2d --devices 4 "${figures[@]}"
        fi
    done
else
    skip strategies "no CUDA device: MFU and peak memory need a GPU, and DDP, FSDP2, TP and 2-D more than one; one CPU process at toy sizes of both shapes:"
    for shape in gpt2-124m llama-1b; do
        run_step "strategies-$shape" "$python" benchmarks/strategy_figures.py --tiny --shape "$shape" --steps 3 --warmup 1
    done
fi

header "9. moe: a mixture-of-experts FFN against a dense SwiGLU of the same active width, tokens/s and MFU"
if [ "$gpu" = 1 ]; then
    run_step moe "$python" benchmarks/moe.py --device cuda --dtype bfloat16 --tokens 65536 --d-model 2048 \
        --d-ff 1024 --rounds 5 --steps 10
else
    skip moe "no CUDA device: the grouped GEMM runs on CUDA in bfloat16 and MFU needs a GPU's peak; the CPU comparison at its own size:"
    run_step moe "$python" benchmarks/moe.py --rounds 1 --steps 1
fi

header "10. flex: FlexAttention's block mask against sdpa's spans on packed rows, forward and backward"
if [ "$gpu" = 1 ]; then
    run_step flex "$python" benchmarks/flex_attention.py --device cuda --dtype bfloat16 --no-eager --rounds 5
else
    skip flex "no CUDA device: torch has no FlexAttention backward on CPU (the CPU forward figures: python benchmarks/flex_attention.py)"
fi

header "summary"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all steps passed or skipped"
