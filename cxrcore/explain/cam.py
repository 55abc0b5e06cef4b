"""Class activation maps: the closed-form CAM of average-pooled heads and the Grad-CAM family.

The Grad-CAM family runs through ``pytorch_grad_cam`` (grad-cam 1.5.7): one small class per method
over ``CamMethod``, which owns the hooks, the batching and their release. Targets are always
explicit, one per image, on LOGITS (``ClassifierOutputTarget``): the package's "argmax when no
target" default means nothing for a multi-label sigmoid head. Several labels of one image are
explained in one pass by repeating the image, one label per copy. Gradients are taken with
``torch.autograd.grad`` with respect to the input copy only, so no ``.grad`` is ever written to the
model's parameters and ``requires_grad`` is never changed.

Every method returns RAW maps at the layer's resolution, before ReLU, straight from the package's
``get_cam_image``; resizing and normalisation happen once, in ``cxrcore.explain.engine``.

A model object may be shared by many threads (the dashboard caches one per checkpoint). Anything
that registers hooks, swaps layers or changes train/eval mode runs under ``model_guard``
(``cxrcore.models.lock``): the model's own re-entrant lock, every module in eval mode, each module's
previous mode restored after.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from cxrcore.hints import did_you_mean, unknown_choice
from cxrcore.models.lock import model_guard
from cxrcore.models.registry import CXRModel

logger = logging.getLogger(__name__)

LABEL_CHUNK = 16  # image copies (one label each) per forward/backward pass
SCORECAM_BATCH = 64  # masked images per forward pass in Score-CAM
ABLATION_BATCH = 32  # ablated channels per forward pass in Ablation-CAM


class ExplainError(ValueError):
    """An explanation request names an unknown method, label or layer, or gives an unusable image."""


def resolve_layer(model: CXRModel, layer: str | None = None) -> tuple[str, nn.Module]:
    """The dotted name and module of ``layer`` (default ``spec.cam_layer``); ``"net."`` may be left out.

    Raises:
        ExplainError: no module has that name (the message lists close matches).
    """
    name = model.spec.cam_layer if layer is None else str(layer)
    modules = dict(model.named_modules())
    for candidate in (name, f"net.{name}"):
        if candidate and candidate in modules:
            return candidate, modules[candidate]
    names = [n for n in modules if n]
    raise ExplainError(
        f"unknown layer {name!r} in {model.spec.architecture}{did_you_mean(name, names, n=5)} "
        f"(layers are dotted module names such as {model.spec.cam_layer!r})"
    )


def class_activation_maps(model: CXRModel, features: Tensor) -> Tensor:
    """CAM of every label from one image's last feature map: ``sum_k w[c, k] * f[k]``, shape (n_labels, h, w).

    Valid for average-pooled heads only (``spec.pooling == "avg"``), where the spatial mean of the
    map of label c plus the classifier bias equals the logit of c.
    """
    if model.spec.pooling != "avg":
        raise ExplainError(
            f"closed-form CAM needs an average-pooled head; {model.spec.architecture} has "
            f"pooling {model.spec.pooling!r} (use a gradient method such as 'gradcam')"
        )
    weight = model.classifier_module().weight.detach()
    return torch.einsum("ck,khw->chw", weight.to(features.dtype), features[0])


class CamMethod:
    """One Grad-CAM-family method of ``pytorch_grad_cam`` at one layer of a model.

    Calling it with an image (1, C, H, W) and label indices returns raw maps (n, h, w) at the layer's
    resolution. Hooks live only inside the call and are released in ``finally``.
    """

    name: ClassVar[str]
    package_class: ClassVar[type[BaseCAM]]
    uses_gradients: ClassVar[bool] = True
    class_specific: ClassVar[bool] = True

    def __init__(self, model: CXRModel, layer: str | None = None) -> None:
        self.model = model
        self.layer, self.module = resolve_layer(model, layer)

    def __call__(self, x: Tensor, label_indices: Sequence[int]) -> np.ndarray:
        """Raw maps, one per label index, for a single normalised image ``x`` of shape (1, C, H, W)."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise ExplainError(f"{self.name} explains one image (1, C, H, W) at a time, got {tuple(x.shape)}")
        indices = [int(i) for i in label_indices]
        if not indices:
            return np.zeros((0, 0, 0), dtype=np.float32)
        with model_guard(self.model):
            if not self.class_specific:  # one map serves every label
                single = self._run(x, indices[:1])
                return np.repeat(single, len(indices), axis=0)
            chunks = [
                self._run(x, indices[start : start + LABEL_CHUNK])
                for start in range(0, len(indices), LABEL_CHUNK)
            ]
        return np.concatenate(chunks, axis=0)

    def _make(self) -> BaseCAM:
        """The package's CAM object for this model and layer (registers its hooks)."""
        return self.package_class(self.model, target_layers=[self.module])

    def _run(self, x: Tensor, indices: list[int]) -> np.ndarray:
        """One pass over copies of ``x``, one label per copy; hooks are released whatever happens."""
        cam = self._make()
        try:
            batch = x.detach().expand(len(indices), -1, -1, -1).clone()
            targets = [ClassifierOutputTarget(i) for i in indices]
            if self.uses_gradients:
                batch.requires_grad_(True)
                with torch.enable_grad():
                    outputs = cam.activations_and_grads(batch)
                    score = torch.stack([t(o) for t, o in zip(targets, outputs, strict=True)]).sum()
                    torch.autograd.grad(score, batch)
            else:
                with torch.no_grad():
                    cam.activations_and_grads(batch)
            activations, grads = self._captured(cam)
            cam.activations_and_grads.release()  # the method's own extra passes run without our hooks
            raw = cam.get_cam_image(batch.detach(), self.module, targets, activations, grads, False)
            return np.asarray(raw, dtype=np.float32)
        finally:
            self._release(cam)

    def _release(self, cam: BaseCAM) -> None:
        """Remove every hook the package registered on the model."""
        cam.activations_and_grads.release()

    def _captured(self, cam: BaseCAM) -> tuple[np.ndarray, np.ndarray | None]:
        """The activations (and gradients) the hooks recorded, checked to be one (B, C, h, w) map each."""
        recorded = cam.activations_and_grads
        if not recorded.activations:
            raise ExplainError(f"layer {self.layer!r} did not run in the forward pass")
        activations = recorded.activations[0].numpy()
        if activations.ndim != 4:
            raise ExplainError(
                f"layer {self.layer!r} outputs shape {tuple(activations.shape)}, not a (B, C, h, w) "
                f"feature map; choose a convolutional layer such as {self.model.spec.cam_layer!r}"
            )
        if not self.uses_gradients:
            return activations, None
        if not recorded.gradients:
            raise ExplainError(f"no gradient reached layer {self.layer!r}; it does not feed the logits")
        return activations, recorded.gradients[0].numpy()


METHODS: dict[str, type[CamMethod]] = {}


def register_method(cls: type[CamMethod]) -> type[CamMethod]:
    """Class decorator adding a method to ``METHODS`` under its ``name``."""
    if cls.name in METHODS:
        raise ValueError(f"explanation method {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[CamMethod]:
    """The registered method class called ``name``; ExplainError with close matches otherwise."""
    if name in METHODS:
        return METHODS[name]
    raise ExplainError(unknown_choice("method", name, METHODS))


@register_method
class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their spatially averaged gradient."""

    name = "gradcam"
    package_class = GradCAM


@register_method
class GradCamPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018): higher-order weighting of positive gradients."""

    name = "gradcam++"
    package_class = GradCAMPlusPlus


@register_method
class XGradCam(CamMethod):
    """XGrad-CAM (Fu et al. 2020): gradients weighted by the normalised activations."""

    name = "xgradcam"
    package_class = XGradCAM


@register_method
class HiResCam(CamMethod):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient times activation, summed over channels."""

    name = "hirescam"
    package_class = HiResCAM


@register_method
class LayerCam(CamMethod):
    """LayerCAM (Jiang et al. 2021): element-wise positive gradient times activation."""

    name = "layercam"
    package_class = LayerCAM


@register_method
class EigenCam(CamMethod):
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the activations, label-agnostic."""

    name = "eigencam"
    package_class = EigenCAM
    uses_gradients = False
    class_specific = False


@register_method
class ScoreCam(CamMethod):
    """Score-CAM (Wang et al. 2020): channels weighted by the logit of the image masked by each channel."""

    name = "scorecam"
    package_class = ScoreCAM
    uses_gradients = False

    def _make(self) -> BaseCAM:
        cam = ScoreCAM(self.model, target_layers=[self.module])
        cam.batch_size = SCORECAM_BATCH
        return cam


@register_method
class AblationCam(CamMethod):
    """Ablation-CAM (Desai & Ramaswamy 2020): channels weighted by the logit drop when each is zeroed."""

    name = "ablationcam"
    package_class = AblationCAM
    uses_gradients = False

    def _make(self) -> BaseCAM:
        # A fresh ablation layer per call: the package's default instance is shared by every caller.
        return AblationCAM(
            self.model, target_layers=[self.module], ablation_layer=AblationLayer(), batch_size=ABLATION_BATCH
        )

    def _release(self, cam: BaseCAM) -> None:
        """Remove the hooks and put back the layer the package swaps out for its ablation layer."""
        super()._release(cam)
        if replace_layer_recursive(self.model, cam.ablation_layer, self.module):
            logger.warning("restored layer %s after an interrupted Ablation-CAM pass", self.layer)
