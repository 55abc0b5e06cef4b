from __future__ import annotations

import math

import pytest
import torch

from cxrcore.train.losses import MaskedLoss, weighted_bce_from_probs


@pytest.mark.parametrize("p", [0.7, 0.3])
def test_weighted_loss_reproduces_the_course_notebook_check(p: float) -> None:
    y_true = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=torch.float32)
    w_p = torch.tensor([0.25, 0.25, 0.5])
    w_n = torch.tensor([0.75, 0.75, 0.5])
    preds = torch.full((4, 3), p)
    loss = weighted_bce_from_probs(preds, y_true, w_p, w_n, epsilon=1.0)
    # The notebook prints L = -0.4956203 for both prediction sets.
    assert loss.item() == pytest.approx(-0.4956203, abs=1e-6)


def test_weighted_loss_matches_the_formula_and_weights_from_frequencies() -> None:
    freq = torch.tensor([0.2, 0.5])
    loss = MaskedLoss("weighted_bce", freq, epsilon=0.0)
    assert torch.allclose(loss.w_pos, torch.tensor([0.8, 0.5])) and torch.allclose(loss.w_neg, freq)
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(logits)[0]
    expected = -(0.8 * math.log(p[0]) + 0.5 * math.log(1 - p[1]))
    assert loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["weighted_bce", "bce", "pos_weight_bce"])
def test_unknown_labels_contribute_nothing(name: str) -> None:
    loss = MaskedLoss(name, [0.3, 0.3])
    logits = torch.tensor([[0.5, -4.0], [1.0, 3.0]])
    known = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    masked = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    changed = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # differs only where masked is NaN
    assert torch.isfinite(loss(logits, masked))
    without_second = MaskedLoss(name, [0.3])(logits[:, :1], known[:, :1])
    if name == "weighted_bce":  # summed over labels: masking label 2 equals dropping it
        assert loss(logits, masked).item() == pytest.approx(without_second.item(), rel=1e-6)
    assert loss(logits, masked).item() != pytest.approx(loss(logits, changed).item())


def test_bce_equals_torch_and_pos_weight_upweights_positives() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain = MaskedLoss("bce", [0.25, 0.25])(logits, targets)
    assert plain.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).item()
    )
    weighted = MaskedLoss("pos_weight_bce", [0.25, 0.25])(logits, targets)
    assert weighted.item() > plain.item()
    with pytest.raises(ValueError, match="valid options: weighted_bce"):
        MaskedLoss("focal", [0.5])
