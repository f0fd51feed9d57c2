"""Mixture of experts: a router sends each token to ``top_k`` of ``experts`` feed-forward networks (Shazeer et al.,
2017; Switch, Mixtral, Qwen3-MoE, GPT-OSS, DeepSeek-V3).

::

    x ─▶ router ─▶ scores (T, E) ─▶ top-k ─▶ experts e_1..e_k, weights g_1..g_k
    y = sum_j g_j FFN_{e_j}(x)  (+ shared experts, always on)

Dropless and batch-independent: every (token, slot) pair is sorted by expert, each expert runs once on its
contiguous slice (a grouped GEMM on CUDA in bfloat16, a loop over experts elsewhere; never a loop over tokens),
and the outputs are gathered back into token order and summed over the k slots. No token is dropped and no
float is accumulated by ``index_add``/``scatter_add``, so the same inputs give the same outputs and gradients bit for
bit on the CPU, and a token's output never depends on the other tokens of the batch.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swapformer.components.auxiliary import AddsLosses
from swapformer.components.ffn.mlp import FeedForward, GatedFeedForward, SquaredReLU
from swapformer.errors import ConfigError

ROUTERS = ("sigmoid", "softmax", "topk_softmax")
"""``softmax``: softmax over the experts, then top-k (Mixtral, Qwen3-MoE); ``topk_softmax``: top-k of the logits,
then softmax over those k (GPT-OSS, with a router bias); ``sigmoid``: independent sigmoid scores, group-limited
top-k, weights scaled by ``routed_scaling`` (DeepSeek-V3)."""


CLAMPED_SWIGLU_ALPHA, CLAMPED_SWIGLU_LIMIT = 1.702, 7.0
"""GPT-OSS's ``swiglu_alpha`` (the sigmoid's gain) and ``swiglu_limit`` (the clamp), fixed in ``clamped_swiglu``."""


def _clamped_swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """GPT-OSS's expert nonlinearity: (clamp(up, -7, 7) + 1) * g sigmoid(1.702 g), g = min(gate, 7)."""
    limit = CLAMPED_SWIGLU_LIMIT
    gate, up = gate.clamp(max=limit), up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * CLAMPED_SWIGLU_ALPHA))


# the experts' nonlinearities: gated (act(gate) * up) and plain, and the module a shared expert of a kind uses
_GATED = {"swiglu": F.silu, "geglu": F.gelu}
_PLAIN = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "relu2": lambda h: torch.relu(h).square()}
_SHARED = {"swiglu": nn.SiLU, "geglu": nn.GELU, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
_SHARED["relu2"] = SquaredReLU
EXPERTS = (*sorted({*_GATED, *_PLAIN}), "clamped_swiglu")


def _choice(value: object, choices: tuple[str, ...], what: str, example: str) -> str:
    if value in choices:
        return str(value)
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"moe: unknown {what} {value!r}{hint}; {what}s: {', '.join(choices)}; write e.g. {example}"
    )


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"moe needs {name} >= {minimum}, got {name}={value!r}; write e.g. {{name: moe, experts: 8, top_k: 2}}"
        )
    return value


def even_split(pairs: int, experts: int) -> list[int]:
    """``pairs`` (token, slot) pairs spread as evenly as they go over ``experts``: the routing of a pass on the meta
    device (FLOPs counted without values, :mod:`swapformer.tasks.flops`). A dropless MoE runs every pair through
    one expert's GEMMs whatever the routing, so any split costs the same FLOPs: the active ones, ``top_k`` experts
    per token."""
    return [pairs // experts + (e < pairs % experts) for e in range(experts)]


class MixtureOfExperts(AddsLosses):
    """A router and ``experts`` feed-forward networks of width ``d_ff`` each; every token runs ``top_k`` of them.

    Args:
        d_model: model dimension D.
        d_ff: each expert's hidden width F (the active width per token is ``top_k * d_ff``, plus the shared
            experts' ``shared_experts * d_ff``).
        experts: number of routed experts E.
        top_k: experts per token k (1 <= k <= E).
        expert: each expert's kind: ``swiglu``, ``geglu`` (gated), ``relu``, ``gelu``, ``silu``, ``relu2``, or
            ``clamped_swiglu`` (GPT-OSS's).
        shared_experts: experts every token runs, as one FFN of width ``shared_experts * d_ff`` (DeepSeek).
        router: ``softmax``, ``topk_softmax`` or ``sigmoid`` (:data:`ROUTERS`).
        norm_topk: renormalize the k weights to sum to one (Mixtral; Qwen3-MoE's ``norm_topk_prob``).
        routed_scaling: factor on the routed experts' weights (DeepSeek-V3's ``routed_scaling_factor``).
        groups: expert groups for group-limited routing (DeepSeek-V3's ``n_group``); 1 = none.
        topk_groups: groups a token may pick experts from (``topk_group``); each group is scored by the sum of
            its two best experts.
        router_bias: a bias in the router's linear layer (GPT-OSS); None = only for ``topk_softmax``.
        expert_bias: biases in the experts' linear layers (GPT-OSS).
        aux_loss: coefficient of the load-balancing loss ``E * sum_i f_i P_i`` (Switch, Mixtral), added as
            ``moe_aux_loss``; 0 = none.
        z_loss: coefficient of the router z-loss ``mean(logsumexp(logits)^2)`` (ST-MoE), added as ``moe_z_loss``.
        balance_rate: DeepSeek-V3's loss-free balancing: after every optimizer step the selection-only bias of each
            expert moves by ``balance_rate`` against the sign of its load error; 0 = off.
        dropout: dropout on the experts' hidden states.

    Raises:
        ConfigError: experts or top_k below 1, top_k above experts, an unknown router or expert, groups that do
            not divide the experts.

    Shape:
        x ``(N, L, D)`` -> ``(N, L, D)``; T = N L tokens inside.
    """

    def __init__(
        self,
        *,
        d_model: int,
        d_ff: int,
        experts: int = 8,
        top_k: int = 2,
        expert: str = "swiglu",
        shared_experts: int = 0,
        router: str = "softmax",
        norm_topk: bool = True,
        routed_scaling: float = 1.0,
        groups: int = 1,
        topk_groups: int = 1,
        router_bias: bool | None = None,
        expert_bias: bool = False,
        aux_loss: float = 0.01,
        z_loss: float = 0.001,
        balance_rate: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_experts = _count(experts, "experts", 1)
        self.top_k = _count(top_k, "top_k", 1)
        if top_k > experts:
            raise ConfigError(
                f"moe: top_k={top_k} is more than experts={experts}; each token picks top_k of the experts: "
                f"lower top_k or raise experts"
            )
        self.router_kind = _choice(router, ROUTERS, "router", "{name: moe, router: softmax}")
        self.expert = _choice(expert, EXPERTS, "expert", "{name: moe, expert: swiglu}")
        groups, topk_groups = _count(groups, "groups", 1), _count(topk_groups, "topk_groups", 1)
        if (
            experts % groups
            or topk_groups > groups
            or (groups > 1 and top_k > topk_groups * experts // groups)
        ):
            raise ConfigError(
                f"moe: groups={groups} must divide experts={experts}, topk_groups={topk_groups} be at most groups, "
                f"and the chosen groups hold at least top_k={top_k} experts"
            )
        self.groups, self.topk_groups = groups, topk_groups
        self.norm_topk, self.routed_scaling = bool(norm_topk), float(routed_scaling)
        self.aux_loss, self.z_loss, self.balance_rate = float(aux_loss), float(z_loss), float(balance_rate)
        self.d_ff = d_ff
        gated = self.expert not in _PLAIN
        self.router = nn.Linear(
            d_model, experts, bias=router == "topk_softmax" if router_bias is None else bool(router_bias)
        )
        # the experts' weights stacked, laid out as transformers' Mixtral / Qwen3-MoE experts: [gate; up] rows
        self.gate_up_proj = nn.Parameter(
            torch.empty(experts, (2 if gated else 1) * d_ff, d_model)
        )  # (E, 2F, D)
        self.down_proj = nn.Parameter(torch.empty(experts, d_model, d_ff))  # (E, D, F)
        self.gate_up_bias = (
            nn.Parameter(torch.zeros(experts, self.gate_up_proj.size(1))) if expert_bias else None
        )
        self.down_bias = nn.Parameter(torch.zeros(experts, d_model)) if expert_bias else None
        self.dropout = nn.Dropout(dropout)
        self.shared = None
        if _count(shared_experts, "shared_experts", 0):
            if self.expert not in _SHARED:
                raise ConfigError(f"moe: shared experts of kind {self.expert!r} are not offered; use swiglu")
            kind = GatedFeedForward if self.expert in _GATED else FeedForward
            self.shared = kind(
                d_model=d_model,
                d_ff=shared_experts * d_ff,
                activation=_SHARED[self.expert](),
                bias=expert_bias,
            )
        # selection-only bias (DeepSeek-V3's e_score_correction_bias) and the tokens each expert received since
        # the last optimizer step: state, not parameters
        self.register_buffer("selection_bias", torch.zeros(experts))
        self.register_buffer("load", torch.zeros(experts))
        # the loads of the optimizer steps since take_running_load last took them (the expert-load picture):
        # added to on the device each step, read every few hundred; not in checkpoints
        self.register_buffer("running_load", torch.zeros(experts), persistent=False)
        # under tensor parallelism, the experts this rank holds (ExpertParallel sets it); None: all of them
        self.expert_group: Any = None
        nn.init.normal_(self.gate_up_proj, std=0.02)
        nn.init.normal_(self.down_proj, std=0.02)

    def reset_weights(self, *, std: float, residual_std: float) -> None:
        """The stacked experts as the builders start every ``nn.Linear``: N(0, std), the down projections (which
        write into the residual stream) N(0, residual_std), biases zero."""
        nn.init.normal_(self.gate_up_proj, std=std)
        nn.init.normal_(self.down_proj, std=residual_std)
        for bias in (self.gate_up_bias, self.down_bias):
            if bias is not None:
                nn.init.zeros_(bias)

    residual_projections = ("shared.down_proj",)
    """The shared experts' down projection (when there are any) writes into the residual stream."""

    def tensor_parallel_plan(self, *, size: int) -> dict[str, Any]:
        """Split ``size`` ways (TP) by experts: each rank holds E / size whole experts (expert parallelism inside
        the TP group; their stacked weights are raw parameters, which a column-wise / row-wise split cannot cut),
        routes every token with the replicated router, runs its experts on the pairs routed to them, and the
        ranks' partial outputs are summed (one all-reduce of ``(T, D)``). Shared experts split as any FFN.

        Raises:
            ConfigError: ``size`` does not divide the experts.
        """
        if self.num_experts % size:
            fits = [d for d in range(1, self.num_experts + 1) if self.num_experts % d == 0]
            raise ConfigError(
                f"moe: tensor_parallel_size={size} does not divide experts={self.num_experts} (each TP rank holds "
                f"whole experts): set tensor_parallel_size to one of {fits}"
            )
        if size == 1:
            return {}
        from swapformer.components.tensor_parallel import ExpertParallel

        return {"": ExpertParallel("gate_up_proj", "down_proj", "gate_up_bias", "down_bias")}

    # ---- forward ----------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        tokens = x.reshape(-1, x.size(-1))  # (T, D)
        logits = self.router(tokens)  # (T, E)
        weights, chosen = self.route(logits)  # (T, k) each
        group = self.expert_group
        if (
            group is None
            and tokens.size(0) == 1
            and not (self.training or torch.is_grad_enabled() or x.is_meta)
        ):
            y = self.one_token(tokens, chosen, weights)  # a decoding step of one sequence
        elif group is None:
            y = self.combine(self.run_experts(tokens, chosen), weights)  # (T, D)
        else:  # this rank's experts: its part of y, the others' slots zero; the ranks' parts summed
            routed = self.run_experts(group.shared(tokens), chosen)
            y = group.summed(self.combine(routed, group.shared(weights)))
        if self.shared is not None:
            y = y + self.shared(tokens)
        if self.training:
            self._account(logits, chosen)
        return y.view(x.shape)

    def route(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """The k weights and experts of each token: ``(T, k)`` float weights (in the logits' dtype) and indices.

        The selection bias moves the choice only, never the weights (DeepSeek-V3's loss-free balancing)."""
        scores = logits.float()
        if self.router_kind == "softmax":
            scores = scores.softmax(-1)
        elif self.router_kind == "sigmoid":
            scores = scores.sigmoid()
        choice = scores + self.selection_bias  # (T, E)
        if self.groups > 1:
            per_group = choice.view(-1, self.groups, self.num_experts // self.groups)  # (T, G, E / G)
            group_scores = per_group.topk(min(2, per_group.size(-1)), dim=-1).values.sum(-1)  # (T, G)
            kept = group_scores.topk(self.topk_groups, dim=-1).indices
            mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
            choice = choice.masked_fill(
                ~mask.repeat_interleave(self.num_experts // self.groups, dim=1), -math.inf
            )
        chosen = choice.topk(self.top_k, dim=-1).indices  # (T, k)
        weights = scores.gather(1, chosen)
        if self.router_kind == "topk_softmax":
            weights = weights.softmax(-1)
        elif self.norm_topk:
            weights = weights / (
                weights.sum(-1, keepdim=True) + (1e-20 if self.router_kind == "sigmoid" else 0)
            )
        if self.routed_scaling != 1.0:
            weights = weights * self.routed_scaling
        return weights.to(logits.dtype), chosen

    def run_experts(self, tokens: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
        """Each (token, slot) pair's expert output, computed in expert order: ``(T k, D)`` sorted by expert, and
        the permutation that sorted them."""
        count, k = chosen.shape
        flat = chosen.reshape(-1)  # (T k,)
        order = flat.argsort(stable=True)  # pairs grouped by expert, in token order within an expert
        # expand, not tokens[order // k]: the gradient then sums over slots without a scatter_add
        routed = tokens.unsqueeze(1).expand(count, k, tokens.size(-1)).reshape(count * k, -1)[order]
        if flat.is_meta:  # the FLOP counter's pass: no values to route by (see even_split)
            return self._looped(routed, even_split(count * k, self.num_experts)), order
        sizes = torch.bincount(flat, minlength=self.num_experts)
        grouped = self.expert_group is None and hasattr(F, "grouped_mm")
        if grouped and routed.is_cuda and routed.dtype == torch.bfloat16:
            out = self._grouped(routed, sizes, flat[order])
        else:
            out = self._looped(routed, sizes.tolist())
        return out, order

    def one_token(self, token: Tensor, chosen: Tensor, weights: Tensor) -> Tensor:
        """One token without gradients (a decoding step at batch 1): its k experts run on it directly, with none
        of the sorting, counting, splitting and gathering back that a batch needs; the same products and the same
        weighted sum as :meth:`combine`'s: ``(1, D)``."""
        halves = 1 if self.expert in _PLAIN else 2
        w_in = self.gate_up_proj.view(self.num_experts * halves, self.d_ff, -1)  # E or 2E of (F, D)
        b_in = None if self.gate_up_bias is None else self.gate_up_bias.view(-1, self.d_ff)
        outs = []
        for e in chosen[0].tolist():
            first, second = halves * e, halves * e + 1
            hidden = F.linear(token, w_in[first], None if b_in is None else b_in[first])
            up = (
                None if halves == 1 else F.linear(token, w_in[second], None if b_in is None else b_in[second])
            )
            bias = None if self.down_bias is None else self.down_bias[e]
            outs.append(F.linear(self._hidden(hidden, up), self.down_proj[e], bias))  # (1, D)
        return torch.bmm(weights.unsqueeze(1), torch.cat(outs).unsqueeze(0)).squeeze(1)

    def _hidden(self, gate: Tensor, up: Tensor | None) -> Tensor:
        """The experts' nonlinearity on their first projections (``up`` is None for a plain expert)."""
        if up is None:
            return _PLAIN[self.expert](gate)
        if self.expert == "clamped_swiglu":
            return _clamped_swiglu(gate, up)
        return _GATED[self.expert](gate) * up

    def _looped(self, routed: Tensor, sizes: list[int]) -> Tensor:
        # unbind, not self.gate_up_proj[e]: the backward of eight indexings would fill eight full-size zero
        # gradients and add them up; unbind's is one stack. The gate and up halves are unbound apart too (a view
        # of (E, 2, F, D)), so the two projections are contiguous GEMM outputs with no chunk to undo in backward.
        # Every expert runs, an empty slice included: each parameter gets a gradient (zero) every step, as DDP
        # and FSDP2 expect of every rank. Without gradients (decoding: one token, two experts of eight) only the
        # experts that received pairs run, their weights indexed one by one (one view each, no unbind of all).
        # Under tensor parallelism this rank holds experts first .. first + count - 1 (their weights local), and
        # the pairs of the others get zeros: their ranks compute them.
        group, gated, every = self.expert_group, self.expert not in _PLAIN, torch.is_grad_enabled()
        first, count = (0, len(sizes)) if group is None else (group.first, group.count)
        gate_up, down, gate_up_bias, down_bias = (
            p if group is None or p is None else p.to_local()
            for p in (self.gate_up_proj, self.down_proj, self.gate_up_bias, self.down_bias)
        )
        halves = 2 if gated else 1
        w_in = gate_up.view(count * halves, self.d_ff, -1)  # E or 2E of (F, D)
        w_in, w_out = (w_in.unbind(0), down.unbind(0)) if every else (w_in, down)
        b_in = [None] * count * halves if gate_up_bias is None else gate_up_bias.view(-1, self.d_ff).unbind(0)
        b_out = [None] * count if down_bias is None else down_bias.unbind(0)
        outs = []
        for expert, part in enumerate(routed.split(sizes)):
            e = expert - first
            if not 0 <= e < count:
                outs.append(part.new_zeros(part.size(0), w_out[0].size(0)))
                continue
            if not (every or sizes[expert]):
                continue
            hidden = F.linear(part, w_in[halves * e], b_in[halves * e])  # (T_e, F): the gate, or the only one
            up = F.linear(part, w_in[2 * e + 1], b_in[2 * e + 1]) if gated else None
            outs.append(F.linear(self.drop(self._hidden(hidden, up)), w_out[e], b_out[e]))  # (T_e, D)
        return torch.cat(outs)

    def _grouped(self, routed: Tensor, sizes: Tensor, experts: Tensor) -> Tensor:
        offsets = sizes.cumsum(0).to(torch.int32)
        h = F.grouped_mm(routed, self.gate_up_proj.to(routed.dtype).transpose(1, 2), offs=offsets)
        if self.gate_up_bias is not None:
            h = h + self.gate_up_bias[experts].to(h.dtype)
        gate, up = h.chunk(2, dim=-1) if self.expert not in _PLAIN else (h, None)
        h = self.drop(self._hidden(gate, up))
        out = F.grouped_mm(h, self.down_proj.to(h.dtype).transpose(1, 2), offs=offsets)
        return out if self.down_bias is None else out + self.down_bias[experts].to(out.dtype)

    def combine(self, sorted_out: tuple[Tensor, Tensor], weights: Tensor) -> Tensor:
        """Back into token order by a gather (a permutation: its gradient has no collisions), then the weighted sum
        over the k slots: ``(T, D)``."""
        out, order = sorted_out
        count, k = weights.shape
        back = order.argsort()  # the inverse permutation
        per_slot = out[back].view(count, k, -1)  # (T, k, D)
        return torch.bmm(weights.unsqueeze(1), per_slot).squeeze(1)  # sum_j g_j y_j, one kernel each way

    def drop(self, x: Tensor) -> Tensor:
        """Dropout while training; in eval mode or at p = 0 (where it is the identity) not even the module call."""
        return self.dropout(x) if self.training and self.dropout.p else x

    # ---- training: losses and balance ---------------------------------------------------------------------------
    def probabilities(self, logits: Tensor) -> Tensor:
        """The router's distribution over experts ``(T, E)`` the balance loss weighs: the softmax of the logits,
        or the sigmoid scores normalized to sum to one (``sigmoid``)."""
        if self.router_kind == "sigmoid":
            scores = logits.float().sigmoid()
            return scores / scores.sum(-1, keepdim=True)
        return logits.float().softmax(-1)

    def _account(self, logits: Tensor, chosen: Tensor) -> None:
        if chosen.is_meta:  # the FLOP counter's pass: nothing to count, and bincount has no meta kernel
            counts = torch.tensor(even_split(chosen.numel(), self.num_experts), device="meta")
        else:
            counts = torch.bincount(chosen.reshape(-1), minlength=self.num_experts)
        counts = counts.to(self.load.dtype)
        if self.aux_loss:
            # E * sum_i f_i P_i, f_i = tokens routed to i / T (the k slots sum to k), P_i = mean probability
            fraction = counts / logits.size(0)
            balance = self.num_experts * (fraction * self.probabilities(logits).mean(0)).sum()
            self.add_loss("moe_aux_loss", self.aux_loss * balance)
        if self.z_loss:
            self.add_loss("moe_z_loss", self.z_loss * logits.float().logsumexp(-1).square().mean())
        # activation checkpointing runs forward again inside the backward pass: count each token once
        if torch._C._current_graph_task_id() == -1:
            self.load += counts

    @torch.no_grad()
    def after_optimizer_step(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """What an optimizer step ends: the loads counted since the last one, summed over processes by
        ``reduce``, nudge the selection bias (when ``balance_rate``), are added to :meth:`take_running_load`'s
        counts and are reset. Returns ``{"moe_imbalance": busiest expert's load / the even load}``, 1 when no
        token was routed (every load alike). No host sync: all of it stays on the device, step after step."""
        load = self.load.clone() if reduce is None else reduce(self.load.clone())
        self.load.zero_()
        self.running_load += load
        mean = load.sum() / self.num_experts
        if self.balance_rate:  # sign(0) = 0: loads of nothing routed leave the bias alone
            self.selection_bias += self.balance_rate * torch.sign(mean - load)
        imbalance = torch.where(
            mean > 0, load.max() / mean, torch.ones_like(mean)
        )  # 0 / 0 where nothing came
        return {"moe_imbalance": imbalance}

    @torch.no_grad()
    def take_running_load(self) -> Tensor:
        """The tokens each expert received, ``(E,)``, over the optimizer steps since this was last called (the
        loads behind ``moe_imbalance``, summed over processes), and start counting again from zero. The
        :class:`~swapformer.training.ExpertLoadLogger` draws them."""
        load = self.running_load.clone()
        self.running_load.zero_()
        return load
