"""Class-selective relevance mapping (CRM; Kim, Rajaraman & Antani, Diagnostics 2019).

A spatial element (l, m) of the last feature map is relevant when removing it (zeroing all its
channels) changes the output scores:

    CRM(l, m) = sum over ALL output nodes c of (S_c - S_c(l, m))^2

with S_c the logit of node c and S_c(l, m) the logit with element (l, m) removed. The per-label
variant keeps only the term of node c. For an average-pooled linear head the removal lowers the
pooled feature by f[:, l, m] / (h * w), so S_c - S_c(l, m) = w_c . f[:, l, m] / (h * w) and both
maps come in closed form from the forward pass that made the prediction. Any other head (for
example the custom CNN's dense layers) is run on a batch of copies of the feature map, copy i with
element i zeroed.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from cxrcore.explain.cam import class_activation_maps
from cxrcore.models.lock import model_guard
from cxrcore.models.registry import CXRModel

logger = logging.getLogger(__name__)

ZEROING_CHUNK = 64  # feature-map copies per head pass when CRM is computed by zeroing


def score_drops(model: CXRModel, features: Tensor) -> Tensor:
    """S_c - S_c(l, m) for every output node c and element (l, m) of one image, shape (n_labels, h, w).

    ``features`` is the (1, C, h, w) output of ``model.forward_features``. Closed form for
    average-pooled heads, batched zeroing through ``forward_head`` otherwise.
    """
    if features.ndim != 4 or features.shape[0] != 1:
        raise ValueError(f"CRM expects one image's feature map (1, C, h, w), got {tuple(features.shape)}")
    h, w = features.shape[-2:]
    with torch.no_grad():
        if model.spec.pooling == "avg":
            return class_activation_maps(model, features) / (h * w)
        return _score_drops_by_zeroing(model, features)


def _score_drops_by_zeroing(model: CXRModel, features: Tensor) -> Tensor:
    """S_c - S_c(l, m) by really zeroing each element and re-running the head, in chunks of copies."""
    h, w = features.shape[-2:]
    n = h * w
    with model_guard(model):  # eval mode: dropout in the head must not perturb the scores
        base = model.forward_head(features)[0]
        drops = []
        for start in range(0, n, ZEROING_CHUNK):
            positions = torch.arange(start, min(start + ZEROING_CHUNK, n), device=features.device)
            keep = torch.ones(len(positions), n, dtype=features.dtype, device=features.device)
            keep[torch.arange(len(positions)), positions] = 0
            zeroed = features * keep.view(-1, 1, h, w)
            drops.append(base - model.forward_head(zeroed))
    return torch.cat(drops).T.reshape(-1, h, w)


def crm_maps(model: CXRModel, features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-label CRM (n_labels, h, w) and CRM summed over all output nodes (h, w), at feature resolution."""
    per_label = score_drops(model, features).square()
    return per_label, per_label.sum(0)
