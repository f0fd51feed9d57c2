"""Input checks at the model's edge (swapformer.models.inputs): every bad input of every model kind raises one
ValueError line naming the argument and the fix; every valid form (bool or 0/1 long masks, int32 ids) gives the
logits of the unchecked path."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from swapformer import build_causal_lm, build_masked_lm, build_seq2seq
from swapformer.models import inputs
from swapformer.nn import KVCache

VOCAB = 50
CONFIG = {"vocab_size": VOCAB, "d_model": 16, "num_heads": 2, "num_layers": 1, "d_ff": 32, "max_seq_len": 32}


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    build = {"causal": build_causal_lm, "masked": build_masked_lm, "seq2seq": build_seq2seq}[
        kind.split("-")[0]
    ]
    return build(CONFIG).eval()


# Each entry: how one argument pair (ids, mask) reaches a model, and the names the messages use.
Call = Callable[[nn.Module, object, object], Tensor]
ENTRIES: dict[str, tuple[Call, str, str]] = {
    "causal": (lambda m, ids, mask: m(ids, mask), "input_ids", "attention_mask"),
    "masked": (lambda m, ids, mask: m(ids, mask), "input_ids", "attention_mask"),
    "seq2seq-src": (
        lambda m, ids, mask: m(ids, torch.ones(2, 3, dtype=torch.long), mask),
        "src_ids",
        "src_mask",
    ),
    "seq2seq-tgt": (
        lambda m, ids, mask: m(torch.ones(2, 3, dtype=torch.long), ids, None, mask),
        "tgt_ids",
        "tgt_mask",
    ),
}


def _ids(length: int = 7) -> Tensor:
    return torch.randint(4, VOCAB, (2, length), generator=torch.Generator().manual_seed(1))


BAD_IDS = [
    (lambda ids: ids.float(), r"{ids} has dtype float32; token ids must be integers: pass {ids}\.long\(\)"),
    (lambda ids: ids.short(), r"{ids} has dtype int16; ids must be int64 or int32: pass {ids}\.long\(\)"),
    (
        lambda ids: ids[0],
        r"{ids} has shape \(7,\); expected \(N, L\): add the batch dimension with {ids}\.unsqueeze",
    ),
    (lambda ids: ids[None], r"{ids} has shape \(1, 2, 7\); expected \(N, L\)"),
    (lambda ids: ids[:, :0], r"{ids} has shape \(2, 0\): pass a non-empty \(N, L\) batch"),
    (lambda ids: ids.tolist(), r"{ids} is a list; pass a tensor"),
    (
        lambda ids: torch.cat([ids, torch.full((2, 1), VOCAB + 3)], 1),
        r"{ids} holds ids from \d+ to 53 but the model's vocabulary has 50 ids \(0\.\.49\): the tokenizer and the "
        "model disagree",
    ),
    (lambda ids: torch.cat([ids, torch.full((2, 1), -1)], 1), r"{ids} holds ids from -1 to \d+"),
]


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("case", range(len(BAD_IDS)))
def test_bad_ids_raise_one_line_naming_the_argument(entry: str, case: int) -> None:
    call, ids_name, _ = ENTRIES[entry]
    spoil, message = BAD_IDS[case]
    with pytest.raises(ValueError, match=message.format(ids=ids_name)) as error:
        call(_model(entry), spoil(_ids()), None)
    assert "\n" not in str(error.value)


BAD_MASKS = [
    (
        lambda ids: torch.ones(ids.shape),
        r"{mask} has dtype float32; expected bool or 0/1 integers, True \(1\) = real token: pass {mask}\.bool\(\) "
        r"for 0/1 values, or \({mask} == 0\) for an additive mask",
    ),
    (
        lambda ids: torch.ones(2, 6, dtype=torch.bool),
        r"{mask} has shape \(2, 6\) but the (\w+ )?ids have shape \(2, 7\)",
    ),
    (
        lambda ids: torch.ones(7, dtype=torch.bool),
        r"{mask} has shape \(7,\) but the (\w+ )?ids have shape \(2, 7\)",
    ),
    (lambda ids: torch.full(ids.shape, 2), r"{mask} holds values from 2 to 2; expected 0 \(padding\) and 1"),
    (lambda ids: [[1] * 7] * 2, r"{mask} is a list; pass a bool tensor of shape \(2, 7\)"),
]


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("case", range(len(BAD_MASKS)))
def test_bad_masks_raise_one_line_naming_the_argument(entry: str, case: int) -> None:
    call, ids_name, mask_name = ENTRIES[entry]
    spoil, message = BAD_MASKS[case]
    ids = _ids()
    with pytest.raises(ValueError, match=message.format(ids=ids_name, mask=mask_name)) as error:
        call(_model(entry), ids, spoil(ids))
    assert "\n" not in str(error.value)


def _padding_mask() -> Tensor:
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False  # right padding on the second row
    return mask


def _unchecked(kind: str, model: nn.Module, ids: Tensor, mask: Tensor | None) -> Tensor:
    """The logits through the internals the checks sit in front of."""
    if kind == "causal":
        return model.lm_head(model.hidden_states(ids, mask))
    if kind == "seq2seq-src":
        return model.decode(ids[:, :3], model.encode(ids, mask), src_mask=mask)
    raise AssertionError(kind)


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_valid_forms_give_the_same_logits(entry: str) -> None:
    model = _model(entry)
    call = ENTRIES[entry][0]
    ids, mask = _ids(), _padding_mask()
    if entry == "seq2seq-src":
        call = lambda m, i, k: m(i, i[:, :3].long(), k)  # noqa: E731 - the target must have the source's batch
    reference = call(model, ids, mask)
    for same_ids, same_mask in [
        (ids.int(), mask),
        (ids, mask.long()),
        (ids, mask.int()),
        (ids.int(), mask.long()),
    ]:
        torch.testing.assert_close(call(model, same_ids, same_mask), reference, rtol=0, atol=0)
    if entry in ("causal", "seq2seq-src"):
        torch.testing.assert_close(_unchecked(entry, model, ids, mask), reference, rtol=0, atol=0)
    # A bool mask of all True changes nothing.
    torch.testing.assert_close(
        call(model, ids, torch.ones_like(mask)), call(model, ids, None), rtol=0, atol=0
    )


def test_causal_mask_with_a_cache_covers_the_cached_tokens() -> None:
    model, ids = _model("causal"), _ids()
    cache = KVCache(1, capacity=16)
    model(ids[:, :5], torch.ones(2, 5, dtype=torch.long), cache=cache)
    step = model(ids[:, 5:6], torch.ones(2, 6, dtype=torch.long), cache=cache)
    torch.testing.assert_close(step[:, -1], model(ids[:, :6])[:, -1], rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError,
        match=r"attention_mask has shape \(2, 1\) but the 6 cached and the new ids have shape \(2, 7\)",
    ):
        model(ids[:, 6:7], torch.ones(2, 1, dtype=torch.long), cache=cache)


@pytest.mark.parametrize(
    ("kind", "arguments", "message"),
    [
        (
            "causal",
            {"eos_token_id": VOCAB},
            r"eos_token_id=50 is not a token id of the model's vocabulary \(0\.\.49\)",
        ),
        ("causal", {"eos_token_id": [2, -1]}, r"eos_token_id=\[2, -1\] is not a token id .*\[\] for none"),
        ("causal", {"eos_token_id": 2.0}, r"eos_token_id=2\.0 is not a token id"),
        ("causal", {"pad_token_id": 99}, r"pad_token_id=99 is not a token id .*tokenizer\.pad_id"),
        ("causal", {"max_new_tokens": 0}, r"max_new_tokens=0 must be an int >= 1"),
        ("seq2seq", {"decoder_start_token_id": VOCAB}, r"decoder_start_token_id=50 .*tokenizer\.bos_id"),
        (
            "seq2seq",
            {"decoder_start_token_id": 1, "eos_token_id": True},
            r"eos_token_id=True is not a token id",
        ),
    ],
)
def test_generate_refuses_special_ids_outside_the_vocabulary(
    kind: str, arguments: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _model(kind).generate(_ids(3), **{"max_new_tokens": 2, **arguments})


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_generate_checks_the_prompt(kind: str) -> None:
    name = "input_ids"
    model = _model(kind)
    with pytest.raises(ValueError, match=rf"{name} has shape \(3,\); expected \(N, L\)"):
        model.generate(_ids(3)[0], max_new_tokens=2, decoder_start_token_id=1)
    with pytest.raises(ValueError, match=rf"{name} holds ids from \d+ to 60"):
        model.generate(torch.tensor([[5, 60]]), max_new_tokens=2, decoder_start_token_id=1)


def test_generate_accepts_valid_special_ids() -> None:
    model, prompt = _model("causal"), _ids(3)
    reference = model.generate(prompt, max_new_tokens=3, eos_token_id=[])
    assert torch.equal(model.generate(prompt.int(), max_new_tokens=3, eos_token_id=[]), reference)
    model.generate(prompt, max_new_tokens=3, eos_token_id=[2, 3], pad_token_id=torch.tensor(0))


def test_ranges_are_checked_on_the_first_calls_only_on_an_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stands in for a CUDA model: past CHECKED_CALLS calls the range check (a host sync) is skipped, so a bad
    # id reaches the embedding, while shapes and dtypes are still checked.
    monkeypatch.setattr(inputs, "_device", lambda model: "cuda")
    model, bad = _model("causal"), torch.tensor([[1, VOCAB]])
    for _ in range(inputs.CHECKED_CALLS):
        with pytest.raises(ValueError, match="holds ids from 1 to 50"):
            model(bad)
    with pytest.raises(IndexError):
        model(bad)
    with pytest.raises(ValueError, match="has dtype float32"):
        model(bad.float())
    with pytest.raises(ValueError, match="holds ids from 1 to 50"):  # generate checks every call
        model.generate(bad, max_new_tokens=1)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_checks_compile_without_a_graph_break(kind: str) -> None:
    model, ids = _model(kind), _ids()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(ids), model(ids), rtol=0, atol=0)
