"""The one label-compatibility check: which of a model's labels a dataset has, and which it lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cxrcore.labels import LabelFit, label_fit


@pytest.mark.parametrize(
    ("model", "dataset", "shared", "missing", "ok", "complete"),
    [
        (("Nodule", "Effusion"), ("Effusion", "Nodule", "Mass"), ("Nodule", "Effusion"), (), True, True),
        (
            ("Nodule", "Hernia", "Effusion"),
            ("Effusion", "Nodule"),
            ("Nodule", "Effusion"),
            ("Hernia",),
            True,
            False,
        ),
        (("Hernia",), ("Nodule", "Opacity"), (), ("Hernia",), False, False),
        (("Nodule",), (), (), ("Nodule",), False, False),
        ((), ("Nodule",), (), (), False, True),
        (
            ("Pleural Effusion",),
            ("Pleural_Effusion",),
            (),
            ("Pleural Effusion",),
            False,
            False,
        ),  # exact names
        (["B", "A"], {"A", "B"}, ("B", "A"), (), True, True),  # any iterables; the model's order is kept
    ],
)
def test_label_fit(
    model: tuple, dataset: tuple, shared: tuple, missing: tuple, ok: bool, complete: bool
) -> None:
    fit = label_fit(model, dataset)
    assert (fit.shared, fit.missing, fit.ok, fit.complete) == (shared, missing, ok, complete)
    assert set(fit.shared) | set(fit.missing) == set(model)


def test_label_fit_is_a_frozen_value() -> None:
    fit = label_fit(["A"], ["A"])
    assert fit == LabelFit(shared=("A",), missing=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.shared = ()  # type: ignore[misc]


def test_a_checkpoint_entry_fits_a_dataset_by_its_card_labels(tmp_path: Path) -> None:
    from cxrcore.models.catalog import CheckpointEntry

    entry = CheckpointEntry(tmp_path / "m.safetensors", "workspace", False, {"labels": ["Nodule", "Mass"]})
    assert entry.label_fit(["Mass", "Effusion"]) == LabelFit(shared=("Mass",), missing=("Nodule",))
    assert not entry.label_fit(["Effusion"]).ok
    assert not CheckpointEntry(tmp_path / "x.safetensors", "workspace", False, {}).label_fit(["A"]).ok
