"""Pictures drawn during training, handed to whichever loggers the trainer has.

:class:`~swapformer.training.AttentionMapLogger` (attention maps at validation) and
:class:`~swapformer.training.ExpertLoadLogger` (each MoE layer's expert load) draw with matplotlib's object API
(no pyplot, so safe in callbacks and threads), turn the figure into an image with :func:`figure_to_array`, and
log it with :func:`log_images`: a ``WandbLogger`` through ``log_image``, a TensorBoard logger through
``add_image``, any other logger with a ``log_dir`` (the CSV logger) as PNG files in a folder of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**options: Any) -> Figure:
    """``matplotlib.figure.Figure(**options)``, or an ImportError that says how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "drawing pictures needs matplotlib: pip install matplotlib (or swapformer[docs])"
        ) from err
    return Figure(**options)


def figure_to_array(fig: Figure) -> Any:
    """An ``(H, W, 3)`` uint8 numpy image of ``fig`` (what loggers accept)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_images(
    logger: Any,
    images: dict[str, list[Any]],
    *,
    step: int,
    folder: str,
    captions: Sequence[str] | None = None,
) -> None:
    """Log ``{key: [image, ...]}`` (``(H, W, 3)`` uint8 arrays) at ``step`` to ``logger``.

    Args:
        logger: a Lightning logger; one with neither ``log_image``/``add_image`` nor a ``log_dir`` gets nothing.
        images: the images of each key (``attention/<layer>``, ``train/moe_expert_load``).
        step: the training step they belong to.
        folder: the folder of ``log_dir`` that PNG files go to, named ``step<step>-<key's last part>-<i>.png``.
        captions: one per image of a key (W&B shows them); default ``example <i>, step <step>``.
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for key, arrays in images.items():
        if isinstance(logger, WandbLogger):
            caption = list(captions or [f"example {i}, step {step}" for i in range(len(arrays))])
            logger.log_image(key=key, images=arrays, caption=caption, step=step)
        elif isinstance(logger, TensorBoardLogger):
            for i, array in enumerate(arrays):
                logger.experiment.add_image(f"{key}/{i}", array, step, dataformats="HWC")
        elif getattr(logger, "log_dir", None):
            from PIL import Image

            directory = Path(logger.log_dir) / folder
            directory.mkdir(parents=True, exist_ok=True)
            name = key.split("/", 1)[-1].replace("/", "_")
            for i, array in enumerate(arrays):
                Image.fromarray(array).save(directory / f"step{step}-{name}-{i}.png")
