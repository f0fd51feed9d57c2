"""The masked-LM options BERT and RoBERTa need (``token_types``, ``lm_head_transform``), each against the Hugging
Face module that defines the convention, built from a plain config, saved and loaded, and trained."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.interop.hf_models import transformers  # skips the module without transformers

import swapformer
from swapformer import ConfigError, ModelConfig, build_masked_lm
from swapformer.models.saving import load_pretrained
from swapformer.tasks import MaskedLMModule

BERT_LIKE = dict(
    vocab_size=40,
    d_model=16,
    num_heads=2,
    num_layers=1,
    d_ff=32,
    max_seq_len=12,
    dropout=0.0,
    norm={"name": "layernorm", "eps": 1e-12},
    embedding_norm=True,
    lm_head_bias=True,
    token_types=3,
    lm_head_transform="gelu",
)


def _bert_config(**changes):
    return transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
        type_vocab_size=3,
        **changes,
    )


def test_token_types_and_the_embedding_norm_equal_berts_embeddings():
    from transformers.models.bert.modeling_bert import BertEmbeddings

    torch.manual_seed(0)
    theirs = BertEmbeddings(_bert_config()).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter))
    model = build_masked_lm(BERT_LIKE).eval()
    embedding = model.embedding
    with torch.no_grad():
        embedding.token.weight.copy_(theirs.word_embeddings.weight)
        embedding.token_type.weight.copy_(theirs.token_type_embeddings.weight)
        model.positional.table.weight.copy_(theirs.position_embeddings.weight)
        embedding.norm.weight.copy_(theirs.LayerNorm.weight)
        embedding.norm.bias.copy_(theirs.LayerNorm.bias)
    ids = torch.randint(40, (2, 7))
    types = torch.randint(3, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(embedding(ids), theirs(input_ids=ids))  # row 0 when none are given
        torch.testing.assert_close(embedding(ids, token_type_ids=types), theirs(ids, token_type_ids=types))
        assert not torch.allclose(embedding(ids, token_type_ids=types), embedding(ids))


@pytest.mark.parametrize(
    ("ours", "hidden_act"), [("gelu", "gelu"), ("gelu_tanh", "gelu_new"), ("relu", "relu"), ("silu", "silu")]
)
def test_the_head_transform_equals_berts_for_each_activation(ours, hidden_act):
    from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

    torch.manual_seed(0)
    theirs = BertPredictionHeadTransform(_bert_config(hidden_act=hidden_act, layer_norm_eps=1e-12)).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter))
    transform = build_masked_lm({**BERT_LIKE, "lm_head_transform": ours}).head_transform
    transform.load_state_dict(
        {
            "dense.weight": theirs.dense.weight,
            "dense.bias": theirs.dense.bias,
            "norm.weight": theirs.LayerNorm.weight,
            "norm.bias": theirs.LayerNorm.bias,
        }
    )
    x = torch.randn(2, 5, 16) * 2
    with torch.no_grad():
        torch.testing.assert_close(transform(x), theirs(x))


def test_a_plain_config_of_no_kind_builds_them_and_other_kinds_refuse_them():
    model = build_masked_lm(BERT_LIKE)  # a mapping without a kind takes the masked builder's
    assert model.embedding.token_type.num_embeddings == 3 and model.head_transform is not None
    assert build_masked_lm({"vocab_size": 40}).head_transform is None
    assert build_masked_lm({"vocab_size": 40}).embedding.token_type is None
    with pytest.raises(ConfigError, match=r"lm_head_transform is an option of masked_lm models, not seq2seq"):
        ModelConfig(vocab_size=40, kind="seq2seq", lm_head_transform="gelu")
    # built without a kind, a config is a causal LM's, whose builder would drop the table: refused there
    with pytest.raises(ConfigError, match=r"token_types is an option of masked_lm models, not causal_lm"):
        swapformer.build({"vocab_size": 40, "token_types": 2})


def test_save_pretrained_and_load_keep_the_options_and_the_logits(tmp_path):
    torch.manual_seed(0)
    model = build_masked_lm({**BERT_LIKE, "lm_head_transform": "gelu_tanh", "tie_embeddings": False}).eval()
    model.save_pretrained(tmp_path / "saved")
    again = load_pretrained(tmp_path / "saved")
    assert again.config == model.config
    assert (again.config.token_types, again.config.lm_head_transform) == (3, "gelu_tanh")
    ids, types = torch.randint(40, (2, 7)), torch.randint(3, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(again(ids, token_type_ids=types), model(ids, token_type_ids=types))
    assert swapformer.load(tmp_path / "saved").config == model.config


def test_the_masked_task_trains_the_token_type_row_and_the_head_transform():
    torch.manual_seed(0)
    module = MaskedLMModule(**BERT_LIKE)
    assert module.config.token_types == 3 and module.config.lm_head_transform == "gelu"
    ids = torch.randint(4, 40, (8, 12), generator=torch.Generator().manual_seed(1))
    inputs, labels = module.mask_tokens(ids, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(module(inputs).flatten(0, 1), labels.flatten(), ignore_index=module.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    after = dict(module.model.named_parameters())
    gradient = after["embedding.token_type.weight"].grad  # the last step's: only row 0 was added
    assert gradient[0].abs().sum() > 0 and gradient[1:].abs().sum() == 0
    for name in ("head_transform.dense.weight", "head_transform.norm.weight", "lm_head.bias"):
        assert not torch.equal(after[name], before[name]), name
