"""The lung segmenter: lungs, heart and clavicles of a frontal chest X-ray, in the image's own pixels.

A small U-Net from segmentation-models-pytorch (``SegmenterSpec``: a MobileNetV4 encoder built by timm
with random initial weights, nothing downloaded) trained on the JSRT images and their SCR masks
(``cxrcore.train.segmenter``). One sigmoid per class (the classes may overlap: the clavicles lie over
the lungs); a pixel belongs to a class when its probability reaches the card's threshold (0.5).

An image is prepared with the card's preprocessing (``prepare``: letterboxed to the input square,
CLAHE) and normalised with the training images' mean and std; the probabilities are put back onto the
image's own pixels (``input_to_image``), so the masks fit any image, non-square ones included. Each
lung and the heart keep their largest connected region.

Public API: ``segment_lungs(pixels) -> LungMasks``; ``lung_box(pixels)``, the lungs' crop box (the
``"segmenter"`` lung crop method of ``PreprocessConfig``, registered by ``segmenter_card``);
``load_segmenter`` (cached per file) and ``save_segmenter``. The bundled segmenter is
``checkpoints/lung-segmenter.safetensors``.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import safetensors
import torch
from torch import nn

import cxrcore
from cxrcore.digest import array_digest
from cxrcore.lung_crop import LUNG_MARGIN, Box, widen_box
from cxrcore.models.card import SEGMENTER_CARD_KEY, CheckpointError, FileVersion, file_version
from cxrcore.models.checkpoint import check_state_dict, read_tensors, write_tensors
from cxrcore.models.segmenter_card import (
    SegmenterCard,
    SegmenterSpec,
    default_segmenter_path,
    read_segmenter_card,
)
from cxrcore.preprocess import NormStats, check_unit_image, input_to_image, normalise, prepare

logger = logging.getLogger(__name__)

_RESULTS_KEPT = 4  # recent images' masks, so the crop and the lung share of one image segment it once


def build_network(spec: SegmenterSpec) -> nn.Module:
    """The untrained network of a spec (random initial weights; nothing is downloaded)."""
    import segmentation_models_pytorch as smp  # imported on first use: a second or two

    decoders = {"Unet": smp.Unet}
    if spec.decoder not in decoders:
        raise CheckpointError(
            f"unknown segmenter decoder {spec.decoder!r}; valid options: {', '.join(decoders)}"
        )
    return decoders[spec.decoder](
        encoder_name=spec.encoder,
        encoder_weights=None,
        in_channels=1,
        classes=len(spec.classes),
        decoder_channels=spec.decoder_channels,
        encoder_depth=len(spec.decoder_channels),
    )


@dataclass(frozen=True)
class LungMasks:
    """Boolean (H, W) masks of one image in its own pixels; left and right are the patient's."""

    right_lung: np.ndarray
    left_lung: np.ndarray
    heart: np.ndarray
    clavicles: np.ndarray

    @property
    def lungs(self) -> np.ndarray:
        """Both lung fields."""
        return self.right_lung | self.left_lung

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.right_lung.shape

    def lung_share(self) -> float:
        """The share of the image the lung fields cover."""
        return float(self.lungs.mean())


def _largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a boolean mask (the mask itself when it has none or one)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


@dataclass(frozen=True, eq=False)
class Segmenter:
    """A loaded segmenter: the network (eval mode), its card, and its file."""

    model: nn.Module
    card: SegmenterCard
    path: Path | None = None

    def input_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """The network input (1, 1, S, S) for a grey [0, 1] (H, W) image, prepared as the card says."""
        spec = self.card.spec
        u8 = prepare(pixels, self.card.preprocess)
        return torch.from_numpy(normalise(u8, NormStats(spec.mean, spec.std, 0)))[None, None]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Per-class probabilities (C, H, W), float32, on the image's own pixels."""
        check_unit_image(pixels)
        with torch.inference_mode():
            logits = self.model(self.input_tensor(pixels))[0]
        square = torch.sigmoid(logits.float()).numpy()
        height, width = pixels.shape
        return input_to_image(square, width, height, self.card.preprocess)

    def segment(self, pixels: np.ndarray) -> LungMasks:
        """The organs' masks of one image in its own pixels (largest region per lung and for the heart)."""
        probs = self.probabilities(pixels)
        masks = {c: probs[i] >= self.card.threshold for i, c in enumerate(self.card.classes)}
        for organ in ("right_lung", "left_lung", "heart"):
            if organ in masks:
                masks[organ] = _largest_region(masks[organ])
        empty = np.zeros(pixels.shape, dtype=bool)
        return LungMasks(
            **{k: masks.get(k, empty) for k in ("right_lung", "left_lung", "heart", "clavicles")}
        )


def _package_versions() -> dict[str, str]:
    """Versions of the packages that produced a segmenter checkpoint."""
    import segmentation_models_pytorch as smp
    import timm

    return {
        "torch": torch.__version__,
        "segmentation-models-pytorch": smp.__version__,
        "timm": timm.__version__,
        "safetensors": safetensors.__version__,
        "cxrcore": cxrcore.__version__,
    }


def save_segmenter(path: str | Path, model: nn.Module, card: SegmenterCard, *, half: bool = True) -> Path:
    """Write ``path`` (weights + embedded card) and its ``.json`` sidecar atomically; float16 by default.

    Returns:
        The weights file's path.
    """
    full = card.replace(
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        package_versions=_package_versions(),
        num_parameters=sum(p.numel() for p in model.parameters()),
        weights_dtype="float16" if half else "float32",
    )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    weights = write_tensors(path, tensors, full.to_dict(), card_key=SEGMENTER_CARD_KEY)
    logger.info("saved lung segmenter %s", weights)
    return weights


def _load(path: Path) -> Segmenter:
    """Read a segmenter checkpoint: card, network rebuilt from its spec, weights loaded strictly."""
    card = read_segmenter_card(path)
    model = build_network(card.spec)
    tensors = read_tensors(path)
    if card.weights_dtype == "float16":
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    check_state_dict(model.state_dict(), tensors, repr(str(path)))
    model.load_state_dict(tensors, strict=True)
    return Segmenter(model.eval(), card, path)


@functools.lru_cache(maxsize=4)
def _cached(version: FileVersion) -> Segmenter:
    """One loaded segmenter per file version (read-only afterwards, so shared by every thread)."""
    return _load(Path(version[0]))


def load_segmenter(path: str | Path | None = None) -> Segmenter:
    """The segmenter of a checkpoint file (the bundled one by default), loaded once per file version.

    Raises:
        CheckpointError: a missing, corrupt or foreign file, or weights that do not fit the card's
            network; the message names the file.
    """
    weights = Path(path) if path is not None else default_segmenter_path()
    if not weights.is_file():
        raise CheckpointError(
            f"no lung segmenter at {str(weights)!r}; train one with "
            f"python -m cxrcore segmenter train --out {weights}"
        )
    return _cached(file_version(weights))


_recent: collections.OrderedDict[tuple[str, str], LungMasks] = collections.OrderedDict()
_recent_lock = threading.Lock()


def segment_lungs(pixels: np.ndarray, segmenter: Segmenter | str | Path | None = None) -> LungMasks:
    """Lungs, heart and clavicles of a grey [0, 1] (H, W) image, as masks in its own pixels.

    ``segmenter`` is a loaded one, a checkpoint file, or None for the bundled one. The last few
    images' masks are kept (read-only), so asking again for the same image does not run the network.

    Raises:
        CheckpointError: no segmenter at the path (the message says how to train one).
        ValueError: ``pixels`` is not a non-empty 2-D float image in [0, 1].
    """
    check_unit_image(pixels)
    model = segmenter if isinstance(segmenter, Segmenter) else load_segmenter(segmenter)
    key = (str(model.path or id(model)), array_digest(pixels))
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key]
    masks = model.segment(pixels)
    for array in (masks.right_lung, masks.left_lung, masks.heart, masks.clavicles):
        array.setflags(write=False)
    with _recent_lock:
        _recent[key] = masks
        while len(_recent) > _RESULTS_KEPT:
            _recent.popitem(last=False)
    return masks


def mask_box(mask: np.ndarray, margin: float = 0.0) -> Box | None:
    """The bounding box (x0, y0, x1, y1, exclusive ends) of a mask widened by ``margin``; None if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    height, width = mask.shape
    return widen_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), width, height, margin)


def lung_box(
    pixels: np.ndarray, margin: float = LUNG_MARGIN, segmenter: Segmenter | str | Path | None = None
) -> Box:
    """The box around both segmented lungs, widened by ``margin`` of the image on each side.

    The same margin as the threshold heuristic's by default, so the two crops compare; the whole image
    (with a warning) when no lung is found.
    """
    box = mask_box(segment_lungs(pixels, segmenter).lungs, margin)
    if box is None:
        height, width = pixels.shape
        logger.warning(
            "the lung segmenter found no lung in a %dx%d image; using the whole image", width, height
        )
        return 0, 0, width, height
    return box
