"""flops_per_batch: measured on a meta-device model, checked against the textbook count, read by Lightning."""

from __future__ import annotations

import csv
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary

from swapformer.tasks import CausalLMModule, MaskedLMModule, Seq2SeqModule
from swapformer.tasks.flops import TrainingFlops, analytic_flops, measured_flops
from swapformer.training import TokenThroughput

SMALL = dict(vocab_size=100, d_model=64, num_heads=4, num_layers=2, d_ff=128, max_seq_len=128, dropout=0.0)


@pytest.mark.parametrize(
    ("module_class", "shapes", "extra"),
    [
        (CausalLMModule, ((4, 64),), {}),
        (CausalLMModule, ((2, 100),), {"ffn": "swiglu", "num_kv_heads": 2, "positional": "rope"}),
        (MaskedLMModule, ((3, 50),), {}),
        (MaskedLMModule, ((3, 50),), {"token_types": 2, "lm_head_transform": "gelu", "embedding_norm": True}),
        (Seq2SeqModule, ((4, 40), (4, 30)), {"num_encoder_layers": 2, "num_decoder_layers": 3}),
    ],
)
def test_measured_flops_equal_the_analytic_count(module_class, shapes, extra):
    module = module_class(**{**SMALL, **extra})
    measured = measured_flops(module.config, shapes, module.flop_forward)
    assert measured == analytic_flops(module.config, shapes)


def test_flops_per_batch_follows_the_training_batch_shape():
    module = CausalLMModule(**SMALL)
    assert module.flops_per_batch is None  # no batch seen yet
    for shape in [(4, 32), (2, 64)]:
        ids = torch.randint(4, 100, shape)
        module.training_step({"input_ids": ids, "labels": ids}, 0)
        assert module.flops_per_batch == analytic_flops(module.config, (shape,))


def test_seq2seq_counts_the_decoder_input_without_its_last_token():
    module = Seq2SeqModule(**SMALL)
    src, tgt = torch.randint(4, 100, (2, 9)), torch.randint(4, 100, (2, 7))
    batch = {"src_ids": src, "src_mask": torch.ones_like(src, dtype=torch.bool), "tgt_ids": tgt}
    module.training_step(batch, 0)
    assert module.flops_per_batch == analytic_flops(module.config, ((2, 9), (2, 6)))


def test_new_shapes_come_from_a_fit_that_reproduces_the_measurements(monkeypatch):
    """Padded seq2seq batches change shape every step: one fit, then no measurement per shape."""
    module = Seq2SeqModule(**{**SMALL, "num_decoder_layers": 3})
    counter = TrainingFlops(module.config, module.flop_forward)
    assert counter(((4, 40), (4, 30))) == analytic_flops(module.config, ((4, 40), (4, 30)))
    assert counter(((2, 7), (2, 5))) == analytic_flops(module.config, ((2, 7), (2, 5)))  # fits the polynomial
    monkeypatch.setattr(counter, "measure", lambda shapes: pytest.fail("measured again"))
    for shapes in [((3, 11), (3, 64)), ((8, 128), (8, 1)), ((1, 77), (1, 99))]:
        assert counter(shapes) == analytic_flops(module.config, shapes)


def test_a_cost_that_is_no_polynomial_is_measured_shape_by_shape():
    calls = []

    def measure(shapes):
        calls.append(shapes)
        n, length = shapes[0]
        return n * min(length, 20) * length  # a windowed kernel: quadratic, then linear

    counter = TrainingFlops(CausalLMModule(**SMALL).config, CausalLMModule.flop_forward)
    counter.measure = measure
    assert counter(((2, 50),)) == 2000
    assert counter(((2, 10),)) == 200  # the fit failed: measured
    assert counter(((2, 10),)) == 200 and calls[-1] == ((2, 10),) and len(calls) == 1 + 5 + 1


class _Data(pl.LightningDataModule):
    batch_size, seq_len = 4, 16

    def train_dataloader(self):
        ids = torch.randint(4, 100, (16, self.seq_len))
        return torch.utils.data.DataLoader([{"input_ids": i, "labels": i} for i in ids], batch_size=4)


def test_throughput_monitor_logs_flops_without_the_missing_attribute_warning(tmp_path, capsys):
    module = CausalLMModule(**SMALL)
    trainer = pl.Trainer(
        max_steps=4,
        callbacks=[TokenThroughput(window_size=2)],
        logger=pl.loggers.CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=_Data())
    assert not [w for w in caught if "flops_per_batch" in str(w.message)]
    flops = analytic_flops(module.config, ((4, 16),))
    assert module.flops_per_batch == flops
    with open(next(tmp_path.rglob("metrics.csv"))) as logged:
        rows = list(csv.DictReader(logged))
    assert any(float(row.get("train/device/flops_per_sec") or 0) > 0 for row in rows)
    # the model summary ran one forward of a full training batch on the real kernels: a third of a training
    # step, less the attention products, as torch's counter has no formula for the CPU flash-attention kernel
    assert "Total FLOPs: 9.2 M" in capsys.readouterr().out
    attention = 4 * SMALL["num_layers"] * SMALL["d_model"] * 16 * 4 * 16
    assert ModelSummary(module).total_flops == flops // 3 - attention


@pytest.mark.parametrize("shared_experts", [0, 1])
def test_moe_flops_are_the_active_ones_counted_by_hand(shared_experts):
    """Per token: the router, top_k experts (not all of them), the shared expert, the weighted sum of the k
    outputs; whatever the routing, a dropless MoE runs each token through exactly top_k experts."""
    experts, top_k, d, f, layers, vocab, (n, length) = 8, 2, 64, 32, 2, 100, (2, 50)
    moe = {"name": "moe", "experts": experts, "top_k": top_k, "shared_experts": shared_experts}
    module = CausalLMModule(**{**SMALL, "d_ff": f, "ffn": moe})
    attention = 4 * (2 * d * d) + 4 * length * d  # q, k, v, o projections; scores and mixing
    router = 2 * d * experts
    expert = 2 * d * (2 * f) + 2 * f * d  # gate and up, then down
    shared = shared_experts * 3 * (2 * d * f)
    combine = 2 * top_k * d  # sum_j g_j y_j
    per_token = layers * (attention + router + top_k * expert + shared + combine) + 2 * d * vocab
    by_hand = 3 * per_token * n * length  # backward is twice forward
    assert measured_flops(module.config, ((n, length),), module.flop_forward) == by_hand
    ids = torch.randint(4, vocab, (n, length))
    module.training_step({"input_ids": ids, "labels": ids}, 0)  # what ThroughputMonitor reads, in training
    assert module.flops_per_batch == by_hand
