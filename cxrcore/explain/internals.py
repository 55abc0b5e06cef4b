"""What the network computes inside: first-layer filters and the strongest channel activations.

These are the pictures of the salient-network-activations study: the learned filters of the first
convolution, and the feature maps of a layer whose mean activation is highest for one image. Both
come back as one uint8 grey grid image; each tile is min-max normalised on its own (a constant tile
is black) and enlarged with nearest-neighbour interpolation so single weights stay visible.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from cxrcore.explain.cam import ExplainError, resolve_layer
from cxrcore.explain.engine import model_input
from cxrcore.models.lock import model_guard
from cxrcore.models.registry import CXRModel

logger = logging.getLogger(__name__)

GRID_PAD = 1  # separator width between tiles, in pixels
GRID_PAD_VALUE = 255


def _min_max(tiles: np.ndarray) -> np.ndarray:
    """Each tile of (n, ...) scaled to [0, 1] on its own; constant tiles become 0."""
    flat = tiles.reshape(len(tiles), -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(tiles.shape)


def tile_grid(tiles01: np.ndarray, tile_size: int, columns: int | None = None) -> np.ndarray:
    """Tile (n, h, w) or (n, h, w, 3) maps in [0, 1] into one uint8 grid, row by row.

    Each tile is resized to ``tile_size`` (nearest neighbour); tiles are separated by
    ``GRID_PAD`` pixels of ``GRID_PAD_VALUE``. ``columns`` defaults to ceil(sqrt(n)).
    """
    n = len(tiles01)
    if n == 0:
        raise ValueError("tile_grid needs at least one tile")
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}")
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    step = tile_size + GRID_PAD
    shape = (rows * step - GRID_PAD, columns * step - GRID_PAD, *tiles01.shape[3:])
    grid = np.full(shape, GRID_PAD_VALUE, dtype=np.uint8)
    levels = np.round(tiles01 * 255).astype(np.uint8)
    for i, tile in enumerate(levels):
        r, c = divmod(i, columns)
        big = cv2.resize(tile, (tile_size, tile_size), interpolation=cv2.INTER_NEAREST)
        grid[r * step : r * step + tile_size, c * step : c * step + tile_size] = big
    return grid


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` in module registration order (the stem), with its dotted name."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ExplainError(f"{type(model).__name__} has no 2-D convolution")


def first_layer_filters(model: CXRModel, tile_size: int = 24) -> np.ndarray:
    """The first convolution's filters as one uint8 grid, each filter min-max normalised on its own.

    Grey for one input channel; RGB (H, W, 3) for three; the mean over input channels otherwise.
    """
    name, conv = first_conv(model)
    weights = conv.weight.detach().float().cpu().numpy()  # (out, in, kh, kw)
    # (out, kh, kw, 3) colour filters, else (out, kh, kw) averaged over input channels
    filters = weights.transpose(0, 2, 3, 1) if weights.shape[1] == 3 else weights.mean(axis=1)
    logger.debug("first-layer filters of %s: %s %s", model.spec.architecture, name, weights.shape)
    return tile_grid(_min_max(filters), tile_size)


def _layer_output(model: CXRModel, x: Tensor, module: nn.Module) -> Tensor:
    """The output of ``module`` for input ``x``, captured by a forward hook released in ``finally``."""
    captured: list[Tensor] = []
    with model_guard(model):
        handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output.detach()))
        try:
            with torch.no_grad():
                model(x)
        finally:
            handle.remove()
    if not captured:
        raise ExplainError("the chosen layer did not run in the forward pass")
    return captured[0]


def channel_activations(
    model: CXRModel,
    image: Tensor | np.ndarray,
    layer: str | None = None,
    top: int = 16,
    tile_size: int = 48,
) -> tuple[np.ndarray, list[int]]:
    """The ``top`` channels of a layer with the highest mean activation for one image, as a grid.

    Args:
        model: any registered model (may be shared by other threads).
        image: a preprocessed tensor (1, C, H, W) or a numpy float image in [0, 1].
        layer: dotted module name; default ``spec.cam_layer``.
        top: how many channels to show (fewer when the layer has fewer).
        tile_size: side of each tile in pixels.

    Returns:
        The uint8 grid (strongest channel first, row by row) and the channel indices shown.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ExplainError(f"top must be a positive integer, got {top!r}")
    name, module = resolve_layer(model, layer)
    x, _ = model_input(model, image)
    output = _layer_output(model, x, module)
    if output.ndim != 4:
        raise ExplainError(
            f"layer {name!r} outputs shape {tuple(output.shape)}, not a (B, C, h, w) feature map"
        )
    maps = output[0].float().cpu().numpy()
    means = maps.mean(axis=(1, 2))
    order = np.argsort(-means, kind="stable")[:top]
    return tile_grid(_min_max(maps[order]), tile_size), [int(i) for i in order]
