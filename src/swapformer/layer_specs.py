"""Per-layer specs: what each layer of a stack is built from, the uniform config with a layer's overrides.

A config names one member per family for every layer. Its ``layers`` key, when given, lets layers differ::

    layers:                                   # a pattern of named layer types, repeated over the stack
      pattern: [local, local, global]
      types:
        local:  {attention: {name: sliding_window, window: 512}, positional: {name: rope, base: 10000}}
        global: {positional: {name: rope, base: 1000000}}

    layers: [{ffn: swiglu}, {}, {positional: none}]     # or one mapping per layer

Each override replaces the uniform value of its key (:data:`LAYER_KEYS`). A component written as a mapping
without ``name`` keeps the uniform member and changes only the options it gives (``{base: 1000000}`` on a
uniform ``rope``). A seq2seq model applies a pattern to each of its stacks from the stack's first layer; a
list there holds the encoder's layers, then the decoder's.

Nothing here builds a module: :func:`resolve` turns a config into one plain :class:`LayerSpec` per layer, and the
builders (:mod:`swapformer.models.builders`) make each layer of its spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from swapformer.errors import ConfigError, did_you_mean
from swapformer.registry import ComponentSpec, split_spec

COMPONENT_FAMILIES = {
    "attention": "attention",
    "positional": "positional",
    "qk_norm": "norm",
    "norm": "norm",
    "placement": "placement",
    "ffn": "ffn",
}
"""The component keys of a config (and of a layer) and the family each one names a member of."""


@dataclass(frozen=True)
class LayerSpec:
    """The members and sizes one layer is built from (configs hold names, so this holds names too).

    Args:
        attention: the self-attention kernel.
        positional: the member whose ``rotate`` and ``bias`` hooks this layer's self-attention applies
            (``none``: no positions in this layer, NoPE). The model's own member still adds absolute positions
            at the embedding.
        qk_norm: the norm on each query and key head before the rotation, or None.
        norm: the norm of each residual step.
        placement: where the norms sit.
        ffn: the feed-forward member.
        d_ff: the feed-forward width.
    """

    attention: ComponentSpec
    positional: ComponentSpec
    qk_norm: ComponentSpec | None
    norm: ComponentSpec
    placement: ComponentSpec
    ffn: ComponentSpec
    d_ff: int


LAYER_KEYS = tuple(f.name for f in fields(LayerSpec))
"""The keys a layer may override: every member of a layer, and the feed-forward width."""


def uniform_spec(config: Any) -> LayerSpec:
    """The layer every layer is unless ``layers`` says otherwise: the config's own members."""
    return LayerSpec(**{key: getattr(config, key) for key in LAYER_KEYS})


def override(base: LayerSpec, changes: Mapping[str, Any]) -> LayerSpec:
    """``base`` with ``changes`` applied (keys already checked): a component mapping without ``name`` keeps
    ``base``'s member and updates its options; anything else replaces the value."""
    values = {}
    for key, value in changes.items():
        if key in COMPONENT_FAMILIES and isinstance(value, Mapping) and "name" not in value:
            current = getattr(base, key)
            if current is None:
                raise ConfigError(f"{key}: {dict(value)!r} changes options of no member; give its name")
            name, options = split_spec(current, where=key)
            value = {"name": name, **options, **value}
        elif isinstance(value, Mapping):
            value = dict(value)
        if key == "positional" and value is None:
            value = "none"
        values[key] = value
    return LayerSpec(**{**{k: getattr(base, k) for k in LAYER_KEYS}, **values})


def same_member(a: ComponentSpec | None, b: ComponentSpec | None) -> bool:
    """Whether two specs name the same member with the same options (``"rope"`` == ``{"name": "rope"}``)."""
    if a is None or b is None:
        return a is b
    try:
        return split_spec(a, where="") == split_spec(b, where="")
    except ConfigError:
        return a == b


def stack_sizes(config: Any) -> list[tuple[str, int]]:
    """(name, depth) of each stack a config's kind builds, in the order a ``layers`` list covers them."""
    if config.kind == "seq2seq":
        return [
            ("encoder", config.encoder_layers),
            ("decoder", config.decoder_layers),
        ]
    return [("decoder" if config.kind == "causal_lm" else "encoder", config.num_layers)]


def overrides(config: Any, stack: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, changes) of each layer of ``stack`` (a name from :func:`stack_sizes`): ``where`` names the
    source of the changes for messages (``layers.types.local``, ``layers[3]``).

    Raises:
        ConfigError: ``layers`` is malformed (see :func:`shape_problems`).
    """
    problems = shape_problems(config)
    if problems:
        raise ConfigError(problems)
    sizes = stack_sizes(config)
    depth = dict(sizes)[stack]
    layers = config.layers
    if layers is None:
        return [("", {})] * depth
    if isinstance(layers, Mapping):
        pattern, types = list(layers["pattern"]), layers.get("types") or {}
        return [
            (f"layers.types.{pattern[i % len(pattern)]}", types.get(pattern[i % len(pattern)]) or {})
            for i in range(depth)
        ]
    start = sum(n for name, n in sizes[: [name for name, _ in sizes].index(stack)])
    return [(f"layers[{start + i}]", layers[start + i] or {}) for i in range(depth)]


def resolve(config: Any, stack: str) -> list[LayerSpec]:
    """One :class:`LayerSpec` per layer of ``stack``: the uniform spec with each layer's overrides."""
    base = uniform_spec(config)
    return [override(base, changes) if changes else base for _, changes in overrides(config, stack)]


def shape_problems(config: Any) -> list[str]:
    """What is wrong with the form of ``config.layers`` (its keys and lengths; the members are checked by the
    config as every member is)."""
    layers = config.layers
    if layers is None:
        return []
    total = sum(n for _, n in stack_sizes(config) if isinstance(n, int))
    if isinstance(layers, Mapping):
        unknown = sorted(set(layers) - {"pattern", "types"})
        problems = [
            f"layers: unknown key '{k}'{did_you_mean(k, ['pattern', 'types'])}; a pattern form has "
            "'pattern' (a list of layer type names) and 'types' (their overrides)"
            for k in unknown
        ]
        pattern, types = layers.get("pattern"), layers.get("types") or {}
        if not isinstance(types, Mapping):
            return [*problems, f"layers.types must map type names to overrides, got {types!r}"]
        if (
            not isinstance(pattern, Sequence)
            or isinstance(pattern, str)
            or not pattern
            or not all(isinstance(p, str) for p in pattern)
        ):
            return [
                *problems,
                f"layers.pattern must be a non-empty list of layer type names, got {pattern!r}; "
                "e.g. pattern: [local, local, global]",
            ]
        for name in dict.fromkeys(pattern):
            if name not in types:
                problems.append(
                    f"layers.pattern names '{name}', which layers.types does not define"
                    f"{did_you_mean(name, types)}; types: {', '.join(map(str, types)) or 'none'}"
                )
        problems.extend(
            f"layers.types.{name} is never used: layers.pattern is {list(pattern)}"
            for name in types
            if name not in pattern
        )
        for name, changes in types.items():
            problems.extend(_change_problems(f"layers.types.{name}", changes))
        return problems
    if isinstance(layers, Sequence) and not isinstance(layers, str):
        problems = []
        # a config made without a kind takes its builder's later (ModelConfig.coerce), which checks the length
        if len(layers) != total and "kind" not in getattr(config, "_defaulted", ()):
            which = " + ".join(f"{n} {name}" for name, n in stack_sizes(config))
            problems.append(
                f"layers lists {len(layers)} layers but the model has {total} ({which}); give one mapping per "
                "layer, or a pattern: {pattern: [...], types: {...}}"
            )
        for i, changes in enumerate(layers):
            problems.extend(_change_problems(f"layers[{i}]", changes))
        return problems
    return [
        f"layers must be a pattern ({{pattern: [...], types: {{...}}}}) or a list of one mapping per layer, "
        f"got {layers!r}"
    ]


def _change_problems(where: str, changes: Any) -> list[str]:
    if changes is None:
        return []
    if not isinstance(changes, Mapping):
        return [f"{where} must be a mapping of overrides such as {{ffn: swiglu}}, got {changes!r}"]
    problems = [
        f"{where}: '{key}' cannot differ between layers{did_you_mean(key, LAYER_KEYS)}; a layer may set "
        f"{', '.join(LAYER_KEYS)}"
        for key in changes
        if key not in LAYER_KEYS
    ]
    d_ff = changes.get("d_ff")
    if "d_ff" in changes and (isinstance(d_ff, bool) or not isinstance(d_ff, int) or d_ff <= 0):
        problems.append(f"{where}.d_ff={d_ff!r} must be a positive integer")
    for key in ("attention", "norm", "placement", "ffn"):
        if key in changes and changes[key] is None:
            problems.append(f"{where}.{key}: null is no member; name one (e.g. {key}: {{name: ...}})")
    return problems


def distinct_layers(config: Any) -> list[tuple[str, LayerSpec]]:
    """Each layer spec ``layers`` writes that differs from the uniform one, once, with where it is written (for
    checks: a pattern's types, or a list's entries)."""
    if config.layers is None or shape_problems(config):
        return []
    layers = config.layers
    if isinstance(layers, Mapping):
        written = [(f"layers.types.{name}", changes) for name, changes in (layers.get("types") or {}).items()]
    else:
        written = [(f"layers[{i}]", changes) for i, changes in enumerate(layers)]
    base = uniform_spec(config)
    specs = [(where, override(base, changes)) for where, changes in written if changes]
    return [(where, spec) for where, spec in specs if spec != base]
