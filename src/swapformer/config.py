"""ModelConfig: a model as names and numbers, validated at construction with every problem reported at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swapformer import layer_specs
from swapformer.compat import combination_problem
from swapformer.compat import problems as compatibility_problems
from swapformer.errors import ConfigError, did_you_mean
from swapformer.layer_specs import COMPONENT_FAMILIES
from swapformer.registry import FAMILIES, ComponentSpec, kind, split_spec

COMPONENT_KEYS = tuple(COMPONENT_FAMILIES)
LM_HEAD_ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
"""The activations of ``lm_head_transform``: exact GELU, GELU's tanh approximation, ReLU, SiLU (swish)."""
MASKED_ONLY = ("token_types", "lm_head_transform")
"""Fields only a masked LM builds (the other kinds would drop them silently)."""


@dataclass
class ModelConfig:
    """Everything needed to build a model: component names (or ``{name: ..., **options}``) and sizes.

    Configs hold names and numbers, never classes, so they round-trip through YAML and checkpoints.
    ``ModelConfig(**d)`` and :meth:`from_dict` validate; a ``ConfigError`` lists every problem found.

    Args:
        vocab_size: V, the (target) vocabulary size.
        kind: the model kind (``causal_lm``, ``seq2seq``, ``masked_lm``); None = ``causal_lm``, or the kind of the
            builder it is given to. It chooses the builder and the defaults of the fields left at None
            (``placement``, ``ffn``, ``positional``): see :meth:`defaults`.
        d_model: D, the model dimension.
        num_heads: H, attention heads.
        num_kv_heads: key/value heads for GQA (1 = MQA); None = num_heads (MHA).
        head_dim: E, the width of each head; None = D / H. Set, it frees E from D (T5's ``d_kv``, Gemma):
            the query projection is D -> H E and W_o is H E -> D.
        num_layers: layers of a causal LM; the default for each side of a seq2seq model.
        num_encoder_layers, num_decoder_layers: seq2seq sides; None = num_layers.
        d_ff: feed-forward hidden size.
        max_seq_len: longest sequence; the size of a ``learned`` positional table.
        dropout: on embeddings, attention weights, FFN hidden states and residual branches; in [0, 1).
        attention: attention kernel (``math``, ``sdpa``, ``sliding_window``, ``linear``, ...).
        positional: positional encoding; None = the kind's (``sinusoidal``, ``learned``, ``rope``, ``none``, ``alibi``, ``t5_relative``, ...).
            Some kernel and positional pairs cannot work together (see :mod:`swapformer.compat`); they are problems.
        qk_norm: a norm (any ``norm`` member) on each query and key head, over E, before the positional
            rotation (Qwen3, Gemma 3); None = none.
        qk_norm_scope: what the q/k norm normalizes: ``head``, each head over E (Qwen3, Gemma 3), or
            ``projection``, the whole query (H E) and key (Hkv E) projection before the heads split (OLMo 2).
        norm: normalization (``layernorm``, ``rmsnorm``, ``scalenorm``).
        placement: where norms sit (``post`` as in the paper, ``pre``, ``sandwich``, ``deepnorm``); None = the kind's.
        ffn: feed-forward sublayer (``relu``, ``gelu``, ``relu2``, ``swiglu``, ``geglu``); None = the kind's.
        tie_embeddings: share the (target) input embedding with the output projection.
        scale_embeddings: multiply embeddings by sqrt(D), as in the paper.
        final_norm: norm after each stack; None = what the placement needs (pre: yes, post: no).
        bias: biases in the attention projections (q, k, v and W_o).
        qkv_bias: biases in the q, k and v projections only; None = ``bias`` (Qwen2: true with bias false).
        attention_scale: the factor on q . k before the softmax; None = 1 / sqrt(E), the paper's. T5 folds
            the scale into its weights and uses 1.0.
        embedding_norm: a norm (of the ``norm`` kind) on the embeddings after positions are added (BART).
        lm_head_bias: a bias in the final linear layer to the vocabulary (BART's and Marian's
            ``final_logits_bias``, BERT's MLM bias).
        token_types: rows of a token-type (segment) embedding table added to a masked LM's token embeddings
            (BERT's ``type_vocab_size``: sentence A and B); the model adds row 0 unless given
            ``token_type_ids``. 0 = no table.
        lm_head_transform: a dense layer D -> D, this activation and a norm (of the ``norm`` kind) between a
            masked LM's last layer and its final linear layer (BERT's and RoBERTa's MLM head); the activation's
            name, one of :data:`LM_HEAD_ACTIVATIONS`, or None = none. Its dense layer has a bias when ``bias``
            does (BERT, RoBERTa; ModernBERT's ``classifier_bias``).
        first_attention_norm: the first layer's norm before its self-attention; false drops it where the
            embedding norm has just normalized that input (ModernBERT: ``embedding_norm: true``, ``pre``).
        pad_token_id: padding id (used by training losses and generation), or None.
        bos_token_id: the id that starts a text; swapformer's tokenizers use 1.
        eos_token_id: the id that ends a text (generation stops there by default); swapformer's tokenizers use 2.
        decoder_start_token_id: the first target id of a seq2seq model's decoder; None = ``bos_token_id``.
        src_vocab_size: source vocabulary of a seq2seq model; None = vocab_size.
        share_embeddings: one token table for a seq2seq model's source and target (and its output layer, when
            ``tie_embeddings``), as BART, T5 and Marian share one vocabulary; needs ``src_vocab_size`` None or
            equal to ``vocab_size``. Positions and embedding norms stay one per side.
        init_std: standard deviation of the normal initialization of linear and embedding weights.
        logit_softcap: soft-cap the final logits, ``cap * tanh(logits / cap)`` (Gemma 2: 30); None = none. The
            attention scores' cap is the kernel's option (``attention: {name: math, softcap: 50}``).
        layers: layers that differ from the uniform one (:mod:`swapformer.layer_specs`): a pattern of named layer
            types repeated over the stack, ``{pattern: [local, global], types: {local: {...}, global: {...}}}``,
            or one mapping per layer; each overrides any of ``attention, positional, qk_norm, norm, placement,
            ffn, d_ff``. None = every layer is the uniform one.
    """

    vocab_size: int
    kind: str | None = None
    d_model: int = 512
    num_heads: int = 8
    num_kv_heads: int | None = None
    head_dim: int | None = None
    num_layers: int = 6
    num_encoder_layers: int | None = None
    num_decoder_layers: int | None = None
    d_ff: int = 2048
    max_seq_len: int = 512
    dropout: float = 0.1
    attention: ComponentSpec = "sdpa"
    positional: ComponentSpec | None = None
    norm: ComponentSpec = "layernorm"
    placement: ComponentSpec | None = None
    ffn: ComponentSpec | None = None
    tie_embeddings: bool = True
    scale_embeddings: bool = False
    final_norm: bool | None = None
    bias: bool = True
    qkv_bias: bool | None = None
    attention_scale: float | None = None
    embedding_norm: bool = False
    lm_head_bias: bool = False
    token_types: int = 0
    lm_head_transform: str | None = None
    first_attention_norm: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = None
    src_vocab_size: int | None = None
    share_embeddings: bool = False
    init_std: float = 0.02
    qk_norm: ComponentSpec | None = None
    qk_norm_scope: str = "head"
    logit_softcap: float | None = None
    layers: dict[str, Any] | list[dict[str, Any]] | None = None
    _checked: bool = field(default=False, init=False, repr=False, compare=False)
    _defaulted: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._defaulted = frozenset(
            key for key in ("kind", *COMPONENT_KEYS) if key != "qk_norm" and getattr(self, key) is None
        )
        if self.kind is None:
            self.kind = "causal_lm"
        try:
            defaults = kind(self.kind).defaults
        except ConfigError:
            defaults = {}  # problems() reports the unknown kind
        for key, value in defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        for key in COMPONENT_KEYS:  # YAML may hand over its own mapping types
            value = getattr(self, key)
            if isinstance(value, Mapping):
                setattr(self, key, dict(value))
        if isinstance(self.layers, Mapping | list | tuple):  # plain, for YAML and checkpoints
            self.layers = _plain(self.layers)
        problems = self.problems()
        if problems:
            raise ConfigError(problems, title="invalid ModelConfig")
        self._checked = True

    @property
    def resolved_head_dim(self) -> int:
        """E: ``head_dim``, or D / H when it is None."""
        return self.d_model // self.num_heads if self.head_dim is None else self.head_dim

    @property
    def start_token_id(self) -> int | None:
        """The decoder's first id: ``decoder_start_token_id``, or ``bos_token_id`` when it is None."""
        return self.bos_token_id if self.decoder_start_token_id is None else self.decoder_start_token_id

    @property
    def kv_heads(self) -> int:
        """Key/value heads, resolving None to num_heads."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def encoder_layers(self) -> int:
        """Layers of a seq2seq encoder: ``num_encoder_layers``, or ``num_layers`` when it is None."""
        return self.num_encoder_layers or self.num_layers

    @property
    def decoder_layers(self) -> int:
        """Layers of a seq2seq decoder: ``num_decoder_layers``, or ``num_layers`` when it is None."""
        return self.num_decoder_layers or self.num_layers

    def problems(self) -> list[str]:
        """Every problem with this config, one sentence each (empty when valid)."""
        problems: list[str] = []
        try:
            kind(self.kind)
        except ConfigError as err:
            problems.append(f"kind: {err}")

        def positive_int(key: str, optional: bool = False) -> bool:
            value = getattr(self, key)
            if optional and value is None:
                return True
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{key}={value!r} must be a positive integer")
                return False
            return True

        for key in ("vocab_size", "d_model", "num_heads", "num_layers", "d_ff", "max_seq_len"):
            positive_int(key)
        for key in ("num_kv_heads", "head_dim", "num_encoder_layers", "num_decoder_layers", "src_vocab_size"):
            positive_int(key, optional=True)
        d_ok = isinstance(self.d_model, int) and self.d_model > 0
        h_ok = isinstance(self.num_heads, int) and not isinstance(self.num_heads, bool) and self.num_heads > 0
        if d_ok and h_ok and self.head_dim is None and self.d_model % self.num_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]
            problems.append(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
                f"pick num_heads from {divisors}, change d_model, or set head_dim"
            )
        kv = self.num_kv_heads
        if h_ok and isinstance(kv, int) and not isinstance(kv, bool) and kv > 0 and self.num_heads % kv:
            problems.append(
                f"num_heads={self.num_heads} is not divisible by num_kv_heads={kv}; "
                "each key/value head must serve a whole group of query heads"
            )
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, int | float)
            or not 0 <= self.dropout < 1
        ):
            problems.append(f"dropout={self.dropout!r} must be a number in [0, 1)")
        if (
            isinstance(self.init_std, bool)
            or not isinstance(self.init_std, int | float)
            or self.init_std <= 0
        ):
            problems.append(f"init_std={self.init_std!r} must be a positive number")
        for key in (
            "tie_embeddings",
            "scale_embeddings",
            "bias",
            "embedding_norm",
            "lm_head_bias",
            "share_embeddings",
            "first_attention_norm",
        ):
            if not isinstance(getattr(self, key), bool):
                problems.append(f"{key}={getattr(self, key)!r} must be true or false")
        # not checked against the kind: a config made without one takes its builder's kind later (coerce)
        if self.share_embeddings is True and self.src_vocab_size not in (None, self.vocab_size):
            problems.append(
                f"share_embeddings=true needs one vocabulary, but src_vocab_size={self.src_vocab_size} and "
                f"vocab_size={self.vocab_size}; drop src_vocab_size or set share_embeddings: false"
            )
        for key, default in (("final_norm", "placement's default"), ("qkv_bias", "the value of bias")):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), bool):
                problems.append(f"{key}={getattr(self, key)!r} must be true, false or null ({default})")
        scale = self.attention_scale
        if scale is not None and (
            isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0
        ):
            problems.append(
                f"attention_scale={scale!r} must be a positive number or null (1 / sqrt(head_dim))"
            )
        if self.qk_norm_scope not in ("head", "projection"):
            problems.append(
                f"qk_norm_scope={self.qk_norm_scope!r} must be 'head' (each head over E) or 'projection' (all of "
                "q and of k)"
            )
        problems.extend(self._masked_problems())
        cap = self.logit_softcap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int | float) or not cap > 0):
            problems.append(
                f"logit_softcap={cap!r} must be a number > 0 (Gemma 2 uses 30.0) or null (no cap)"
            )
        for key in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            token = getattr(self, key)
            if token is None:
                continue
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                problems.append(f"{key}={token!r} must be a non-negative integer or null")
            elif isinstance(self.vocab_size, int) and self.vocab_size > 0 and token >= self.vocab_size:
                problems.append(f"{key}={token} is outside the vocabulary (vocab_size={self.vocab_size})")
        component_problems = [
            p
            for key in COMPONENT_KEYS
            if getattr(self, key) is not None  # None: the kind is unknown, which is reported above
            for p in FAMILIES[COMPONENT_FAMILIES[key]].check(getattr(self, key), key=key)
        ]
        problems.extend(component_problems)
        if not component_problems:  # pairs of valid members that cannot work together (swapformer.compat)
            problems.extend(compatibility_problems(self))
            problems.extend(self._layer_problems())
        return problems

    def _masked_problems(self) -> list[str]:
        problems = []
        types = self.token_types
        if isinstance(types, bool) or not isinstance(types, int) or types < 0:
            problems.append(
                f"token_types={types!r} must be a non-negative integer (BERT uses 2; 0 = no table)"
            )
        head = self.lm_head_transform
        if head is not None and head not in LM_HEAD_ACTIVATIONS:
            hint = did_you_mean(str(head), LM_HEAD_ACTIVATIONS)
            problems.append(
                f"lm_head_transform={head!r} is not a head activation{hint}; use one of "
                f"{', '.join(LM_HEAD_ACTIVATIONS)}, or null (no transform)"
            )
        # a config made without a kind takes its builder's later (coerce): the builders check that one
        problem = self.masked_only_problem()
        if problem is not None and "kind" not in self._defaulted:
            problems.append(problem)
        return problems

    def masked_only_problem(self) -> str | None:
        """Why this config's kind cannot have its :data:`MASKED_ONLY` fields set, or None."""
        used = [key for key in MASKED_ONLY if getattr(self, key) not in (0, None)]
        if not used or self.kind == "masked_lm":
            return None
        return f"{used[0]} is an option of masked_lm models, not {self.kind}; set kind: masked_lm or drop it"

    def _layer_problems(self) -> list[str]:
        """Problems of ``layers``: its form, then each layer spec's members and pairs, named by where they come
        from (``layers.types.local.attention: ...``)."""
        if self.layers is None or not isinstance(self.num_layers, int):
            return []
        problems = layer_specs.shape_problems(self)
        if problems:
            return problems
        try:
            specs = layer_specs.distinct_layers(self)
        except ConfigError as err:
            return [f"layers: {p}" for p in err.problems]
        for where, spec in specs:
            found = [
                p
                for key in COMPONENT_KEYS
                if getattr(spec, key) is not None
                for p in FAMILIES[COMPONENT_FAMILIES[key]].check(getattr(spec, key), key=f"{where}.{key}")
            ]
            if not found:
                problem = combination_problem(attention=spec.attention, positional=spec.positional)
                found = [] if problem is None else [f"{where}: attention + positional: {problem}"]
            problems.extend(found)
        return problems

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain mapping (as read from YAML); unknown keys are reported with the closest match.

        Raises:
            ConfigError: unknown keys, missing ``vocab_size``, and every validation problem, at once.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a model config is a mapping of keys to values, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        problems = [
            f"unknown key '{key}'{did_you_mean(key, names)}; valid keys: {', '.join(names)}"
            for key in data
            if key not in names
        ]
        if "vocab_size" not in data:
            problems.append("vocab_size is required (the data module provides it in recipes)")
        known = {k: v for k, v in data.items() if k in names}
        if problems:
            known.setdefault("vocab_size", 2**31)  # a stand-in that puts no token id outside the vocabulary
            try:
                cls(**known)
            except ConfigError as err:
                problems.extend(err.problems)
            raise ConfigError(problems, title="invalid ModelConfig")
        return cls(**known)

    @classmethod
    def coerce(cls, config: ModelConfig | Mapping[str, Any], *, kind: str | None = None) -> ModelConfig:
        """A ModelConfig from a ModelConfig or a mapping; one made without a ``kind`` gets ``kind`` and its
        defaults.

        Raises:
            ConfigError: the config is of another kind than ``kind``, or invalid.
        """
        config = config if isinstance(config, ModelConfig) else cls.from_dict(config)
        if kind is None or (config.kind == kind and "kind" not in config._defaulted):
            return config
        if "kind" not in config._defaulted:
            raise ConfigError(
                f"this builder makes {kind} models but the config's kind is '{config.kind}'; set kind: {kind} "
                "in the config, or build it with swapformer.build(config)"
            )
        # a config made without a kind takes the builder's, and that kind's defaults
        return cls(**{k: v for k, v in config.to_dict().items() if k not in config._defaulted}, kind=kind)

    @classmethod
    def defaults(cls, kind_name: str = "causal_lm") -> dict[str, Any]:
        """Every field's default for a model of kind ``kind_name`` (``vocab_size`` has none)."""
        values = {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.name != "vocab_size"}
        return {**values, **kind(kind_name).defaults, "kind": kind_name}

    def to_dict(self) -> dict[str, Any]:
        """Plain names and numbers (for YAML, ``save_hyperparameters`` and ``torch.load(weights_only=True)``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    def component_name(self, key: str) -> str:
        """The registered name of component ``key`` (``"rope"`` for ``{"name": "rope", "base": 1e4}``)."""
        return split_spec(getattr(self, key), where=key)[0]


MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.init)
"""The model's fields, as a recipe's ``model.init_args`` and a checkpoint's hyperparameters name them."""


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
