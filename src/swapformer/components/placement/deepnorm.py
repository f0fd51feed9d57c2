"""`deepnorm`: post-norm with an up-weighted residual and down-scaled initialization (Wang et al., 2022,
"DeepNet: Scaling Transformers to 1,000 Layers")."""

from __future__ import annotations

from torch import Tensor, nn

from swapformer.components.declarations import score_projections
from swapformer.components.placement.residual import Residual
from swapformer.errors import ConfigError


def deepnorm_constants(
    *, num_layers: int, is_encoder: bool = False, num_encoder_layers: int = 0, num_decoder_layers: int = 0
) -> tuple[float, float]:
    """DeepNet's ``(alpha, beta)`` for one stack (the paper's table 1 / figure 2).

    ========================  ==========================  ===========================
    architecture              alpha                       beta
    ========================  ==========================  ===========================
    decoder-only, M layers    (2M)^(1/4)                  (8M)^(-1/4)
    encoder-only, N layers    (2N)^(1/4)                  (8N)^(-1/4)
    encoder of N + M          0.81 (N^4 M)^(1/16)         0.87 (N^4 M)^(-1/16)
    decoder of N + M          (3M)^(1/4)                  (12M)^(-1/4)
    ========================  ==========================  ===========================

    Args:
        num_layers: layers of this stack.
        is_encoder: this stack is an encoder.
        num_encoder_layers: for a decoder, its encoder's layers (0: decoder-only).
        num_decoder_layers: for an encoder, its decoder's layers (0: encoder-only).
    """
    if is_encoder and num_decoder_layers:
        n, m = num_layers, num_decoder_layers
        return 0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)
    if not is_encoder and num_encoder_layers:
        return (3 * num_layers) ** (1 / 4), (12 * num_layers) ** (-1 / 4)
    return (2 * num_layers) ** (1 / 4), (8 * num_layers) ** (-1 / 4)


class DeepNorm(Residual):
    """Post-norm with the residual scaled up by ``alpha``; the sublayer's value/output/feed-forward weights start
    scaled down by ``beta``, which bounds each update to the model and lets post-norm train at great depth::

    x ──┬────────── sublayer ── dropout ──(+)── norm ──▶
        └── x alpha ───────────────────────┘

    ``alpha`` and ``beta`` follow the paper for the stack the builder places it in (it passes the depths, see
    :func:`deepnorm_constants`). ``beta`` is applied by :meth:`after_init_weights`, which the builders call after
    the model-wide initialization: Xavier-normal with gain ``beta`` for the feed-forward layers and the value and
    output projections, gain 1 for the query and key projections (the paper's pseudocode).

    Args:
        sublayer: the module to wrap.
        norm: the norm module.
        dropout: dropout on the sublayer output before the addition.
        num_layers: layers of this stack.
        is_encoder: this stack is the encoder of an encoder-decoder model.
        num_encoder_layers: for a decoder, its encoder's layers (0: decoder-only).
        num_decoder_layers: for an encoder, its decoder's layers (0: encoder-only).

    Raises:
        ConfigError: num_layers below 1.
    """

    def __init__(
        self,
        *,
        sublayer: nn.Module,
        norm: nn.Module,
        dropout: float = 0.0,
        num_layers: int,
        is_encoder: bool = False,
        num_encoder_layers: int = 0,
        num_decoder_layers: int = 0,
    ) -> None:
        super().__init__(sublayer=sublayer, norm=norm, dropout=dropout)
        if num_layers < 1:
            raise ConfigError(f"deepnorm needs num_layers >= 1, got {num_layers}")
        self.alpha, self.beta = deepnorm_constants(
            num_layers=num_layers,
            is_encoder=is_encoder,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
        )

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.norm(self.alpha * x + self.drop(self.sublayer(x, *args, **kwargs)))

    def after_init_weights(self) -> None:
        """DeepNet's initialization of the sublayer's linear layers (Xavier-normal, gain beta or 1)."""
        # gain 1 for what only forms the scores (queries and keys), as each member declares it
        scores = {id(m) for p in score_projections(self.sublayer) for m in p.modules()}
        for module in self.sublayer.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight, gain=1.0 if id(module) in scores else self.beta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4g}, beta={self.beta:.4g}"
