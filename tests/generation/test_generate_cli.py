"""``swapformer generate``: streams a causal LM's continuation, translates lines with a seq2seq checkpoint."""

from __future__ import annotations

import io
import re

import pytest
import torch

from swapformer.cli import run
from swapformer.cli.generate import TextStreamer, main
from swapformer.data import ByteTokenizer, CharTokenizer
from swapformer.tasks import CausalLMModule, Seq2SeqModule

TINY = dict(d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=64, dropout=0.0)


def save(module, path):
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def causal_ckpt(tmp_path_factory):
    tokenizer = CharTokenizer.fit("def main():\n    return 42\n")
    torch.manual_seed(0)
    module = CausalLMModule(vocab_size=tokenizer.vocab_size, positional="learned", **TINY)
    module.tokenizer = tokenizer
    return save(module, tmp_path_factory.mktemp("ckpt") / "lm.ckpt"), module.eval()


@pytest.fixture(scope="module")
def seq2seq_ckpt(tmp_path_factory):
    tokenizer = CharTokenizer.fit("0123456789-/ JanFebMar")
    torch.manual_seed(0)
    module = Seq2SeqModule(vocab_size=tokenizer.vocab_size, **TINY)
    module.tokenizer = tokenizer
    return save(module, tmp_path_factory.mktemp("ckpt") / "s2s.ckpt"), module.eval()


def test_causal_lm_streams_the_greedy_continuation_of_each_prompt(causal_ckpt):
    path, module = causal_ckpt
    out = io.StringIO()
    main(["--ckpt_path", path, "--prompt", "def ", "--prompt", "ret", "--max_new_tokens", "12"], stdout=out)
    expected = [module.generate_text(p, max_new_tokens=12) for p in ("def ", "ret")]
    assert out.getvalue() == "\n".join(text + "\n" for text in expected)


def test_sampling_with_a_seed_repeats_and_beams_print_whole(causal_ckpt, tmp_path):
    path, _ = causal_ckpt
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def\n\nmain\n")  # blank lines are skipped
    runs = []
    for _ in range(2):
        out = io.StringIO()
        main(["--ckpt_path", path, "--prompts_file", str(prompts), "--do_sample", "--top_k", "5", "--seed", "3"],
             stdout=out)  # fmt: skip
        runs.append(out.getvalue())
    assert runs[0] == runs[1] and runs[0].startswith("def")
    out = io.StringIO()
    main(["--ckpt_path", path, "--prompt", "def", "--num_beams", "3", "--max_new_tokens", "5"], stdout=out)
    assert out.getvalue().startswith("def") and out.getvalue().endswith("\n")


def test_seq2seq_translates_stdin_lines_like_translate(seq2seq_ckpt):
    path, module = seq2seq_ckpt
    lines = ["Jan 5 2021", "03/04/1999", "Mar 12"]
    out = io.StringIO()
    main(["--ckpt_path", path, "--max_new_tokens", "10", "--batch_size", "2"], stdin=io.StringIO("\n".join(lines)),
         stdout=out)  # fmt: skip
    assert out.getvalue().splitlines() == module.translate(lines, max_len=10)


def test_dispatch_from_the_swapformer_command(causal_ckpt, capsys):
    path, module = causal_ckpt
    run(["generate", "--ckpt_path", path, "--prompt", "def", "--max_new_tokens", "4"])
    assert capsys.readouterr().out == module.generate_text("def", max_new_tokens=4) + "\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", ""], r"prompt 1 is empty"),
        ([], "pass --prompt TEXT or --prompts_file FILE"),
        (["--prompt", "x", "--do_sample", "--top_p", "1.5"], r"top_p=1\.5 must be in \(0, 1\]"),
        (["--prompt", "def", "--num_beams", "0"], "num_beams=0 must be an int >= 1"),
        (["--prompt", "def", "--max_new_tokens", "-5"], "max_new_tokens=-5"),
        (
            ["--prompt", "d" * 60, "--max_new_tokens", "10"],
            r"prompt \+ max_new_tokens is 70 tokens .* 64 positions",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(causal_ckpt, args, message, capsys):
    path, _ = causal_ckpt
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt_path", path, *args], stdout=out)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.startswith("swapformer generate: error: ") and err.count("\n") == 1
    assert out.getvalue() == ""  # checked before the prompt is echoed: the error is the only line


def test_a_folder_or_missing_checkpoint_is_named(tmp_path, capsys):
    (tmp_path / "__0_0.distcp").write_bytes(b"shard")  # a shard without the folder's index (.metadata)
    for path, message in [
        (tmp_path, "is a folder but not a distributed checkpoint"),
        (tmp_path / "nope.ckpt", "no checkpoint at"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["--ckpt_path", str(path), "--prompt", "x"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("swapformer generate: error: ")
        assert message in err and str(path) in err


def test_streamer_waits_for_whole_characters():
    tokenizer = ByteTokenizer()
    out = io.StringIO()
    streamer = TextStreamer(tokenizer, file=out)
    for byte_id in tokenizer.encode("é!"):  # é is two bytes: nothing prints after the first
        streamer.put(torch.tensor([byte_id]))
        assert "\ufffd" not in out.getvalue()
    streamer.end()
    assert out.getvalue() == "é!\n"
