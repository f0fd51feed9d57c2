"""``swapformer evaluate``: perplexity by hand from the model's logits, BLEU and chrF by sacreBLEU directly."""

from __future__ import annotations

import io
import math
import re

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from swapformer.cli import run
from swapformer.cli.evaluate import main
from swapformer.data import CharTokenizer
from swapformer.tasks import CausalLMModule, MaskedLMModule, Seq2SeqModule

TINY = dict(d_model=16, num_heads=2, num_layers=1, d_ff=32, max_seq_len=16, dropout=0.0)
TEXT = "def main():\n    return 42\n# é: two bytes\n" * 3


def save(module, path):
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    tokenizer = CharTokenizer.fit(TEXT)
    torch.manual_seed(0)
    module = CausalLMModule(vocab_size=tokenizer.vocab_size, positional="learned", **TINY)
    module.tokenizer = tokenizer
    folder = tmp_path_factory.mktemp("causal")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    return save(module, folder / "lm.ckpt"), module.eval(), str(folder / "text.txt")


def _figures(out: str) -> dict[str, float]:
    return {name: float(value) for name, value in re.findall(r"^([a-z ]+) (\d+\.\d+)$", out, re.M)}


def test_perplexity_equals_one_computed_by_hand_from_the_logits(causal, capsys):
    path, module, text_path = causal
    run(["evaluate", "--ckpt_path", path, "--path", text_path, "--batch_size", "2"])
    figures = _figures(capsys.readouterr().out)
    # by hand: windows of max_seq_len=16 tokens, each predicting its next 16 (the last window shorter)
    ids = torch.tensor(module.tokenizer.encode(TEXT))
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, 16):
            window = ids[start : start + 17]
            logits = module(window[None, :-1])[0]
            nll += float(F.cross_entropy(logits, window[1:], reduction="sum"))
            count += len(window) - 1
    assert count == len(TEXT) - 1  # a character tokenizer: one token per character
    assert figures["perplexity"] == pytest.approx(math.exp(nll / count), abs=1e-4)
    assert figures["bits per character"] == pytest.approx(nll / math.log(2) / len(TEXT), abs=1e-4)
    num_bytes = len(TEXT.encode("utf-8"))
    assert num_bytes > len(TEXT)  # é takes two bytes
    assert figures["bits per byte"] == pytest.approx(nll / math.log(2) / num_bytes, abs=1e-4)


def test_a_shorter_window_changes_the_figure_and_is_still_by_hand(causal):
    path, module, text_path = causal
    out = io.StringIO()
    main(["--ckpt_path", path, "--path", text_path, "--seq_len", "5"], stdout=out)
    ids = torch.tensor(module.tokenizer.encode(TEXT))
    with torch.no_grad():
        nll = sum(
            float(F.cross_entropy(module(w[None, :-1])[0], w[1:], reduction="sum"))
            for w in (ids[s : s + 6] for s in range(0, len(ids) - 1, 5))
        )
    assert _figures(out.getvalue())["perplexity"] == pytest.approx(math.exp(nll / (len(ids) - 1)), abs=1e-4)


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    sources = ["12 Jan 2020", "3 Feb 1999", "30 Mar 2001", "7 Jan 2010"]
    references = ["2020-01-12", "1999-02-03", "2001-03-30", "2010-01-07"]
    tokenizer = CharTokenizer.fit(sources + references)
    torch.manual_seed(0)
    module = Seq2SeqModule(vocab_size=tokenizer.vocab_size, **{**TINY, "max_seq_len": 64})
    module.tokenizer = tokenizer
    folder = tmp_path_factory.mktemp("seq2seq")
    (folder / "src.txt").write_text("\n".join(sources) + "\n")
    (folder / "ref.txt").write_text("\n".join(references) + "\n")
    return save(module, folder / "s2s.ckpt"), module.eval(), folder, sources, references


def test_bleu_and_chrf_equal_sacrebleu_called_directly(seq2seq, capsys):
    path, module, folder, sources, references = seq2seq
    run(["evaluate", "--ckpt_path", path, "--src", str(folder / "src.txt"), "--ref", str(folder / "ref.txt")])
    out = capsys.readouterr().out
    with torch.no_grad():
        hypotheses = module.translate(sources)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    assert f"{bleu}\n" in out and f"{chrf}\n" in out
    assert "signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in out
    assert "signature: nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--path", "{dir}/none.txt"], "No such file or directory"),
        (["--src", "{dir}/text.txt", "--ref", "{dir}/text.txt"], "holds a causal_lm model: pass --path FILE"),
        (["--path", "{dir}/text.txt", "--seq_len", "0"], "--seq_len=0 must be at least 1"),
        (["--path", "{dir}/empty.txt"], "the text has 0 token"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(causal, arguments, message, capsys):
    path, _, text_path = causal
    folder = text_path.rsplit("/", 1)[0]
    open(f"{folder}/empty.txt", "w").close()
    with pytest.raises(SystemExit) as exit_info:
        run(["evaluate", "--ckpt_path", path, *(a.format(dir=folder) for a in arguments)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("swapformer evaluate: error:") and message in err[0]


def test_seq2seq_and_masked_checkpoints_name_what_they_need(seq2seq, tmp_path, capsys):
    path, _, folder, _, _ = seq2seq
    with pytest.raises(SystemExit):
        main(["--ckpt_path", path, "--path", str(folder / "src.txt")])
    assert "holds a seq2seq model: pass --src FILE --ref FILE" in capsys.readouterr().err
    (folder / "short.txt").write_text("12 Jan 2020\n")
    with pytest.raises(SystemExit):
        main(["--ckpt_path", path, "--src", str(folder / "src.txt"), "--ref", str(folder / "short.txt")])
    assert "--src has 4 lines and --ref 1" in capsys.readouterr().err
    masked = MaskedLMModule(vocab_size=30, **TINY)
    masked.tokenizer = CharTokenizer.fit("abc")
    with pytest.raises(SystemExit):
        main(["--ckpt_path", save(masked, tmp_path / "m.ckpt"), "--path", str(folder / "src.txt")])
    assert "masked_lm model, which has no left-to-right perplexity" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--ckpt_path", str(tmp_path / "none.ckpt"), "--path", str(folder / "src.txt")])
    assert "no checkpoint at" in capsys.readouterr().err
