"""Multi-label losses on logits, masked where a label is unknown (NaN).

- ``weighted_bce``: the course notebook's class-frequency-weighted binary cross-entropy. Per label,
  positives are weighted by w_pos = freq_neg and negatives by w_neg = freq_pos, so both classes
  contribute equally; the loss is the mean over images of the sum over labels, with epsilon inside
  the logarithms as in the notebook.
- ``bce``: plain binary cross-entropy (mean over known labels).
- ``pos_weight_bce``: BCE with positives up-weighted by n_neg / n_pos per label.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cxrcore.hints import unknown_choice
from cxrcore.train.config import LOSSES  # the vocabulary lives with the other training choices


def weighted_bce_from_probs(
    probs: torch.Tensor,
    targets: torch.Tensor,
    w_pos: torch.Tensor,
    w_neg: torch.Tensor,
    epsilon: float = 1e-7,
) -> torch.Tensor:
    """The notebook's weighted loss: -mean_i sum_l [w_pos y log(p + eps) + w_neg (1 - y) log(1 - p + eps)].

    Labels that are NaN contribute nothing.
    """
    known = ~torch.isnan(targets)
    y = torch.nan_to_num(targets, nan=0.0)
    per = w_pos * y * torch.log(probs + epsilon) + w_neg * (1 - y) * torch.log(1 - probs + epsilon)
    return -(per * known).sum(dim=1).mean()


class MaskedLoss(torch.nn.Module):
    """A named loss over logits and NaN-masked targets, with per-label weights fixed at construction."""

    def __init__(self, name: str, freq_pos: Sequence[float] | torch.Tensor, epsilon: float = 1e-7) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(unknown_choice("loss", name, LOSSES))
        freq = torch.as_tensor(freq_pos, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
        self.name = name
        self.epsilon = epsilon
        self.register_buffer("w_pos", 1.0 - freq)  # freq_neg
        self.register_buffer("w_neg", freq)  # freq_pos
        self.register_buffer("pos_weight", (1.0 - freq) / freq)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss for a batch; targets may hold NaN for unknown labels."""
        logits = logits.float()
        if self.name == "weighted_bce":
            return weighted_bce_from_probs(
                torch.sigmoid(logits), targets, self.w_pos, self.w_neg, self.epsilon
            )
        known = ~torch.isnan(targets)
        y = torch.nan_to_num(targets, nan=0.0)
        pos_weight = self.pos_weight if self.name == "pos_weight_bce" else None
        per = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
        return (per * known).sum() / known.sum().clamp(min=1)
