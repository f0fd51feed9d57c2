"""What every Hugging Face family shares: the weight-name links, the registry of families, reading a model
directory, and the two conversions (``from_hf``, ``to_hf``) driven by a family's links.

A family (``interop/gpt2.py``, ``interop/llama.py``, ...) says three things, and nothing else:

- ``config(hf)``: the ModelConfig fields (component names and options) of a Hugging Face ``config.json``;
- ``links(config)``: which of our state-dict keys each Hugging Face tensor becomes (and how: a transpose, a split
  of a fused projection, a scale, an interleave); ``links(config, hf)`` for a family whose tensors also depend on a Hugging Face
  setting our config does not keep (T5's ``scale_decoder_outputs``, folded into a norm);
- ``hf_config(config)``: the ``config.json`` of a ModelConfig it can express, or the first component it cannot.

Layers that differ (``ModelConfig.layers``) are a family's too: it declares which layer keys it lets differ
(``per_layer``), reads each layer's spec when writing and writes the ``layers`` of the per-layer settings it
reads (:mod:`swapformer.interop.layers`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from swapformer.config import ModelConfig
from swapformer.errors import ConfigError
from swapformer.interop.experts import Stored, stack, unstack
from swapformer.layer_specs import LAYER_KEYS, distinct_layers, uniform_spec
from swapformer.models import build
from swapformer.models.generation_defaults import (
    APPLIED,
    NEUTRAL,
    GenerationDefaults,
    read_generation_defaults,
)
from swapformer.models.saving import follow_umask, output_folder, read_config, save_generation_defaults
from swapformer.registry import Registry, kind, split_spec


@dataclass(frozen=True)
class Link:
    """Our tensors ``ours`` (concatenated along dim 0, in order) are Hugging Face's tensor ``theirs``, its last two
    dimensions swapped when ``transpose`` (GPT-2's ``Conv1D`` stores ``(in, out)``, GPT-OSS's experts
    ``(E, in, out)``), times ``scale``; ``unsqueezed``: theirs has a leading dimension of size 1 that ours lacks
    (BART's ``(1, V)`` ``final_logits_bias``); ``interleaved``: theirs alternates the rows of our two halves along
    dim 1, after the transpose (GPT-OSS's gate and up columns ``[..., ::2]``, ``[..., 1::2]``; ours ``[gate; up]``)::

        ours  (E, 2F, D): g0 g1 .. g(F-1) u0 u1 .. u(F-1)      theirs (E, D, 2F): g0 u0 g1 u1 .. g(F-1) u(F-1)
    """

    ours: tuple[str, ...]
    theirs: str
    transpose: bool = False
    scale: float = 1.0
    unsqueezed: bool = False
    interleaved: bool = False


LACKS_A_FEATURE = 1000
"""Added to the ``misses`` of a family that lacks one of the model's features (:func:`shared_requirements`):
any family that has them all, and only writes some value otherwise, is closer."""


class Unsupported(Exception):
    """A ModelConfig (or HF config) feature a family cannot express; the message names the component.
    ``misses`` counts what the family cannot write (the family with the fewest is the closest; ties go to the
    shortest reason)."""

    def __init__(self, message: str, misses: int = 1) -> None:
        super().__init__(message)
        self.misses = misses


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face family: the ``model_type`` values it reads, its model kind and its three functions."""

    model_types: tuple[str, ...]
    kind: str
    config: Callable[[Mapping[str, Any]], dict[str, Any]]
    links: Callable[[ModelConfig], list[Link]]
    hf_config: Callable[[ModelConfig], dict[str, Any]]
    ignored: tuple[str, ...] = ()
    """Suffixes of Hugging Face tensors that carry nothing a swapformer model needs (recomputed buffers, tied
    copies of a linked tensor) when no link reads them."""
    links_read_hf: bool = False
    """``links`` takes the Hugging Face config as a second argument."""
    per_layer: tuple[str, ...] = ()
    """The layer keys (:data:`swapformer.layer_specs.LAYER_KEYS`) that may differ between layers: the family's
    ``hf_config`` reads each layer's (Qwen3's sliding layers: ``attention``; SmolLM3's NoPE layers: also
    ``positional``). Layers that differ in any other key are refused before ``hf_config`` runs."""
    qk_norm: str | None = None
    """The scope of the family's q/k norms (``ModelConfig.qk_norm_scope``): ``"head"``, each query and key head
    (Qwen3, Gemma 3), or ``"projection"``, the whole q and k projections (OLMo 2). Its ``hf_config`` checks
    ``qk_norm``; a model of the other scope is refused, and a family of None is refused any q/k norm."""
    softcap: bool = False
    """The family soft-caps attention scores and logits (Gemma 2): its ``hf_config`` checks the kernels' ``softcap``
    and ``logit_softcap``; the others are refused them."""
    sinks: bool = False
    """The family's attention has a sink logit per head (GPT-OSS): its ``hf_config`` checks the kernels'
    ``sinks``; the others are refused them."""
    stored: tuple[Stored, ...] = ()
    """Tensors a checkpoint stores apart that the links name stacked (an MoE's experts,
    :mod:`swapformer.interop.experts`): stacked when read, written apart again."""
    unlinked: tuple[str, ...] = ()
    """Endings of our state-dict keys no Hugging Face tensor fills: state a model read keeps as built (an MoE's
    selection bias, zero, and its load counts)."""
    beyond_depth: str | None = None
    """The prefix of the numbered layers (``model.layers``) whose tensors past the config's depth a checkpoint
    may hold and the model ignores, as transformers does: DeepSeek-V3's multi-token-prediction layers."""

    def links_of(self, config: ModelConfig, hf_config: Mapping[str, Any]) -> list[Link]:
        return self.links(config, hf_config) if self.links_read_hf else self.links(config)


ARCHITECTURES = Registry(
    "Hugging Face model_type", "a Hugging Face family swapformer reads and writes", order="registration"
)
"""Each ``model_type`` a family reads, mapped to its :class:`Architecture`; :func:`to_hf` tries the families in
the order they were registered."""


def register(architecture: Architecture) -> Architecture:
    """Register ``architecture`` under each of its ``model_types`` (a plug-in may add a family this way).

    Raises:
        ConfigError: a ``model_type`` another family reads already.
    """
    module = architecture.config.__module__
    for model_type in architecture.model_types:
        ARCHITECTURES.add(
            model_type,
            architecture,
            description=f"{architecture.kind} models, by {module}",
            source=module.split(".")[0],
        )
    return architecture


def supported() -> list[str]:
    """The Hugging Face ``model_type`` values swapformer reads and writes."""
    return ARCHITECTURES.available()


def require(checks: Iterable[tuple[bool, str]], family: str) -> None:
    """Raise :class:`Unsupported` for the first ``(ok, what)`` that is not ok: ``what`` has no ``family`` equivalent
    (``misses``: how many are not ok)."""
    missing = [what for ok, what in checks if not ok]
    if missing:
        raise Unsupported(f"{missing[0]} has no {family} equivalent", misses=len(missing))


def placement_requirement(cfg: ModelConfig, placement: str, note: str = "") -> tuple[bool, str]:
    """A family's ``placement`` and the norm after the stack it implies (none after ``post``, one after the
    others), as one ``(ok, what)`` of :func:`require` naming whichever of the two differs (``note``: the family's
    placement, said beside another)."""
    if cfg.component_name("placement") != placement:
        return False, f"placement {cfg.placement!r}{note}"
    wanted = placement != "post"
    given = wanted if cfg.final_norm is None else bool(cfg.final_norm)
    return given == wanted, (
        f"final_norm: {str(given).lower()} (a {placement} family {'normalizes' if wanted else 'adds no norm'} "
        "after the last layer)"
    )


def shared_requirements(cfg: ModelConfig, architecture: Architecture | None = None) -> list[tuple[bool, str]]:
    """What ``architecture`` (None: any family) must declare to express ``cfg``, checked before its own
    ``hf_config``: layers that differ in a key outside its ``per_layer``, q/k norms (and their scope), and
    soft-capped scores or logits."""
    allowed = set(architecture.per_layer) if architecture else set()
    base = uniform_spec(cfg)
    differing = [
        (where, key)
        for where, spec in distinct_layers(cfg)
        for key in LAYER_KEYS
        if key not in allowed and getattr(spec, key) != getattr(base, key)
    ]
    where, key = differing[0] if differing else ("", "")
    attention = [("attention", cfg.attention)]
    attention += [(f"{where}.attention", spec.attention) for where, spec in distinct_layers(cfg)]
    capped = [(w, a) for w, a in attention if split_spec(a, where=w)[1].get("softcap") is not None]
    caps = bool(architecture and architecture.softcap)
    # a family without sinks would silently drop them
    sunk = [(w, a) for w, a in attention if split_spec(a, where=w)[1].get("sinks")]
    sinks = bool(architecture and architecture.sinks)
    scope = architecture.qk_norm if architecture else None
    family = architecture.model_types[0] if architecture else ""
    return [
        (not differing, f"{where}.{key} (a layer whose {key} differs from the uniform one)"),
        (cfg.qk_norm is None or scope is not None, f"qk_norm {cfg.qk_norm!r}"),
        (
            cfg.qk_norm is None or scope is None or cfg.qk_norm_scope == scope,
            f"qk_norm_scope {cfg.qk_norm_scope!r} ({family} normalizes {SCOPES.get(scope or '')}: "
            f"qk_norm_scope: {scope})",
        ),
        (not capped or caps, " ".join(map(str, capped[0])) + " (soft-capped scores)" if capped else ""),
        (cfg.logit_softcap is None or caps, f"logit_softcap {cfg.logit_softcap!r}"),
        (not sunk or sinks, " ".join(map(str, sunk[0])) + " (attention sinks)" if sunk else ""),
    ]


SCOPES = {"head": "each head", "projection": "the whole q and k projections"}
"""What a q/k norm of each ``qk_norm_scope`` normalizes, for the refusal of the other scope."""


def seq2seq_sides(cfg: ModelConfig) -> list[tuple[str, int, bool]]:
    """``(stack, depth, has cross-attention)`` of both sides of a seq2seq config."""
    return [
        ("encoder", cfg.encoder_layers, False),
        ("decoder", cfg.decoder_layers, True),
    ]


def layer_links(prefix: str, ours: str, pairs: Iterable[tuple[str, str]], *, bias: bool) -> list[Link]:
    """Links of linear layers: ``(our name, their name)`` pairs under two prefixes, weights and biases."""
    links = []
    for mine, theirs in pairs:
        links.append(Link((f"{ours}.{mine}.weight",), f"{prefix}.{theirs}.weight"))
        if bias:
            links.append(Link((f"{ours}.{mine}.bias",), f"{prefix}.{theirs}.bias"))
    return links


def norm_links(ours: str, theirs: str, *, bias: bool) -> list[Link]:
    return [Link((f"{ours}.weight",), f"{theirs}.weight")] + (
        [Link((f"{ours}.bias",), f"{theirs}.bias")] if bias else []
    )


def qk_norm_links(layer: int) -> list[Link]:
    """The q and k norms of decoder layer ``layer``'s self-attention, as Hugging Face's decoders name them
    (``model.layers.{i}.self_attn.q_norm``): the same links for a per-head or a whole-projection norm."""
    ours, theirs = f"decoder.layers.{layer}.self_attention.sublayer", f"model.layers.{layer}.self_attn"
    return [*norm_links(f"{ours}.q_norm", f"{theirs}.q_norm", bias=False),
            *norm_links(f"{ours}.k_norm", f"{theirs}.k_norm", bias=False)]  # fmt: skip


ACTIVATIONS = {
    "gelu": ("gelu", "geglu", {}),
    "gelu_new": ("gelu", "geglu", {"approximate": "tanh"}),
    "gelu_pytorch_tanh": ("gelu", "geglu", {"approximate": "tanh"}),
    "gelu_fast": ("gelu", "geglu", {"approximate": "tanh"}),
    "relu": ("relu", None, {}),
    "silu": ("silu", "swiglu", {}),
    "swish": ("silu", "swiglu", {}),
}
"""Hugging Face activation name -> (our plain FFN member, our gated member, options)."""


def ffn_spec(activation: str, *, gated: bool, bias: bool) -> dict[str, Any]:
    """Our FFN spec for a Hugging Face activation name, plain (two linear layers) or gated (three)."""
    plain, gate, options = ACTIVATIONS.get(activation, (None, None, {}))
    name = gate if gated else plain
    if name is None:
        raise Unsupported(
            f"activation {activation!r} {'in a gated FFN ' if gated else ''}has no swapformer member"
        )
    return {"name": name, **options, "bias": bias}


def activation_of(ffn: Any) -> tuple[str, bool, bool]:
    """(Hugging Face activation name, gated, bias) of our FFN spec; the inverse of :func:`ffn_spec`."""
    name, options = split_spec(ffn)
    gated = name in ("geglu", "swiglu")
    bias = options.pop("bias", not gated)
    for hf_name, (plain, gate, hf_options) in ACTIVATIONS.items():
        if name == (gate if gated else plain) and options == hf_options:
            return hf_name, gated, bias
    raise Unsupported(f"ffn {ffn!r} has no Hugging Face activation")


# ---- reading -------------------------------------------------------------------------------------------
def read_weights(directory: Path) -> dict[str, Tensor]:
    """Every tensor of a Hugging Face model directory: ``model.safetensors``, its sharded form
    (``model.safetensors.index.json``), or ``pytorch_model.bin`` read with ``weights_only=True``."""
    from safetensors.torch import load_file

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = [
            directory / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))
        ]
    elif (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ConfigError(
            f"{directory} has a config.json but no weights (model.safetensors, model.safetensors.index.json or "
            "pytorch_model.bin)"
        )
    weights: dict[str, Tensor] = {}
    for file in files:
        try:
            weights.update(load_file(file))
        except Exception as err:  # a truncated or foreign file: name it
            raise ConfigError(f"{file} is not a readable safetensors file ({err})") from None
    return weights


def architecture_of(hf_config: Mapping[str, Any]) -> Architecture:
    model_type = hf_config.get("model_type")
    if (
        model_type not in ARCHITECTURES
    ):  # no "did you mean": the name is a config.json's, and bert is not bart
        raise ConfigError(
            f"model_type {model_type!r} is not supported; swapformer reads {', '.join(supported())}"
        )
    return ARCHITECTURES[model_type]


def _source(source: Any) -> tuple[dict[str, Any], Callable[[], dict[str, Tensor]], GenerationDefaults | None]:
    if isinstance(source, nn.Module) and hasattr(source, "config") and hasattr(source.config, "to_dict"):
        # a transformers PreTrainedModel
        generation = getattr(source, "generation_config", None)
        defaults = None
        if generation is not None:
            defaults = GenerationDefaults.from_dict(
                generation.to_dict(), where=f"{type(source).__name__}.generation_config"
            )
        return source.config.to_dict(), source.state_dict, defaults
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"from_hf takes a model directory or a transformers PreTrainedModel, got {type(source).__name__}"
        )
    directory = Path(source)
    hf_config = read_config(directory)
    quantized = hf_config.get("quantization_config")
    if quantized:  # before a model of the checkpoint's size is built: its tensors are not weights as stored
        method = quantized.get("quant_method", "?") if isinstance(quantized, dict) else quantized
        raise ConfigError(
            f"{directory / 'config.json'} holds quantized weights (quantization_config with quant_method "
            f"{method!r}); swapformer reads full-precision weights: dequantize the model in transformers (for "
            f"mxfp4: from_pretrained with quantization_config=Mxfp4Config(dequantize=True)), save_pretrained it "
            f"and import that folder"
        )
    defaults = read_generation_defaults(directory)
    if defaults is None:  # transformers then takes the generation settings its config.json holds
        in_config = {key: value for key, value in hf_config.items() if key in APPLIED or key in NEUTRAL}
        defaults = GenerationDefaults.from_dict(in_config, where=str(directory / "config.json"))
    return hf_config, lambda: read_weights(directory), defaults


def from_hf(source: str | os.PathLike | nn.Module, *, dtype: torch.dtype | str | None = None) -> nn.Module:
    """A swapformer model, in eval mode, from a Hugging Face model: a local directory written by
    ``save_pretrained`` or a ``PreTrainedModel``. Its ``config`` is a plain :class:`ModelConfig` of registered
    component names: swap one, rebuild, and keep training (see the Interop page). Its ``generation_config``
    holds the checkpoint's generation defaults (``generation_config.json``, else the generation settings of
    its ``config.json``, as transformers reads them), which ``model.generate()`` uses.

    Args:
        dtype: the parameters' dtype. None (the default): float32 whatever the checkpoint holds, the master
            weights training keeps (Lightning's ``precision: bf16-mixed`` computes in bfloat16 from them).
            ``"auto"``: the dtype the checkpoint's floating tensors are stored in, as transformers 5's
            ``from_pretrained`` keeps it (a bfloat16 checkpoint then takes half the memory, for inference).
            Or a floating ``torch.dtype`` or its name (``"bfloat16"``).

    Raises:
        ConfigError: no ``config.json``, a quantized checkpoint, an unsupported ``model_type`` or option (named),
            weights that are missing, unexpected or of the wrong shape (the tensor named), a generation setting
            of the wrong type (named), or a ``dtype`` that is not a floating dtype (before anything is read).
    """
    dtype = _checked_dtype(dtype)
    hf_config, weights, defaults = _source(source)
    architecture = architecture_of(hf_config)
    try:
        fields = architecture.config(hf_config)
    except Unsupported as err:
        raise ConfigError(f"{hf_config['model_type']}: {err}") from None
    config = ModelConfig.from_dict({**fields, "kind": architecture.kind})
    model, theirs = build(config), weights()
    if _untied_in_checkpoint(model, theirs, architecture, hf_config):
        model = build(ModelConfig.from_dict({**config.to_dict(), "tie_embeddings": False}))
    if dtype == "auto":
        dtype = _stored_dtype(theirs)
    load_hf_state(model, theirs, architecture, hf_config)
    if dtype is not None:
        model.to(dtype)
    if kind(architecture.kind).generates:
        model.generation_config = defaults
    return model.eval()


FLOATING = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


def _checked_dtype(dtype: Any) -> torch.dtype | str | None:
    """``from_hf``'s ``dtype`` as a ``torch.dtype``, ``"auto"`` or None; anything else refused in one line."""
    if dtype is None or dtype == "auto":
        return dtype
    named = FLOATING.get(dtype.removeprefix("torch."), dtype) if isinstance(dtype, str) else dtype
    if not (isinstance(named, torch.dtype) and named.is_floating_point):
        raise ConfigError(
            f"from_hf got dtype={dtype!r}, which is not a floating dtype: pass one of {', '.join(FLOATING)} (or "
            "the torch.dtype), 'auto' for the checkpoint's own, or leave it out for float32"
        )
    return named


def _stored_dtype(tensors: Mapping[str, Tensor]) -> torch.dtype | None:
    """The dtype most of ``tensors``' floating tensors are stored in (None: no floating tensor)."""
    counts: dict[torch.dtype, int] = {}
    for tensor in tensors.values():
        if tensor.is_floating_point():
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + 1
    return max(counts, key=counts.get) if counts else None


def _name_in(theirs: Mapping[str, Tensor], name: str) -> str | None:
    if name not in theirs and name.split(".", 1)[-1] in theirs:  # saved from the base model (GPT2Model)
        name = name.split(".", 1)[-1]
    return name if name in theirs else None


def _untied_in_checkpoint(
    model: nn.Module, theirs: Mapping[str, Tensor], architecture: Architecture, hf_config: Mapping[str, Any]
) -> bool:
    """Whether a config that ties the output layer comes with a checkpoint whose output layer differs from the
    embedding: transformers 5 then leaves the two untied (T5 v1.1 checkpoints, whose config it forces to tie)."""
    if not model.config.tie_embeddings or not hasattr(model, "lm_head"):
        return False
    untied = ModelConfig.from_dict({**model.config.to_dict(), "tie_embeddings": False})
    head = next(
        (link for link in architecture.links_of(untied, hf_config) if link.ours == ("lm_head.weight",)), None
    )
    tied_keys = {
        key for key, value in model.state_dict(keep_vars=True).items() if value is model.lm_head.weight
    }
    embedding = next(
        (link for link in architecture.links_of(model.config, hf_config) if set(link.ours) & tied_keys), None
    )
    if head is None or embedding is None:
        return False
    head_name, embedding_name = _name_in(theirs, head.theirs), _name_in(theirs, embedding.theirs)
    if head_name is None or embedding_name is None:
        return False
    head_tensor, embedding_tensor = theirs[head_name], theirs[embedding_name]
    return head_tensor.shape != embedding_tensor.shape or not torch.equal(head_tensor, embedding_tensor)


def load_hf_state(
    model: nn.Module,
    theirs: Mapping[str, Tensor],
    architecture: Architecture,
    hf_config: Mapping[str, Any] | None = None,
) -> None:
    """Copy Hugging Face tensors into ``model`` through the family's links; every tensor accounted for.
    ``hf_config`` is the Hugging Face config, for a family whose links read it. The TensorFlow-era names of
    LayerNorm parameters (``LayerNorm.gamma``, ``LayerNorm.beta``: the original BERT checkpoints) are read as
    ``weight`` and ``bias``, as transformers reads them."""
    theirs = stack({_legacy_name(key): tensor for key, tensor in theirs.items()}, architecture.stored)
    ours = model.state_dict()
    used: set[str] = set()
    state: dict[str, Tensor] = {}
    for link in architecture.links_of(model.config, hf_config or {}):
        name = _name_in(theirs, link.theirs)
        if name is None:
            raise ConfigError(f"the checkpoint has no tensor {link.theirs!r}, which {link.ours[0]!r} needs")
        tensor = theirs[name].float()
        used.add(name)
        sizes = [ours[key].size(0) for key in link.ours]
        shape = (sum(sizes), *ours[link.ours[0]].shape[1:])
        expected = (*((1,) if link.unsqueezed else ()), *(_swapped(shape) if link.transpose else shape))
        if tuple(tensor.shape) != expected:
            raise ConfigError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, but the config.json asks for {expected}"
            )
        tensor = tensor.squeeze(0) if link.unsqueezed else tensor
        tensor = (tensor.transpose(-2, -1) if link.transpose else tensor) * link.scale
        if link.interleaved:  # every other row: the gate's, then the up's
            tensor = torch.cat((tensor[:, 0::2], tensor[:, 1::2]), dim=1)
        state.update(zip(link.ours, tensor.split(sizes), strict=True))
    unexpected = [
        key
        for key in theirs
        if key not in used
        and not key.endswith(architecture.ignored)
        and not _tied(key, model)
        and not _beyond_depth(key, architecture.beyond_depth, model.config.num_layers)
    ]
    if unexpected:
        raise ConfigError(
            f"the checkpoint has tensors this config does not use: {', '.join(sorted(unexpected)[:5])}"
        )
    shared = {id(value): key for key, value in model.state_dict(keep_vars=True).items() if key in state}
    for key, value in model.state_dict(keep_vars=True).items():  # tied tensors: one link fills both names
        if key not in state and id(value) in shared:
            state[key] = state[shared[id(value)]]
    for key in ours:
        if key not in state and key.endswith(architecture.unlinked):
            state[key] = ours[key]
    missing = [key for key in ours if key not in state]
    if missing:  # a family whose links miss a tensor of the model: a swapformer bug, not the user's
        raise RuntimeError(f"{architecture.model_types[0]} links leave {missing[:5]} unset")
    model.load_state_dict(state)


def _swapped(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with its last two dimensions swapped (a transposed matrix, or each matrix of a stack)."""
    return (*shape[:-2], shape[-1], shape[-2])


LEGACY_NAMES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}
"""Old tensor-name endings and the names transformers reads them as (its ``legacy`` weight renaming)."""


def _legacy_name(key: str) -> str:
    for old, new in LEGACY_NAMES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def _beyond_depth(key: str, prefix: str | None, depth: int) -> bool:
    # model.layers.61.enorm.weight of a 61-layer model: its multi-token-prediction layer
    if prefix is None or not key.startswith(prefix + "."):
        return False
    index = key[len(prefix) + 1 :].split(".", 1)[0]
    return index.isdigit() and int(index) >= depth


def _tied(key: str, model: nn.Module) -> bool:
    # a tied output layer may be written (or not) beside the embedding it repeats
    return key.endswith("lm_head.weight") and model.config.tie_embeddings


# ---- writing -------------------------------------------------------------------------------------------
def to_hf(model: nn.Module, directory: str | os.PathLike, *, model_type: str | None = None) -> Path:
    """Write ``model`` as a Hugging Face model directory (``config.json``, ``model.safetensors``, and the model's
    generation defaults as ``generation_config.json`` when it has some) that ``transformers.AutoModelForCausalLM``
    / ``AutoModelForSeq2SeqLM`` / ``AutoModelForMaskedLM.from_pretrained`` loads with the same logits (and
    generation settings).

    Args:
        model: a swapformer model.
        directory: the folder to write (made if missing).
        model_type: the Hugging Face family to write (one of :func:`supported`); None: the first family, in
            registration order, that expresses the model (a Llama-shaped model is written as ``llama`` even when
            it came from ``phi3``; ask for ``phi3`` to get its fused projections back).

    Raises:
        ConfigError: no supported family (or not ``model_type``) expresses the model's config; the message names
            the component.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ConfigError(
            f"{type(model).__name__} has no swapformer ModelConfig; to_hf writes swapformer models"
        )
    architecture, hf_config = hf_family(config, model_type)
    ours = model.state_dict()
    theirs = {}
    for link in architecture.links_of(config, hf_config):
        tensor = torch.cat([ours[key] for key in link.ours]) / link.scale
        if link.interleaved:  # [gate; up] rows -> g0 u0 g1 u1 ...
            gate, up = tensor.chunk(2, dim=1)
            tensor = torch.stack((gate, up), dim=2).flatten(1, 2)
        tensor = tensor.transpose(-2, -1) if link.transpose else tensor
        theirs[link.theirs] = (tensor[None] if link.unsqueezed else tensor).contiguous()
    theirs = unstack(theirs, architecture.stored)
    path = output_folder(directory, "to_hf")
    (path / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(theirs, str(path / "model.safetensors"), metadata={"format": "pt"})
    follow_umask(path / "model.safetensors")
    save_generation_defaults(model, path)
    return path


def hf_family(config: ModelConfig, model_type: str | None = None) -> tuple[Architecture, dict[str, Any]]:
    """The first family that expresses ``config`` (or ``model_type``, when given), and its Hugging Face config.

    Raises:
        ConfigError: none does; the message leads with the component that blocks the closest family (one with
            every feature the model uses before one without, then the fewest things it cannot write), then what
            the others lack.
    """
    reasons: dict[str, Unsupported] = {}
    names = list(ARCHITECTURES) if model_type is None else [model_type]
    for architecture in dict.fromkeys(ARCHITECTURES[name] for name in names):  # each family once
        family = model_type or architecture.model_types[0]
        if architecture.kind != config.kind:
            if model_type is not None:
                reasons[family] = Unsupported(
                    f"{family} is a family of {architecture.kind} models, not {config.kind}"
                )
            continue
        try:
            try:
                require(shared_requirements(config, architecture), family)
            except Unsupported as err:  # a feature the family lacks: farther than a value it writes otherwise
                err.misses += LACKS_A_FEATURE
                raise
            hf_config = architecture.hf_config(config)
            if model_type is not None and hf_config["model_type"] != model_type:
                raise Unsupported(f"the model is written as {hf_config['model_type']}, not {model_type}")
            return architecture, hf_config
        except Unsupported as err:
            reasons[family] = err
    if not reasons:
        raise ConfigError(f"no Hugging Face family is mapped for {config.kind} models")
    if model_type is not None:
        raise ConfigError(
            f"cannot export to Hugging Face {model_type}: {reasons[model_type]} (without model_type the first "
            "family that expresses the model writes it)"
        )
    closest = min(reasons, key=lambda name: (reasons[name].misses, len(str(reasons[name]))))
    others = "; ".join(f"{name}: {reason}" for name, reason in reasons.items() if name != closest)
    raise ConfigError(
        f"{reasons[closest]}, so this model cannot be exported to Hugging Face (--format swapformer keeps it)"
        + (f"; other families: {others}" if others else "")
    )


def hf_blocker(config: ModelConfig) -> str | None:
    """Why ``config`` cannot be exported to Hugging Face (the lead of :func:`hf_family`'s message: the component
    that blocks the closest family), or None when it can."""
    try:
        hf_family(config)
    except ConfigError as err:
        return str(err).partition("; other families:")[0]
    return None
