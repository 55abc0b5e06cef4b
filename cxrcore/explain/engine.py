"""The explanation engine: predictions and heat maps for any registered model, one call per image.

``explain(model, image)`` runs one forward pass for the probabilities and, for average-pooled heads,
derives the class activation map (CAM) of every label and the CRM from that same pass (no hooks, no
backward passes). Methods that need gradients or extra passes (the Grad-CAM family, see
``cxrcore.explain.cam``) run only when asked. Every map comes back twice at image resolution:

- ``raw``: the method's map after ReLU (positive evidence only), smoothed at feature resolution
  (``smooth``, below) and bilinearly upsampled, in the method's own units (logit units for CAM,
  squared logit differences for CRM), so it can be compared across images and models;
- ``display``: ``raw`` min-max normalised to [0, 1]. A map that is constant or has no positive value
  is flagged ``no_positive_evidence`` and its display map is all zeros (never NaN).

ReLU is applied at feature resolution before upsampling, as in ``pytorch_grad_cam``, so with
``smooth=0`` display maps equal the package's own output.

Smoothing: by default every map is filtered after ReLU and before upsampling with a Gaussian whose
standard deviation is ``DEFAULT_SMOOTH`` (1/16) of the map's side: one cell of a 16 x 16 map, a
quarter of a cell of a 4 x 4 one, so the same width of anatomy whatever the model's stride. The
evidence for a lesion covers every cell whose view contains it and the cells of a max-pooled map are
noisy, so an unsmoothed fine map is often a plateau whose highest cell lies anywhere on it, at worst
beside the lesion; the filtered map peaks at the plateau's centre. It is the same linear filter for
every method, so CAM still equals Grad-CAM up to scale, and raw maps stay comparable. The width was
chosen on the demo phantoms (``bench/bench_map_smoothing.py``); ``smooth=0`` turns it off.

The model is shared safely between threads: see ``model_guard``; maps in closed form share it with other
forward passes (``inference_guard``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cxrcore.explain.cam import (
    ExplainError,
    class_activation_maps,
    get_method,
    resolve_layer,
)
from cxrcore.explain.crm import crm_maps
from cxrcore.explain.methods import (
    DEFAULT_METHODS,
    DEFAULT_SMOOTH,
    EXPLAIN_METHODS,
    EXTRA_METHODS,
    METHOD_NAMES,
)
from cxrcore.hints import did_you_mean, unknown_choice
from cxrcore.models.checkpoint import Checkpoint, as_checkpoint
from cxrcore.models.ensemble import EnsembleError, check_members
from cxrcore.models.lock import inference_guard, model_guard
from cxrcore.models.registry import CXRModel

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_SMOOTH",
    "EXPLAIN_METHODS",
    "EXTRA_METHODS",
    "METHOD_NAMES",
    "EnsembleExplanation",
    "ExplainError",
    "Explanation",
    "SaliencyMap",
    "check_smooth",
    "explain",
    "explain_ensemble",
    "model_input",
    "normalise_map",
]

logger = logging.getLogger(__name__)

FLAT_TOLERANCE = 1e-6  # a map whose range is below this fraction of its peak counts as constant
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cxrcore.io


@dataclass(frozen=True)
class SaliencyMap:
    """One heat map of one method for one label, aligned with ``Explanation.image01``.

    Attributes:
        method: the method asked for ("cam", "gradcam", "crm", ...).
        label: the label explained.
        algorithm: what computed it: "cam" (closed form) or "gradcam" for "cam", else the method.
        layer: the dotted name of the layer the map was taken at.
        lowres: float32 (h, w) map at the layer's resolution, before ReLU.
        raw: float32 (H, W) positive part, smoothed, bilinearly upsampled, un-normalised.
        display: float32 (H, W) in [0, 1]; all zeros when ``no_positive_evidence``.
        no_positive_evidence: the map is constant or has no positive value.
    """

    method: str
    label: str
    algorithm: str
    layer: str
    lowres: np.ndarray
    raw: np.ndarray
    display: np.ndarray
    no_positive_evidence: bool

    @property
    def peak(self) -> float:
        """Largest raw value (0 when there is no positive evidence)."""
        return float(self.raw.max())


@dataclass(frozen=True)
class Explanation:
    """Probabilities and heat maps of one image from one forward pass of one model.

    ``maps`` is keyed by (method, label). ``probabilities`` (calibrated as the checkpoint's card says,
    ``Checkpoint.probabilities``) and ``logits`` cover every output of the model; ``labels`` are the
    explained ones, in the order asked. ``image01`` is the grey [0, 1]
    picture the model saw (after preprocessing), the one to draw the maps over. ``pooled_features`` is
    the spatially averaged last feature map of the same pass (float64, one value per channel), what the
    upload guard measures, so it needs no forward pass of its own.
    """

    architecture: str
    labels: tuple[str, ...]
    methods: tuple[str, ...]
    probabilities: dict[str, float]
    logits: dict[str, float]
    maps: dict[tuple[str, str], SaliencyMap]
    image01: np.ndarray
    pooled_features: np.ndarray | None = None

    def get(self, method: str, label: str) -> SaliencyMap:
        """The map of ``method`` for ``label``; ExplainError naming what was computed otherwise."""
        try:
            return self.maps[(method, label)]
        except KeyError:
            raise ExplainError(
                f"no {method!r} map for {label!r}; computed methods {list(self.methods)} "
                f"for labels {list(self.labels)}"
            ) from None


@dataclass(frozen=True)
class EnsembleExplanation:
    """Ensemble heat maps: per label, the mean of the members' display maps (PeerJ 2020).

    ``maps`` holds float32 (H, W) maps in [0, 1] at the first member's resolution;
    ``probabilities`` the members' mean probability; ``members`` each member's full explanation.
    """

    method: str
    labels: tuple[str, ...]
    maps: dict[str, np.ndarray]
    probabilities: dict[str, float]
    members: tuple[Explanation, ...]
    image01: np.ndarray


def _grey_array(image: np.ndarray) -> np.ndarray:
    """A 2-D grey image from a 2-D array, a 3-D array with one channel, or RGB(A) (BT.601 luma)."""
    if image.ndim == 3 and 1 in (image.shape[0], image.shape[-1]):
        return image.reshape(image.shape[1:] if image.shape[0] == 1 else image.shape[:2])
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return np.asarray(image[..., :3], dtype=np.float32) @ _LUMA
    if image.ndim != 2:
        raise ExplainError(
            f"image must be (H, W), (H, W, 1), (1, H, W) or (H, W, 3) in [0, 1], got shape {image.shape}"
        )
    return image


def model_input(checkpoint: Checkpoint | CXRModel, image: Tensor | np.ndarray) -> tuple[Tensor, np.ndarray]:
    """The model input (1, C, H, W) on the model's device and the grey [0, 1] (H, W) image it shows.

    A tensor is taken as already preprocessed and normalised. A numpy float image in [0, 1] goes
    through the checkpoint's preprocessing (its model card's; a bare model gets the defaults at its
    input size) and normalisation with ``spec.mean`` / ``spec.std``, exactly as training images do.
    """
    checkpoint = as_checkpoint(checkpoint)
    spec = checkpoint.spec
    param = next(checkpoint.model.parameters())
    if isinstance(image, np.ndarray):
        if spec.in_chans != 1:
            raise ExplainError(f"numpy images are grey; {spec.architecture} takes {spec.in_chans} channels")
        try:
            return checkpoint.input_tensor(_grey_array(image))
        except ValueError as exc:
            raise ExplainError(f"cannot preprocess the image: {exc}") from exc
    if not isinstance(image, Tensor):
        raise ExplainError(f"image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != spec.in_chans:
        raise ExplainError(
            f"image tensor must be one preprocessed image (1, {spec.in_chans}, H, W), "
            f"got {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise ExplainError(f"image tensor must be float (normalised), got {image.dtype}")
    x = image.detach().to(device=param.device, dtype=param.dtype)
    grey = (x[0].mean(0) * spec.std + spec.mean).clamp(0, 1)
    return x, grey.to(device="cpu", dtype=torch.float32).numpy()


def _label_indices(model: CXRModel, labels: str | int | Sequence[str | int] | None) -> list[int]:
    """Output indices for label names or indices (all labels when None), duplicates dropped."""
    names = model.spec.labels
    if labels is None:
        return list(range(len(names)))
    if isinstance(labels, str | int):
        labels = [labels]
    indices: list[int] = []
    for label in labels:
        if isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(names):
                raise ExplainError(f"label index {label} is out of range for {len(names)} labels")
            index = label
        elif label in names:
            index = names.index(label)
        else:
            raise ExplainError(
                f"unknown label {label!r}{did_you_mean(label, names)} valid options: {list(names)}"
            )
        if index not in indices:
            indices.append(index)
    if not indices:
        raise ExplainError(f"no labels to explain; valid options: {list(names)}")
    return indices


def _check_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    """Method names, validated against EXPLAIN_METHODS, duplicates dropped."""
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    for name in names:
        if name not in EXPLAIN_METHODS:
            raise ExplainError(unknown_choice("method", name, EXPLAIN_METHODS))
    if not names:
        raise ExplainError(f"no methods asked for; valid options: {', '.join(EXPLAIN_METHODS)}")
    return tuple(dict.fromkeys(names))


def normalise_map(raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """Min-max normalise a non-negative map to [0, 1]; zeros and True when it has no positive evidence."""
    peak, low = float(raw.max()), float(raw.min())
    if not peak > 0 or peak - low <= FLAT_TOLERANCE * peak:
        return np.zeros_like(raw, dtype=np.float32), True
    return ((raw - low) / (peak - low)).astype(np.float32), False


def _feature_maps(
    model: CXRModel, x: Tensor, features: Tensor, methods: tuple[str, ...], indices: list[int], layer: str
) -> dict[str, tuple[str, np.ndarray]]:
    """Per method: the algorithm used and raw maps (n_labels_asked, h, w) at feature resolution."""
    at_cam_layer = layer == model.spec.cam_layer
    out: dict[str, tuple[str, np.ndarray]] = {}
    crm: tuple[np.ndarray, np.ndarray] | None = None
    for method in methods:
        if method == "cam" and at_cam_layer and model.spec.pooling == "avg":
            out[method] = ("cam", class_activation_maps(model, features)[indices].float().cpu().numpy())
        elif method == "cam":
            out[method] = ("gradcam", get_method("gradcam")(model, layer)(x, indices))
        elif method in ("crm", "crm_label"):
            if crm is None:
                per_label, total = crm_maps(model, features)
                crm = per_label.float().cpu().numpy(), total.float().cpu().numpy()
            maps = crm[1][None].repeat(len(indices), 0) if method == "crm" else crm[0][indices]
            out[method] = (method, maps)
        else:
            out[method] = (method, get_method(method)(model, layer)(x, indices))
    return out


def check_smooth(smooth: float) -> float:
    """``smooth`` as a float; ExplainError unless it is a number in [0, 1] (a fraction of the side)."""
    number = not isinstance(smooth, bool) and isinstance(smooth, int | float | np.floating)
    if not number or not 0 <= smooth <= 1:  # NaN fails the comparison too
        raise ExplainError(f"smooth must be a fraction of the map's side in [0, 1], got {smooth!r}")
    return float(smooth)


def smooth_maps(maps: np.ndarray, fraction: float) -> np.ndarray:
    """Gaussian-filter each map of (n, h, w), standard deviation ``fraction`` of its side.

    Edges are replicated, so a constant map stays constant.
    """
    if fraction == 0:
        return maps
    h, w = maps.shape[-2:]
    return np.stack(
        [
            cv2.GaussianBlur(m, (0, 0), fraction * w, sigmaY=fraction * h, borderType=cv2.BORDER_REPLICATE)
            for m in maps
        ]
    ).reshape(maps.shape)


def _to_saliency(
    method: str,
    algorithm: str,
    layer: str,
    lowres: np.ndarray,
    labels: list[str],
    size: tuple[int, int],
    smooth: float,
) -> list[SaliencyMap]:
    """Smooth and upsample the positive part of raw maps (n, h, w) to ``size``; normalise each."""
    if not np.isfinite(lowres).all():
        logger.warning("%s produced non-finite values; they are set to 0", algorithm)
        lowres = np.nan_to_num(lowres, nan=0.0, posinf=0.0, neginf=0.0)
    positive = smooth_maps(np.maximum(lowres, 0, dtype=np.float32), smooth)
    positive = torch.from_numpy(np.ascontiguousarray(positive))[:, None]
    raw = F.interpolate(positive, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    maps = []
    for label, low, up in zip(labels, lowres, raw, strict=True):
        display, empty = normalise_map(up)
        maps.append(SaliencyMap(method, label, algorithm, layer, low, up, display, empty))
    return maps


CLOSED_FORM = frozenset({"cam", "crm", "crm_label"})  # from the features alone, for average-pooled heads


def _guard(model: CXRModel, methods: tuple[str, ...], layer: str) -> AbstractContextManager[None]:
    """How an explanation holds the shared model: maps in closed form (CAM and CRM of an average-pooled
    head at its CAM layer) need one plain forward pass, which shares the model with other such passes
    (two sessions' explanations run on two cores at once); the gradient methods register hooks, so
    they hold it alone."""
    closed = model.spec.pooling == "avg" and layer == model.spec.cam_layer and set(methods) <= CLOSED_FORM
    return inference_guard(model) if closed else model_guard(model)


def explain(
    checkpoint: Checkpoint | CXRModel,
    image: Tensor | np.ndarray,
    labels: str | int | Sequence[str | int] | None = None,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    layer: str | None = None,
    smooth: float = DEFAULT_SMOOTH,
) -> Explanation:
    """Probabilities and heat maps (raw and display) for one image, per method and label.

    Args:
        checkpoint: a loaded checkpoint (its card gives the preprocessing), or a bare registered model
            (default preprocessing at its input size); the model may be shared by other threads.
        image: a preprocessed tensor (1, C, H, W), or a numpy float image in [0, 1] (see ``model_input``).
        labels: names or indices to explain; all of the model's labels when None.
        methods: any of ``EXPLAIN_METHODS``. "cam" is closed form for average-pooled heads at the CAM
            layer and Grad-CAM otherwise; "crm" and "crm_label" are always at ``spec.cam_layer``.
        layer: dotted module name for the Grad-CAM family (default ``spec.cam_layer``).
        smooth: the standard deviation of the Gaussian applied to every map after ReLU and before
            upsampling, as a fraction of the map's side; 0 for none.

    Raises:
        ExplainError: unknown method, label or layer (with close matches), an unusable image, or a
            ``smooth`` outside [0, 1].
    """
    names = _check_methods(methods)
    smooth = check_smooth(smooth)
    checkpoint = as_checkpoint(checkpoint)
    model = checkpoint.model
    indices = _label_indices(model, labels)
    layer_name, _ = resolve_layer(model, layer)
    x, image01 = model_input(checkpoint, image)
    with _guard(model, names, layer_name):
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model.forward_head(features)[0].float().cpu()
            pooled = features.float().mean(dim=(2, 3))[0].cpu().numpy().astype(np.float64)
        raw = _feature_maps(model, x, features, names, indices, layer_name)
    label_names = [model.spec.labels[i] for i in indices]
    maps: dict[tuple[str, str], SaliencyMap] = {}
    for method, (algorithm, lowres) in raw.items():
        used_layer = model.spec.cam_layer if method in ("crm", "crm_label") else layer_name
        shape = image01.shape
        for saliency in _to_saliency(method, algorithm, used_layer, lowres, label_names, shape, smooth):
            maps[(method, saliency.label)] = saliency
    probs = checkpoint.probabilities(logits)  # calibrated as the card says
    return Explanation(
        architecture=model.spec.architecture,
        labels=tuple(label_names),
        methods=names,
        probabilities=dict(zip(model.spec.labels, probs.tolist(), strict=True)),
        logits=dict(zip(model.spec.labels, logits.tolist(), strict=True)),
        maps=maps,
        image01=image01,
        pooled_features=pooled,
    )


def _check_shared_labels(members: Sequence[Checkpoint]) -> tuple[str, ...]:
    """The label set every member shares (the same check as for ensembles of predictions)."""
    try:
        return check_members([m.labels for m in members])
    except EnsembleError as exc:
        raise ExplainError(str(exc)) from None


def explain_ensemble(
    checkpoints: Sequence[Checkpoint | CXRModel],
    image: Tensor | np.ndarray,
    labels: str | int | Sequence[str | int] | None = None,
    method: str = "cam",
    smooth: float = DEFAULT_SMOOTH,
) -> EnsembleExplanation:
    """Explain one image with every member and average their display maps per label.

    Each member prepares a numpy image with its own card's preprocessing; ``smooth`` is the smoothing
    of every member's maps (see ``explain``). Members with another input size are resized (bilinear)
    to the first member's resolution; a member without positive evidence for a label contributes its
    all-zero map.
    """
    checkpoints = [as_checkpoint(c) for c in checkpoints]
    _check_shared_labels(checkpoints)
    members = tuple(
        explain(member, image, labels=labels, methods=(method,), smooth=smooth) for member in checkpoints
    )
    h, w = members[0].image01.shape
    maps: dict[str, np.ndarray] = {}
    for label in members[0].labels:
        displays = [m.get(method, label).display for m in members]
        resized = [
            d if d.shape == (h, w) else cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
            for d in displays
        ]
        maps[label] = np.clip(np.mean(resized, axis=0), 0.0, 1.0).astype(np.float32)
    probabilities = {
        name: float(np.mean([m.probabilities[name] for m in members])) for name in checkpoints[0].labels
    }
    return EnsembleExplanation(method, members[0].labels, maps, probabilities, members, members[0].image01)
