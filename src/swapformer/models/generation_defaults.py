"""Generation defaults that travel with a model: Hugging Face's ``generation_config.json``.

::

    generation_config.json ──from_hf, load──▶ model.generation_config ──save_pretrained, to_hf──▶ the same file
    model.generate(ids, **explicit): explicit  >  model.generation_config  >  transformers' global defaults

A checkpoint's decoding settings (eos lists, forced BOS/EOS, suppressed and bad tokens, beams, lengths, penalties,
sampling) are part of what it was released with: an imported Marian model forces EOS at ``max_length`` and
blocks its pad id, and only these settings make its ``generate()`` give transformers' tokens.

Each field of the file is one of three things:

- a setting ``generate()`` applies (:data:`APPLIED`): kept as an attribute, checked when read;
- a setting that does not change the tokens (:data:`NO_EFFECT`: outputs, caches, version stamps): kept to be
  written back;
- anything else, when it holds a value other than transformers' neutral one (group beam search, typical
  sampling, ...): kept in :attr:`GenerationDefaults.unapplied` and written back, warned about in one line when
  read, and refused by ``generate()``, which would otherwise give other tokens than transformers without a word.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swapformer.errors import ConfigError

GENERATION_CONFIG_FILE = "generation_config.json"

_INT, _FLOAT, _BOOL = "an int", "a number", "true or false"
_IDS, _ID_LISTS, _ID_OR_IDS = (
    "a list of token ids",
    "a list of lists of token ids",
    "a token id or a list of ids",
)

APPLIED: dict[str, str] = {
    "max_length": _INT,
    "max_new_tokens": _INT,
    "min_length": _INT,
    "min_new_tokens": _INT,
    "do_sample": _BOOL,
    "temperature": _FLOAT,
    "top_k": _INT,
    "top_p": _FLOAT,
    "repetition_penalty": _FLOAT,
    "num_beams": _INT,
    "length_penalty": _FLOAT,
    "early_stopping": 'true, false or "never"',
    "no_repeat_ngram_size": _INT,
    "bad_words_ids": _ID_LISTS,
    "suppress_tokens": _IDS,
    "begin_suppress_tokens": _IDS,
    "forced_bos_token_id": _INT,
    "forced_eos_token_id": _ID_OR_IDS,
    "eos_token_id": _ID_OR_IDS,
    "pad_token_id": _INT,
    "decoder_start_token_id": _INT,
}
"""The ``generate()`` settings a ``generation_config.json`` may set, and the JSON type each takes."""

NO_EFFECT = frozenset(
    {
        "_from_model_config",
        "transformers_version",
        "bos_token_id",  # starts a text only when generate() is given no input ids
        "use_cache",
        "cache_implementation",
        "cache_config",
        "max_cache_len",
        "compile_config",
        "disable_compile",
        "low_memory",
        "prefill_chunk_size",
        "continuous_batching_config",
        "remove_invalid_values",  # changes only non-finite logits
        "output_attentions",
        "output_hidden_states",
        "output_scores",
        "output_logits",
        "return_dict_in_generate",
        "is_assistant",
        "num_assistant_tokens",
        "num_assistant_tokens_schedule",
        "assistant_confidence_threshold",
        "assistant_lookbehind",
        "target_lookbehind",
    }
)
"""Fields that do not change the tokens ``generate()`` returns: kept only to be written back."""

NEUTRAL: dict[str, Any] = {
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "guidance_scale": 1.0,
    "renormalize_logits": False,
}
"""transformers' values of the other fields that leave the tokens as they are (any field not here: None)."""

HUGGING_FACE_FALLBACKS: dict[str, Any] = {"top_k": 50}
"""transformers' global defaults where they differ from swapformer's (no top-k): what a model with generation
defaults uses for the settings its defaults leave unset, as transformers does. Both generate 20 new tokens when
no length is set (transformers 5 adds its default ``max_length`` of 20 to the prompt's length)."""


@dataclass
class GenerationDefaults:
    """A model's own ``generate()`` settings (``model.generation_config``), read from and written to
    ``generation_config.json``; Hugging Face's field names. None = not set.

    ``model.generate(ids)`` uses them; an argument passed to ``generate`` wins for that call. The settings left
    unset fall back to transformers' global defaults (``top_k`` 50 when sampling; a finished row padded with the
    first eos id), so an imported model decodes as it does in transformers. A model without defaults
    (``model.generation_config`` None, as :func:`swapformer.build` makes it) keeps swapformer's (no top-k, the
    model config's pad id). Either generates 20 new tokens when no length is set.

    Example:
        >>> defaults = GenerationDefaults(num_beams=4, max_length=64, forced_eos_token_id=2)
        >>> defaults.to_dict()
        {'max_length': 64, 'num_beams': 4, 'forced_eos_token_id': 2}
    """

    max_length: int | None = None
    max_new_tokens: int | None = None
    min_length: int | None = None
    min_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    no_repeat_ngram_size: int | None = None
    bad_words_ids: list[list[int]] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    unapplied: dict[str, Any] = field(default_factory=dict)
    """Fields that would change the tokens but have no swapformer equivalent: ``generate()`` refuses to run
    while one is here (``unapplied.pop(name)`` to decode without it)."""
    kept: dict[str, Any] = field(default_factory=dict)
    """Fields that do not change the tokens (:data:`NO_EFFECT`), written back as they were read."""

    def __post_init__(self) -> None:
        problems = [problem for name in APPLIED if (problem := _problem(name, getattr(self, name)))]
        if problems:
            raise ConfigError("generation defaults: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = GENERATION_CONFIG_FILE) -> GenerationDefaults:
        """Sort the fields of a ``generation_config.json`` (see the module docstring); warn in one line about the
        ones ``generate()`` cannot apply.

        Raises:
            ConfigError: a setting ``generate()`` applies holds a value of the wrong type (named, with the type).
        """
        applied = {name: value for name, value in data.items() if name in APPLIED and value is not None}
        kept = {name: value for name, value in data.items() if name in NO_EFFECT}
        unapplied = {
            name: value
            for name, value in data.items()
            if name not in APPLIED
            and name not in NO_EFFECT
            and value is not None
            and value != NEUTRAL.get(name)
        }
        problems = [problem for name, value in applied.items() if (problem := _problem(name, value))]
        if problems:
            raise ConfigError(
                f"{where}: " + "; ".join(problems) + " (correct it, or remove it for the default)"
            )
        if unapplied:
            listed = ", ".join(f"{name}={value!r}" for name, value in unapplied.items())
            warnings.warn(
                f"{where}: {listed} changes the tokens and has no swapformer equivalent; generate() refuses it "
                "until removed (model.generation_config.unapplied.pop(name))",
                stacklevel=2,
            )
        return cls(**applied, unapplied=unapplied, kept=kept)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as ``generation_config.json`` holds them (the kept and unapplied ones too)."""
        applied = {name: getattr(self, name) for name in APPLIED if getattr(self, name) is not None}
        return {**self.kept, **applied, **self.unapplied}

    def settings(self) -> dict[str, Any]:
        """The ``generate()`` arguments these defaults set."""
        return {name: getattr(self, name) for name in APPLIED if getattr(self, name) is not None}

    def check_applicable(self) -> None:
        """Refuse to decode with a setting ``generate()`` cannot apply.

        Raises:
            ValueError: one is set; the message names it and how to drop it.
        """
        if self.unapplied:
            name, value = next(iter(self.unapplied.items()))
            raise ValueError(
                f"model.generation_config sets {name}={value!r}, which changes the tokens and has no swapformer "
                f"equivalent: remove it (model.generation_config.unapplied.pop({name!r})) to decode without it"
            )

    def save(self, directory: Path) -> None:
        """Write ``generation_config.json`` into ``directory``."""
        (directory / GENERATION_CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def read_generation_defaults(directory: Path) -> GenerationDefaults | None:
    """The ``generation_config.json`` of ``directory``, or None when it has none.

    Raises:
        ConfigError: a file that is not a JSON object, or a setting of the wrong type (named).
    """
    file = directory / GENERATION_CONFIG_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} holds a JSON {type(data).__name__}, not an object of generation settings")
    return GenerationDefaults.from_dict(data, where=str(file))


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the setting ``name`` (None: nothing, or not set)."""
    if value is None:
        return None
    kind = APPLIED[name]
    ok = {
        _INT: _is_int(value),
        _FLOAT: isinstance(value, int | float) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _IDS: isinstance(value, list) and all(_is_int(v) for v in value),
        _ID_LISTS: isinstance(value, list)
        and all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value),
        _ID_OR_IDS: _is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value)),
    }.get(kind, value in (True, False, "never"))
    return None if ok else f"{name}={value!r} must be {kind}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["GENERATION_CONFIG_FILE", "GenerationDefaults", "read_generation_defaults"]
