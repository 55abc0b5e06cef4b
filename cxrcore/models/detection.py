"""Running a detector on images: scored boxes per finding, in the original image's pixels.

``detect(checkpoint, pixels)`` prepares the image as the detector was trained (the card's
preprocessing: fit into the input square, optional CLAHE), runs the network once and moves the boxes
back to the image it was given. The result is a detections frame (``DETECTION_COLUMNS``: image_id,
label, x, y, w, h, score), the same shape the evaluation and the pages use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD, DETECTION_COLUMNS, empty_detections
from cxrcore.models.checkpoint import Checkpoint
from cxrcore.models.detector import CXRDetector
from cxrcore.models.lock import inference_guard
from cxrcore.preprocess import boxes_from_input, prepare

__all__ = ["DEFAULT_SCORE_THRESHOLD", "detect", "detector_of", "outputs_to_frame"]


def detector_of(checkpoint: Checkpoint) -> CXRDetector:
    """The checkpoint's detector; ValueError naming the task when it is a classifier."""
    if not isinstance(checkpoint.model, CXRDetector):
        raise ValueError(
            f"{checkpoint.name} is a {checkpoint.task} model, not a detector: choose a detection checkpoint"
        )
    return checkpoint.model


def outputs_to_frame(
    outputs: dict[str, torch.Tensor],
    image_id: str,
    labels: Sequence[str],
    original: tuple[int, int],
    checkpoint: Checkpoint,
    score_threshold: float = 0.0,
) -> pd.DataFrame:
    """One image's network output (boxes on the input square) as a detections frame in original pixels."""
    scores = outputs["scores"].detach().float().cpu().numpy()
    keep = scores >= score_threshold
    xyxy = outputs["boxes"].detach().float().cpu().numpy()[keep]
    if not keep.any():
        return empty_detections()
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    height, width = original
    moved = boxes_from_input(xywh, width, height, checkpoint.preprocess)
    classes = outputs["labels"].detach().cpu().numpy()[keep]
    inside = (moved[:, 2] > 0) & (moved[:, 3] > 0)  # boxes wholly in the padding vanish when moved back
    moved, classes, kept_scores = moved[inside], classes[inside], scores[keep][inside]
    return pd.DataFrame(
        {
            "image_id": image_id,
            "label": [labels[int(c)] for c in classes],
            "x": moved[:, 0],
            "y": moved[:, 1],
            "w": moved[:, 2],
            "h": moved[:, 3],
            "score": kept_scores.astype(np.float64),
        },
        columns=list(DETECTION_COLUMNS),
    )


def detect(
    checkpoint: Checkpoint, pixels: np.ndarray, *, score_threshold: float = 0.0, image_id: str = "image"
) -> pd.DataFrame:
    """Scored boxes of every class the detector knows on one grey [0, 1] (H, W) image, best first.

    Raises:
        ValueError: the checkpoint is not a detector, or ``pixels`` is not a valid image.
    """
    model = detector_of(checkpoint)
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must lie in [0, 1], got {score_threshold}")
    u8 = prepare(pixels, checkpoint.preprocess)
    param = next(model.parameters())
    x = torch.from_numpy(u8).to(device=param.device, dtype=param.dtype).div(255.0)[None]
    with inference_guard(model), torch.inference_mode():
        outputs = model([x])[0]
    frame = outputs_to_frame(
        outputs, image_id, model.labels, pixels.shape[:2], checkpoint, score_threshold=score_threshold
    )
    return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
