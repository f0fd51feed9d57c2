"""Which value each ``generate()`` setting takes, and the checks on them.

::

    an argument passed to generate()          (this call only)
      > model.generation_config               (the checkpoint's generation_config.json: GenerationDefaults)
      > transformers' global defaults          (only for a model with generation defaults: top_k 50 when sampling)
      > swapformer's defaults                  (20 new tokens, as transformers 5; greedy, no processor)
    special ids last fall back to the model config (eos_token_id, pad_token_id, decoder_start_token_id); a
    model with defaults but no pad id among them pads finished rows with its first eos id, as transformers does

Lengths follow transformers: ``max_length`` and ``min_length`` count the ids the search starts from (a
decoder-only prompt, padding included; an encoder-decoder's start id), ``max_new_tokens`` and ``min_new_tokens``
only the new ones; ``max_new_tokens`` wins when both are set. A length passed to ``generate()`` replaces both
default lengths.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from swapformer.generation.search import Settings, as_id_tuple
from swapformer.models.generation_defaults import HUGGING_FACE_FALLBACKS
from swapformer.registry import KINDS


class _Default:
    """The value of a ``generate()`` argument left out (the model's default applies)."""

    def __repr__(self) -> str:
        return "<the model's default>"


DEFAULT: Any = _Default()

OFF_WHEN_NONE = frozenset(
    {"top_k", "top_p", "forced_bos_token_id", "forced_eos_token_id", "bad_words_ids", "suppress_tokens"}
    | {"begin_suppress_tokens"}
)
"""Settings that ``None``, passed explicitly, turns off; for the others ``None`` means "the default"."""

SAMPLING = ("temperature", "top_k", "top_p")
DEFAULT_NEW_TOKENS = 20
"""New tokens when no length is set, passed or default (transformers 5 generates as many)."""


def resolve(model: nn.Module, input_ids: Tensor, arguments: dict[str, Any]) -> tuple[Settings, int | None]:
    """The :class:`Settings` of one ``generate()`` call and its decoder start id.

    Args:
        model: the model; its ``generation_config`` (None: no defaults) and ``config`` (special ids) are read.
        input_ids: ``(N, P)``, the prompts (decoder-only) or the sources (encoder-decoder).
        arguments: ``generate()``'s settings by name, :data:`DEFAULT` for those left out.

    Raises:
        ValueError: a setting out of range, sampling settings passed without ``do_sample``, a ``max_length``
            that leaves no room for a new token, or defaults with a setting swapformer cannot apply (each named).
    """
    explicit = {
        name: value
        for name, value in arguments.items()
        if value is not DEFAULT and (value is not None or name in OFF_WHEN_NONE)
    }
    defaults = getattr(model, "generation_config", None)
    inherited: dict[str, Any] = {}
    if defaults is not None:
        defaults.check_applicable()
        inherited = {**HUGGING_FACE_FALLBACKS, **defaults.settings()}
    for pair in (("max_new_tokens", "max_length"), ("min_new_tokens", "min_length")):
        if any(name in explicit for name in pair):  # a length passed replaces both default lengths
            inherited = {name: value for name, value in inherited.items() if name not in pair}
    values = {**inherited, **explicit}
    if not values.get("do_sample"):
        if any(name in explicit and explicit[name] != _NEUTRAL[name] for name in SAMPLING):
            raise ValueError(
                "invalid generation arguments: temperature, top_k and top_p apply only when sampling: pass "
                "do_sample=True"
            )
        # as transformers: sampling settings of the defaults wait for do_sample
        values = {name: value for name, value in values.items() if name not in SAMPLING}

    config = getattr(model, "config", None)
    source = config is not None and getattr(config, "kind", None) in KINDS and KINDS[config.kind].source
    first = 1 if source else input_ids.size(1)  # the ids the search starts from: the start id, or the prompt
    max_new_tokens = values.get("max_new_tokens")
    if max_new_tokens is None and values.get("max_length") is None:
        max_new_tokens = DEFAULT_NEW_TOKENS
    elif max_new_tokens is None:
        max_length = values["max_length"]
        max_new_tokens = max_length - first if isinstance(max_length, int) else max_length
        if isinstance(max_new_tokens, int) and max_new_tokens < 1:
            where = "passed" if "max_length" in explicit else "the model's generation_config"
            raise ValueError(
                f"max_length={max_length} ({where}) leaves no room for a new token after {first} "
                f"{'start id' if source else 'prompt tokens'}: pass max_new_tokens, or a larger max_length"
            )
    min_new_tokens = max(values.get("min_new_tokens") or 0, (values.get("min_length") or 0) - first, 0)

    eos = values.get("eos_token_id")
    eos = as_id_tuple(getattr(config, "eos_token_id", None) if eos is None else eos)
    pad = values.get("pad_token_id")
    if pad is None and eos and defaults is not None:  # transformers pads finished rows with the first eos
        pad = eos[0]
    if pad is None:
        pad = getattr(config, "pad_token_id", None)
    if pad is None:
        pad = 0
    start = values.get("decoder_start_token_id")
    if start is None:
        start = getattr(config, "start_token_id", None)
    # transformers never blocks an eos that is a one-token bad word
    bad = tuple(
        tuple(words) for words in values.get("bad_words_ids") or () if tuple(words) not in {(e,) for e in eos}
    )
    settings = Settings(
        max_new_tokens=max_new_tokens,
        do_sample=bool(values.get("do_sample", False)),
        temperature=values.get("temperature", 1.0),
        top_k=values.get("top_k") or None,  # 0 = off, as in transformers
        top_p=values.get("top_p"),
        repetition_penalty=values.get("repetition_penalty", 1.0),
        num_beams=values.get("num_beams", 1),
        length_penalty=values.get("length_penalty", 1.0),
        early_stopping=values.get("early_stopping", False),
        eos_token_id=eos,
        pad_token_id=pad,
        min_new_tokens=min_new_tokens,
        no_repeat_ngram_size=values.get("no_repeat_ngram_size") or 0,
        bad_words_ids=bad,
        suppress_tokens=as_id_tuple(values.get("suppress_tokens")),
        begin_suppress_tokens=as_id_tuple(values.get("begin_suppress_tokens")),
        forced_bos_token_id=values.get("forced_bos_token_id"),
        forced_eos_token_id=as_id_tuple(values.get("forced_eos_token_id")),
    )
    check_settings(settings)
    return settings, start


_NEUTRAL: dict[str, Any] = {"temperature": 1.0, "top_k": None, "top_p": None}


def check_settings(s: Settings) -> None:
    """Refuse settings out of range, all named in one message.

    Raises:
        ValueError: each problem with its value and the range it must be in.
    """
    problems = []
    if not isinstance(s.max_new_tokens, int) or s.max_new_tokens < 1:
        problems.append(f"max_new_tokens={s.max_new_tokens!r} must be an int >= 1")
    if not isinstance(s.num_beams, int) or s.num_beams < 1:
        problems.append(f"num_beams={s.num_beams!r} must be an int >= 1 (1 = no beam search)")
    if s.do_sample and not s.temperature > 0:
        problems.append(
            f"temperature={s.temperature!r} must be > 0 when sampling (for the argmax, do_sample=False)"
        )
    if s.top_k is not None and (not isinstance(s.top_k, int) or s.top_k < 1):
        problems.append(f"top_k={s.top_k!r} must be an int >= 1, or None to keep every token")
    if s.top_p is not None and not 0 < s.top_p <= 1:
        problems.append(f"top_p={s.top_p!r} must be in (0, 1]; 1 (or None) keeps every token")
    if not s.repetition_penalty > 0:
        problems.append(f"repetition_penalty={s.repetition_penalty!r} must be > 0; 1 is no penalty")
    if s.early_stopping not in (True, False, "never"):
        problems.append(f"early_stopping={s.early_stopping!r} must be True, False or 'never'")
    if not isinstance(s.no_repeat_ngram_size, int) or s.no_repeat_ngram_size < 0:
        problems.append(f"no_repeat_ngram_size={s.no_repeat_ngram_size!r} must be an int >= 0 (0 = off)")
    if any(not words for words in s.bad_words_ids):
        problems.append("bad_words_ids holds an empty list: give each bad word as a non-empty list of ids")
    if problems:
        raise ValueError("invalid generation arguments: " + "; ".join(problems))
