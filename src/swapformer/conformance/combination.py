"""What the conformance suite runs: the combinations of registered members (:func:`combinations`), each a
:class:`Combination` of a model kind and one member per component family."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swapformer.compat import capabilities, combination_problem
from swapformer.components.ffn.moe import MixtureOfExperts
from swapformer.components.positional.base import PositionalEncoding
from swapformer.config import ModelConfig
from swapformer.registry import FAMILIES, KINDS, kind, load_plugins

COMPONENTS = ("attention", "positional", "norm", "placement", "ffn")

HEAD_LAYOUTS = {"mha": 4, "gqa": 2, "mqa": 1}
"""Key/value heads for the 4 query heads of :data:`TINY`: multi-head, grouped-query, multi-query."""

OPTIONS: dict[tuple[str, str], dict[str, Any]] = {("attention", "sliding_window"): {"window": 3}}
"""Options for members whose defaults would make a check vacuous at the suite's lengths (a window of 256 over
7 tokens never cuts)."""

VARIANTS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("attention", "sliding_window"): [
        {"window": 2},
        {"window": 6},
        {"window": 3, "softcap": 2.0},
        {"window": 3, "sinks": True},
    ],
    ("attention", "math"): [{"softcap": 2.0}, {"sinks": True}],
    ("attention", "sdpa"): [{"sinks": True}],
    ("attention", "flex"): [{"window": 2}, {"window": 3, "softcap": 2.0}],
    ("attention", "mla"): [
        {"q_lora_rank": 8, "rope_interleave": True, "mscale": 1.5},
        {"absorb": False},
        {"kernel": "math"},
    ],
    ("positional", "rope"): [
        {"base": 500000.0},
        {"scaling": "linear", "factor": 4.0},
        {"scaling": "ntk", "factor": 4.0},
        {"scaling": "llama3", "factor": 8.0, "original_max_seq_len": 8},
        {
            "scaling": "yarn",
            "factor": 4.0,
            "original_max_seq_len": 8,
            "beta_fast": 4.0,
        },  # E = 4: one kept, one not
    ],
    ("positional", "t5_relative"): [{"num_buckets": 8, "max_distance": 6}],
    ("positional", "sinusoidal"): [{"layout": "halves"}],
    ("positional", "learned"): [{"offset": 2}],
    ("norm", "layernorm"): [{"bias": False}],
    ("norm", "rmsnorm"): [{"unit_offset": True}],
    ("ffn", "gelu"): [{"approximate": "tanh"}],
    ("ffn", "geglu"): [{"approximate": "tanh"}],
    ("ffn", "moe"): [
        {"router": "sigmoid", "groups": 4, "topk_groups": 2, "routed_scaling": 2.5, "shared_experts": 1},
        {"router": "topk_softmax", "expert": "clamped_swiglu", "expert_bias": True},
    ],
}
"""Non-default options run as extra combinations (the kind's defaults with one member replaced by a variant):
rope scalings (YaRN's with its attention factor on q and k), T5 buckets small enough that the suite's lengths reach past every boundary, window sizes, score
caps small enough to bind (Gemma 2's), attention sinks on the full and the sliding kernels (GPT-OSS's), latent attention with a low-rank query path,
without absorption and over the math kernel, Gemma's (1 + w) RMSNorm, the DeepSeek-V3 and GPT-OSS routers of ``moe``."""


@dataclass(frozen=True)
class OptionVariant:
    """Config options that are no member of a family (q/k norm, logit soft-capping, layer patterns, ...), run
    as one more combination of each kind they fit: the kind's defaults, with ``members`` in place of those
    defaults (a member the run fixes wins), built with ``options``.

    Args:
        options: :class:`ModelConfig` fields and values (no member family's key: those are ``members``).
        members: member names the options are meant for (OLMo 2's q/k norm sits in ``res_post`` layers).
        kinds: the model kinds it runs in; None = every kind.
    """

    options: Mapping[str, Any]
    members: Mapping[str, str] = field(default_factory=dict)
    kinds: tuple[str, ...] | None = None


ROTARY = {"positional": "rope"}  # q/k norm and NoPE layers act beside the rotation
_LOCAL = {
    "attention": {"name": "sliding_window", "window": 3},
    "positional": {"name": "rope", "base": 10000.0},
}
OPTION_VARIANTS: dict[str, OptionVariant] = {
    "qk_norm": OptionVariant({"qk_norm": "rmsnorm"}, ROTARY),
    "qk_norm_projection": OptionVariant(
        {"qk_norm": "rmsnorm", "qk_norm_scope": "projection"},
        {**ROTARY, "norm": "rmsnorm", "placement": "res_post"},
    ),
    "gemma": OptionVariant(
        {
            "num_layers": 3,  # global, local, global: the pattern's period does not divide the layers
            "head_dim": 8,  # not D / H
            "qk_norm": {"name": "rmsnorm", "unit_offset": True},
            "attention_scale": 12.0**-0.5,  # query_pre_attn_scalar 12, not E
            "scale_embeddings": True,
            "logit_softcap": 2.0,  # small enough to bind
            "layers": {
                # the kernel checks hold each type's kernel to its own member's reference
                "pattern": ["global", "local"],
                "types": {"local": _LOCAL, "global": {"positional": {"name": "rope", "base": 1000000.0}}},
            },
        },
        {**ROTARY, "norm": "rmsnorm", "placement": "sandwich", "ffn": "geglu"},
        kinds=("causal_lm",),
    ),
    "nope_every_3rd": OptionVariant(
        {
            "num_layers": 3,
            "layers": {
                "pattern": ["rope", "rope", "nope"],
                "types": {"rope": {}, "nope": {"positional": "none"}},
            },
        },
        ROTARY,
        kinds=("causal_lm", "seq2seq"),
    ),
    "bert_head": OptionVariant(
        {"token_types": 2, "lm_head_transform": "gelu", "lm_head_bias": True}, kinds=("masked_lm",)
    ),
    "modernbert": OptionVariant(
        {
            "num_layers": 3,
            "bias": False,
            "embedding_norm": True,
            "first_attention_norm": False,
            "lm_head_transform": "gelu",
            "layers": {"pattern": ["global", "local", "local"], "types": {"global": {}, "local": _LOCAL}},
        },
        {"placement": "pre", "ffn": "geglu"},
        kinds=("masked_lm",),
    ),
}
"""The config options that are not members, each run once per kind it fits around the kind's defaults (in quick
and full runs alike): q/k norm per head (Qwen3) and over the projection in ``res_post`` layers (OLMo 2); Gemma's
layer (sliding and full layers with a rope base each, sandwich norms, a (1 + w) q/k norm, its own head width
and query scale, scaled embeddings, capped logits); NoPE on every third layer (SmolLM3); BERT's token types and
MLM head; ModernBERT's embedding norm without the first attention norm, global every third layer, no biases.
Members' own options (score caps, the (1 + w) RMSNorm, GELU-tanh) are :data:`VARIANTS`."""
REQUIRES = {
    "padding": "padding",
    "fully_padded_rows": "padding",
    "cached_decoding": "kv_cache",
    "documents": "document_mask",
}
"""The capability each check tests: a combination with a member that declares it False skips the check."""

BACKWARD_CHECKS = ("fully_padded_rows", "gradient_flow", "train")
"""The checks that take gradients: the suite runs on CPU, so a kernel declaring ``cpu_backward=False`` (``flex``)
skips them, saying so."""


@dataclass(frozen=True)
class Combination:
    """One model kind and one member name per component family."""

    kind: str
    attention: str
    positional: str
    norm: str
    placement: str
    ffn: str
    heads: str = "gqa"
    variant: tuple[str, tuple[tuple[str, Any], ...]] | None = None
    """``(family, ((option, value), ...))``: non-default options of one member (see :data:`VARIANTS`)."""
    mixed: bool = False
    """A patterned model: the first layer is the combination, the second the kind's defaults (a NoPE layer
    where the combination's positional member acts inside attention), so the members meet layers unlike them."""
    option: str | None = None
    """The name of an :data:`OPTION_VARIANTS` entry whose config options the model is built with."""

    @property
    def id(self) -> str:
        """``causal_lm-sdpa-rope-layernorm-pre-swiglu``, then ``-mha`` / ``-mqa`` and ``[rope factor=4.0]``."""
        text = "-".join([self.kind, *(getattr(self, f) for f in COMPONENTS)])
        text += "" if self.heads == "gqa" else f"-{self.heads}"
        text += "-mixed" if self.mixed else ""
        text += f"+{self.option}" if self.option is not None else ""
        if self.variant is not None:
            family, options = self.variant
            text += f"[{getattr(self, family)} {' '.join(f'{k}={v}' for k, v in options)}]"
        return text

    def components(self) -> dict[str, Any]:
        """Component specs for :class:`ModelConfig` (names, with :data:`OPTIONS` and the variant's options)."""
        specs: dict[str, Any] = {}
        for family in COMPONENTS:
            name = getattr(self, family)
            options = dict(OPTIONS.get((family, name), {}))
            if self.variant is not None and self.variant[0] == family:
                options.update(self.variant[1])
            specs[family] = {"name": name, **options} if options else name
        if self.mixed:
            # each stack (both of a seq2seq model) alternates the two
            specs["layers"] = {
                "pattern": ["tested", "default"],
                "types": {"tested": {}, "default": self._default_layer()},
            }
        return specs

    def options(self) -> dict[str, Any]:
        """The :class:`ModelConfig` fields of the combination's option variant (none without one)."""
        return {} if self.option is None else dict(OPTION_VARIANTS[self.option].options)

    def _default_layer(self) -> dict[str, Any]:
        defaults = default_members(self.kind)
        layer = {f: defaults[f] for f in COMPONENTS if f != "positional" and defaults[f] != getattr(self, f)}
        factory = FAMILIES["positional"].get(self.positional).factory
        if getattr(factory, "embed", None) is PositionalEncoding.embed:  # it acts inside attention: NoPE here
            layer["positional"] = "none"
        return layer

    def refusal(self) -> str | None:
        """The compatibility matrix's reason for refusing this combination, or None."""
        return combination_problem(attention=self.attention, positional=self.positional)

    def unsupported(self, check: str) -> str | None:
        """Why ``check`` does not apply: the kind does not decode (``cached_decoding``), or a member declares the
        :class:`~swapformer.registry.Capabilities` it tests unsupported (``kv_cache=False``), or None."""
        if check == "cached_decoding" and not kind(self.kind).generates:
            return f"kind '{self.kind}' does not decode left to right"
        if check == "documents" and kind(self.kind).source:
            return f"kind '{self.kind}' reads a source: its pairs are not packed"
        if check == "mixture":
            factory = FAMILIES["ffn"].get(self.ffn).factory
            if not (isinstance(factory, type) and issubclass(factory, MixtureOfExperts)):
                return f"ffn '{self.ffn}' is not a mixture of experts"
        if check in BACKWARD_CHECKS and not capabilities("attention", self.attention).cpu_backward:
            return (
                f"attention '{self.attention}' declares cpu_backward=False (torch has no backward for it on CPU, "
                "where the suite runs); its forward is checked"
            )
        capability = REQUIRES.get(check)
        for family in COMPONENTS if capability else ():
            if not getattr(capabilities(family, getattr(self, family)), capability):
                return f"{family} '{getattr(self, family)}' declares {capability}=False"
        return None


def distinct_members(family: str) -> list[str]:
    """Member names of ``family``, sorted, each factory once (an alias keeps the alphabetically first name)."""
    first: dict[Any, str] = {}
    for name in FAMILIES[family].available():
        first.setdefault(FAMILIES[family].get(name).factory, name)
    return sorted(first.values())


def default_members(kind_name: str = "causal_lm") -> dict[str, str]:
    """The :class:`ModelConfig` default of each family for ``kind_name`` (the base of ``quick`` combinations)."""
    defaults = ModelConfig.defaults(kind_name)
    return {family: str(defaults[family]) for family in COMPONENTS}


def model_kinds() -> tuple[str, ...]:
    """Every registered model kind (``causal_lm``, ``seq2seq``, ``masked_lm``, and any a plug-in adds)."""
    load_plugins()
    return tuple(KINDS)


def combinations(
    *,
    kinds: Sequence[str] | None = None,
    fixed: Mapping[str, str] | None = None,
    quick: bool = False,
    pairs: bool = False,
) -> list[Combination]:
    """Every combination of the registered members, read from the registries now (plug-ins included).

    Args:
        kinds: model kinds (default: every registered kind, :func:`model_kinds`).
        fixed: family -> member name held in every combination (an alias is kept as given).
        quick: instead of the full product, the :class:`ModelConfig` defaults with one family varied at a time,
            so every member of every family appears at least once.
        pairs: instead of the full product, a covering of it (:func:`pair_covering`): kind x kernel x positional
            x head layout in full, and every two members of any two families together in at least one
            combination the matrix accepts. A few hundred combinations where the product has thousands.
    """
    fixed = dict(fixed or {})
    choices = {f: [fixed[f]] if f in fixed else distinct_members(f) for f in COMPONENTS}
    layouts = list(HEAD_LAYOUTS)
    combos = []
    for kind_name in model_kinds() if kinds is None else kinds:
        base = {**default_members(kind_name), **fixed}
        base_names = tuple(base[f] for f in COMPONENTS)
        singles = [base_names]  # the defaults with one family varied at a time: every member once
        for i, family in enumerate(COMPONENTS):
            singles += [
                tuple(m if j == i else base[f] for j, f in enumerate(COMPONENTS)) for m in choices[family]
            ]
        singles = list(dict.fromkeys(singles))
        if quick:
            combos += [Combination(kind_name, *names) for names in singles]
            # the other head layouts once each, around the defaults
            combos += [Combination(kind_name, *base_names, heads=h) for h in layouts if h != "gqa"]
        elif pairs:
            combos += pair_covering(kind_name, choices, layouts)
        else:
            picks = itertools.product(*(choices[f] for f in COMPONENTS))
            # head layouts in turn: every kernel x positional pair of every kind meets all three
            combos += [
                Combination(kind_name, *names, heads=layouts[i % len(layouts)])
                for i, names in enumerate(picks)
            ]
        # every member once in a patterned model, in both modes
        combos += [Combination(kind_name, *names, mixed=True) for names in singles]
        for i, family in enumerate(COMPONENTS):
            for member in choices[family]:
                names = tuple(member if j == i else base[f] for j, f in enumerate(COMPONENTS))
                for options in VARIANTS.get((family, member), []):
                    variant = (family, tuple(options.items()))
                    combos.append(Combination(kind_name, *names, variant=variant))
        for name, option in OPTION_VARIANTS.items():
            if option.kinds is None or kind_name in option.kinds:
                members = {**base, **option.members, **fixed}
                combos.append(Combination(kind_name, *(members[f] for f in COMPONENTS), option=name))
    return combos


def _pairs(combination: Combination) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    members = [(f, getattr(combination, f)) for f in COMPONENTS]
    return set(itertools.combinations(members, 2))


def pair_covering(
    kind_name: str, choices: Mapping[str, Sequence[str]], layouts: Sequence[str]
) -> list[Combination]:
    """A covering of one kind's full product: fewer combinations, every interaction of two members kept.

    Kernel x positional x head layout runs in full (the kernels and the positional members meet inside the
    attention scores, where most conformance failures live); norm, placement and ffn are chosen for each of those
    rows, greedily and deterministically, so that every two members of any two families meet in at least one
    combination the matrix accepts. Rows are added from the full product while a pair is still missing; a pair
    that only refused combinations contain (the matrix's own refusals) cannot be covered and is not sought.
    """
    rest = ("norm", "placement", "ffn")
    fills = list(itertools.product(*(choices[f] for f in rest)))
    product = [
        Combination(kind_name, *names) for names in itertools.product(*(choices[f] for f in COMPONENTS))
    ]
    wanted = set().union(*(_pairs(c) for c in product if c.refusal() is None))
    covered: set = set()
    rows = []
    for i, (attention, positional) in enumerate(
        itertools.product(choices["attention"], choices["positional"])
    ):
        for j, heads in enumerate(layouts):
            candidates = [Combination(kind_name, attention, positional, *fill, heads=heads) for fill in fills]
            accepted = [c for c in candidates if c.refusal() is None]
            if not accepted:  # refused whatever the rest is: one row to check that the refusal holds
                rows.append(candidates[(i + j) % len(candidates)])
                continue
            # the first of those that cover the most pairs not yet covered: deterministic
            best = max(accepted, key=lambda c: len(_pairs(c) - covered))
            rows.append(best)
            covered |= _pairs(best)
    while missing := wanted - covered:
        best = max((c for c in product if c.refusal() is None), key=lambda c: len(_pairs(c) & missing))
        rows.append(best)
        covered |= _pairs(best)
    return rows
