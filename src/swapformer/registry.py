"""One small generic registry class, and one instance of it per thing a name picks.

A component family (``attention``, ``positional``, ``norm``, ``placement``, ``ffn``) maps names to factories: a
class or function with keyword arguments. ``build("name")`` or ``build({"name": "name", **options})`` makes a
member. The same class holds the model kinds (:data:`KINDS`, here), the Hugging Face families
(``swapformer.interop.ARCHITECTURES``), the tokenizers (``swapformer.data.TOKENIZER_KINDS``), the learning-rate
schedules (``swapformer.training.SCHEDULES``) and the task module of each kind (``swapformer.tasks.TASK_MODULES``):
every one refuses a duplicate name and answers an unknown one with the choices and the closest.

Third-party packages add to any of them through the entry-point group ``swapformer.components``. Each entry point
names a module (importing it registers its entries with the decorators below) or a callable taking no
arguments that registers them. Plug-ins are loaded lazily, on the first lookup in any registry.

This module imports nothing it registers (as timm's registry): the package ``swapformer`` imports the members and
the model kinds, so they are registered before anyone can look a name up.

Example:
    >>> from swapformer.registry import family
    >>> family("norm").build({"name": "layernorm", "eps": 1e-6}, d_model=8)
    LayerNorm((8,), eps=1e-06, elementwise_affine=True, bias=True)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from swapformer.errors import ConfigError, did_you_mean

ENTRY_POINT_GROUP = "swapformer.components"

ComponentSpec = str | Mapping[str, Any]
"""A component as written in a config: ``"rope"`` or ``{"name": "rope", "base": 500000.0}``."""


@dataclass(frozen=True)
class Member:
    """A registered entry: its name, what the name stands for, a one-line description and the package that added it.

    ``factory`` is a class or function making the member in the component families, schedules and tokenizers; in
    other registries it is the entry itself (a :class:`Kind`, a Hugging Face family, a task module class).
    """

    name: str
    factory: Any
    description: str
    family: str
    source: str = "swapformer"

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """Keyword options of the factory (those a config mapping may set)."""
        params = _parameters(self.factory)
        return {
            n: p
            for n, p in params.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
        }

    @property
    def accepts_any(self) -> bool:
        params = _parameters(self.factory).values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _parameters(factory: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    # A class that inherits nn.Module's (or object's) __init__ takes no options, whatever *args/**kwargs say.
    if inspect.isclass(factory) and not any(
        "__init__" in vars(c) for c in factory.__mro__[:-1] if c.__module__.split(".")[0] != "torch"
    ):
        return {}
    return inspect.signature(factory).parameters


@dataclass(frozen=True)
class Capabilities:
    """What a member supports; the defaults describe a member that works everywhere.

    Args:
        kv_cache: gives the same outputs with a KV cache as without (cached decoding).
        padding: honours key-padding masks (variable-length batches).
        torch_export: traces with ``torch.export`` (static shapes, no padding mask).
        adds_score_bias: positional only: its ``bias`` hook returns a float score bias.
        accepts_score_bias: kernels only: a float ``attn_mask`` is added to the scores.
        self_attention_only: kernels only: meaningless for cross-attention.
        cross_attention: kernels only: the kernel cross-attention uses instead (with ``self_attention_only``).
        exact_softmax: kernels only: computes exact softmax attention, so ``swapformer check`` holds it to the
            ``math`` kernel (to 1e-5, with masks, score biases and every head layout).
        soft_cap: kernels only: takes a ``softcap`` option, ``cap * tanh(score / cap)`` (Gemma 2); a kernel
            without it refuses the option at config time.
        layer: attention only: the member is a whole attention layer (its own projections around a kernel,
            ``mla``), which the builders give the layer's sizes and a rotating positional member of its width
            instead of wrapping it in :class:`~swapformer.nn.MultiHeadAttention`.
        sinks: kernels only: takes a ``sinks`` option, a learned logit per head in the softmax's denominator
            (GPT-OSS); a kernel without it refuses the option at config time.
        document_mask: a kernel honours a block-diagonal document mask (packed rows: a boolean ``attn_mask``
            ``(N, 1, L, L)`` that keeps each query within its document); a kernel declaring False is refused when
            a model is given ``document_ids`` or trained on packed rows with ``document_mask: true``. Any other
            member declaring False (a positional member that cannot restart positions per row) skips the
            conformance suite's ``documents`` check.
        document_spans: kernels only: takes the documents of packed rows as spans
            (:class:`~swapformer.components.attention.documents.DocumentMask`) in place of the dense block-diagonal
            mask and computes no score across documents (``sdpa``: one fused call per group of documents). A model
            hands spans to its kernels when every layer's kernel declares it and no positional member adds a
            score bias; the dense mask otherwise.
        cpu_backward: kernels only: its backward runs on CPU; a kernel declaring False (``flex``: torch has no
            FlexAttention backward on CPU) is refused when a fit runs on CPU, and ``swapformer check`` (a CPU run)
            skips its gradient checks, saying why.
        attention_dropout: kernels only: applies ``dropout_p`` to the attention weights; a kernel declaring False
            is refused when a fit trains a model with ``dropout > 0``.
        relative: positional only: attention scores depend on positions only through their differences, so
            ``swapformer check`` requires them unchanged when every position shifts by the same amount.
            These two, ``soft_cap``, ``sinks`` and ``document_spans`` are not inherited: a subclass that computes
            the same declares it again.
        notes: one line on limits a user should know.
    """

    kv_cache: bool = True
    padding: bool = True
    torch_export: bool = True
    adds_score_bias: bool = False
    accepts_score_bias: bool = True
    self_attention_only: bool = False
    cross_attention: str | None = None
    exact_softmax: bool = False
    soft_cap: bool = False
    sinks: bool = False
    layer: bool = False
    document_mask: bool = True
    document_spans: bool = False
    cpu_backward: bool = True
    attention_dropout: bool = True
    relative: bool = False
    notes: str = ""


DEFAULT = Capabilities()


def capabilities(family: str, spec: ComponentSpec) -> Capabilities:
    """The :class:`Capabilities` member ``spec`` of ``family`` declares (the defaults if it declares none).

    Raises:
        ConfigError: unknown family or name.
    """
    name, _ = split_spec(spec, where=family)
    factory = FAMILIES[family].get(name).factory
    declared = getattr(factory, "capabilities", DEFAULT)
    if not isinstance(declared, Capabilities):
        return DEFAULT
    if "capabilities" not in vars(factory) and (
        declared.exact_softmax
        or declared.relative
        or declared.soft_cap
        or declared.sinks
        or declared.document_spans
    ):
        # a claim about what the forward computes is not inherited: a subclass changes what it computes
        return dataclasses.replace(
            declared, exact_softmax=False, relative=False, soft_cap=False, sinks=False, document_spans=False
        )
    return declared


class Registry:
    """Names to what they stand for: the members of a component family, the model kinds, the schedules ...

    Args:
        family: what an entry is, as messages name it (``"attention"``, ``"model kind"``, ``"schedule"``).
        description: what the registry varies, one line.
        order: how names are listed (iteration, messages): ``"name"``, sorted; or ``"registration"``, in the order
            they were added, for registries whose first entry is the default (kinds, schedules, tokenizers).
        error: the :class:`ConfigError` subclass an unknown name or a bad option raises.
    """

    def __init__(
        self,
        family: str,
        description: str = "",
        *,
        order: Literal["name", "registration"] = "name",
        error: type[ConfigError] = ConfigError,
    ) -> None:
        self.family = family
        self.description = description
        self.order = order
        self.error = error
        self._members: dict[str, Member] = {}

    def register(
        self, name: str, *, description: str | None = None, source: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a class or function under ``name``.

        Raises:
            ConfigError: if ``name`` is already registered in this family.
        """

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, factory, description=description, source=source)
            return factory

        return decorator

    def add(
        self,
        name: str,
        factory: Any,
        *,
        description: str | None = None,
        source: str | None = None,
    ) -> None:
        """Register ``factory`` under ``name`` (the non-decorator form of :meth:`register`).

        ``description`` defaults to the first line of a class's or function's docstring; ``source`` to the
        top-level package of its module.

        Raises:
            ConfigError: an empty name, or one already registered here.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.family} member needs a non-empty string name, got {name!r}")
        if name in self._members:
            existing = self._members[name]
            raise ConfigError(
                f"{self.family} member '{name}' is already registered (by {existing.source}); "
                f"choose another name for {getattr(factory, '__qualname__', factory)!s}"
            )
        if description is None:
            doc = (inspect.getdoc(factory) or "") if callable(factory) else ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        module = getattr(factory, "__module__", "") or ""
        self._members[name] = Member(
            name=name,
            factory=factory,
            description=description,
            family=self.family,
            source=source or module.split(".")[0] or "unknown",
        )

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return isinstance(name, str) and name in self._members

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(self._names())

    def __len__(self) -> int:
        load_plugins()
        return len(self._members)

    def _names(self) -> list[str]:
        return sorted(self._members) if self.order == "name" else list(self._members)

    def available(self, pattern: str = "*") -> list[str]:
        """Sorted member names matching a glob ``pattern`` (as ``timm.list_models``)."""
        load_plugins()
        return sorted(n for n in self._members if fnmatch.fnmatchcase(n, pattern))

    def unknown(self, name: object) -> str:
        """The sentence for a name not registered here: it lists the choices and suggests the closest."""
        load_plugins()
        choices = self._names()
        return f"unknown {self.family} '{name}'{did_you_mean(str(name), choices)}; available: {', '.join(choices)}"

    def get(self, name: str) -> Member:
        """The member registered as ``name``.

        Raises:
            ConfigError: unknown name (of this registry's ``error`` class); the message lists the choices and the
                closest match.
        """
        load_plugins()
        try:
            return self._members[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown(name)) from None

    def __getitem__(self, name: str) -> Any:
        """What ``name`` stands for (``KINDS["causal_lm"]`` is a :class:`Kind`).

        Raises:
            ConfigError: unknown name, as :meth:`get`.
        """
        return self.get(name).factory

    def check(self, spec: ComponentSpec, *, key: str | None = None) -> list[str]:
        """Problems with ``spec`` (unknown name, unknown options), without building anything."""
        where = key or self.family
        try:
            name, options = split_spec(spec, where=where)
            member = self.get(name)
        except ConfigError as err:
            return [f"{where}: {p}" for p in err.problems]
        if member.accepts_any:
            return []
        unknown = sorted(set(options) - set(member.options))
        if unknown:
            accepted = ", ".join(member.options) or "none"
            elsewhere = [
                f"; {', '.join(others)} take{'s' * (len(others) == 1)} '{option}'"
                for option in unknown
                if (others := [n for n in self.available() if option in self.get(n).options])
            ]
            return [
                f"{where}: {self.family} '{name}' takes no option {', '.join(map(repr, unknown))}; "
                f"its options are: {accepted}{''.join(elsewhere)}"
            ]
        return []

    def build(self, spec: ComponentSpec, **context: Any) -> Any:
        """Make a member from a name or a ``{"name": ..., **options}`` mapping.

        ``context`` holds sizes the model decides (``d_model``, ``num_heads`` ...); each member receives the
        ones its factory accepts. Options in ``spec`` override context values.

        Raises:
            ConfigError: unknown name, or options the member does not take.
        """
        return self.bind(spec, **context)()

    def bind(self, spec: ComponentSpec, **context: Any) -> functools.partial[Any]:
        """The factory of ``spec`` with its options and the context it accepts bound, not yet called: what
        :meth:`build` calls; a schedule's multiplier still waits for its ``step``.

        Raises:
            ConfigError: unknown name, or options the member does not take.
        """
        problems = self.check(spec)
        if problems:
            raise self.error(problems)
        name, options = split_spec(spec, where=self.family)
        member = self._members[name]
        accepted = member.options
        kwargs = {k: v for k, v in context.items() if member.accepts_any or k in accepted}
        kwargs.update(options)
        return functools.partial(member.factory, **kwargs)

    def describe(self) -> list[Member]:
        """Every member, in the registry's order (sorted by name unless it keeps the order of registration)."""
        load_plugins()
        return [self._members[n] for n in self._names()]

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, members={self._names()})"


def split_spec(spec: ComponentSpec, *, where: str = "") -> tuple[str, dict[str, Any]]:
    """``"x"`` -> ("x", {}); ``{"name": "x", "k": 1}`` -> ("x", {"k": 1}): the one place a spec is split.

    ``where``, the key the spec was read from, is not part of the message: callers that collect problems put
    it in front themselves (:meth:`Registry.check`).

    Raises:
        ConfigError: a mapping without a string ``name``, or neither a name nor a mapping.
    """
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(
                f"a component mapping needs a 'name' key, got {dict(spec)!r}; write e.g. {{name: rope, base: 10000}}"
            )
        return name, options
    raise ConfigError(
        f"a component is a name or a mapping with a 'name' key, got {spec!r} of type {type(spec).__name__}"
    )


FAMILIES: dict[str, Registry] = {}


def _new_family(name: str, description: str) -> Registry:
    FAMILIES[name] = Registry(name, description)
    return FAMILIES[name]


ATTENTION = _new_family(
    "attention", "attention kernel: softmax(q k^T / sqrt(E)) v and its faster or cheaper variants"
)
POSITIONAL = _new_family("positional", "how token order enters the model: embed(x), rotate(q, k), bias(L, S)")
NORM = _new_family("norm", "normalization over the model dimension")
PLACEMENT = _new_family("placement", "where the norm sits around each residual sublayer")
FFN = _new_family("ffn", "position-wise feed-forward sublayer")


def family(name: str) -> Registry:
    """The registry of family ``name`` (one of ``attention, positional, norm, placement, ffn``).

    Example:
        >>> family("norm").available()
        ['layernorm', 'rmsnorm', 'scalenorm']
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown component family '{name}'{did_you_mean(name, FAMILIES)}; families: {', '.join(FAMILIES)}"
        ) from None


_family = family  # for available(), whose argument is called family


def available(family: str, pattern: str = "*") -> list[str]:
    """Names registered in ``family`` that match the glob ``pattern``.

    Example:
        >>> available("norm")
        ['layernorm', 'rmsnorm', 'scalenorm']
    """
    return _family(family).available(pattern)


@dataclass(frozen=True)
class Kind:
    """A model kind: what its model reads and how its self-attention looks.

    Generic code (generation, conformance, callbacks, the CLI) asks a model's kind, ``kind(model.config.kind)``,
    instead of testing the model's class.

    Args:
        name: as configs write it (``causal_lm``).
        build: its builder, ``ModelConfig -> nn.Module``.
        defaults: the config values of this kind that differ from the fields' own defaults.
        causal: its (target) self-attention sees only earlier tokens.
        source: it reads a source sequence through an encoder (``src_ids``).
        generates: it decodes left to right (``model.generate``).
    """

    name: str
    build: Callable[..., Any]
    defaults: Mapping[str, Any]
    causal: bool
    source: bool = False
    generates: bool = True


KINDS = Registry("model kind", "what a model reads and how its self-attention looks", order="registration")
"""Model kinds by name, each a :class:`Kind`, in the order they were registered (``KINDS["causal_lm"]``)."""


def register_kind(name: str, **declared: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a builder as the model kind ``name`` (``declared``: the other :class:`Kind` fields).

    Raises:
        ConfigError: the name is taken.
    """

    def decorator(build: Callable[..., Any]) -> Callable[..., Any]:
        doc = (inspect.getdoc(build) or "").strip()
        KINDS.add(
            name,
            Kind(name, build, **declared),
            description=doc.splitlines()[0] if doc else "",
            source=build.__module__.split(".")[0],
        )
        return build

    return decorator


def kind(name: str) -> Kind:
    """The registered model kind ``name``.

    Raises:
        ConfigError: unknown name; the message lists the kinds and the closest match.
    """
    return KINDS[name]


_plugins_loaded = False
_plugin_errors: dict[str, str] = {}


def load_plugins(*, force: bool = False) -> dict[str, str]:
    """Import every entry point of the group ``swapformer.components`` (once, unless ``force``).

    A plug-in that fails to import is reported with a warning naming it, and the rest still load.

    Returns:
        Plug-in entry points that failed, mapped to their error.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(_plugin_errors)
    _plugins_loaded = True
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    present = {f"{ep.name} = {ep.value}" for ep in entry_points}
    for gone in set(_plugin_errors) - present:  # uninstalled since: no longer an error to report
        del _plugin_errors[gone]
    for ep in entry_points:
        key = f"{ep.name} = {ep.value}"
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)
        try:
            obj = ep.load()
            if callable(obj) and not inspect.ismodule(obj):
                obj()
        except Exception as err:  # a broken plug-in must not break the library
            _plugin_errors[key] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"swapformer plug-in '{key}' failed to load and was skipped: {_plugin_errors[key]}",
                stacklevel=2,
            )
    return dict(_plugin_errors)


_loaded_entry_points: set[str] = set()
