"""Tests of the synthetic chest-X-ray phantoms and the phantom dataset writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import cxrcore.data.phantoms as phantoms
from cxrcore.data.index import validate_boxes, validate_index
from cxrcore.data.phantom_anatomy import heart_mask, lung_masks, make_frame
from cxrcore.data.phantoms import Lesion, PhantomDataset, PhantomSpec, render_phantom, write_phantom_dataset
from cxrcore.labels import PHANTOM_LABELS

LABEL_HEADER = ["image_id", "path", "patient_id", "view", "sex", "age", "Nodule", "Opacity", "Effusion"]
BOX_HEADER = ["image_id", "label", "x", "y", "w", "h"]


def _render(seed: int, size: int = 96, findings: tuple[str, ...] = ()) -> tuple[np.ndarray, list[Lesion]]:
    return render_phantom(np.random.default_rng(seed), size, findings)


def _box_pixels(image: np.ndarray, lesion: Lesion) -> np.ndarray:
    x, y, w, h = (int(v) for v in (lesion.x, lesion.y, lesion.w, lesion.h))
    return image[y : y + h, x : x + w]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> PhantomDataset:
    """A small phantom dataset shared by the writer tests."""
    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n_images=40, size=64, seed=3)


def test_render_is_deterministic_by_seed() -> None:
    first, lesions_a = _render(7, findings=PHANTOM_LABELS)
    again, lesions_b = _render(7, findings=PHANTOM_LABELS)
    other, _ = _render(8, findings=PHANTOM_LABELS)
    assert np.array_equal(first, again)
    assert lesions_a == lesions_b
    assert np.abs(first - other).mean() > 0.01


@pytest.mark.parametrize("size", [32, 64, 257, 512])
def test_render_shape_dtype_range_and_boxes_inside(size: int) -> None:
    image, lesions = _render(size, size=size, findings=PHANTOM_LABELS)
    assert image.shape == (size, size)
    assert image.dtype == np.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert {lesion.label for lesion in lesions} == set(PHANTOM_LABELS)
    for lesion in lesions:
        assert lesion.x >= 0 and lesion.y >= 0 and lesion.w >= 1 and lesion.h >= 1
        assert lesion.x + lesion.w <= size and lesion.y + lesion.h <= size


@pytest.mark.parametrize("seed", range(6))
def test_lungs_are_dark_and_the_heart_is_bright(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = PhantomSpec.sample(rng)
    image, _ = render_phantom(rng, 128, (), spec=spec)
    frame = make_frame(spec, 128)
    left, right = lung_masks(frame.u, frame.v, spec)
    heart = heart_mask(frame.u, frame.v, spec)
    assert image[left | right].mean() + 0.1 < image[heart].mean()


@pytest.mark.parametrize("label", PHANTOM_LABELS)
@pytest.mark.parametrize("seed", range(4))
def test_lesion_brightens_its_box_and_little_else(label: str, seed: int) -> None:
    with_finding, lesions = _render(seed, size=128, findings=(label,))
    without, no_lesions = _render(seed, size=128)
    assert no_lesions == []
    assert lesions and all(lesion.label == label for lesion in lesions)
    inside = np.zeros(with_finding.shape, bool)
    for lesion in lesions:
        assert _box_pixels(with_finding, lesion).mean() > _box_pixels(without, lesion).mean() + 0.002
        inside[int(lesion.y) : int(lesion.y + lesion.h), int(lesion.x) : int(lesion.x + lesion.w)] = True
    change = np.abs(with_finding - without)
    assert change[inside].sum() > 0.9 * change.sum()


def test_nodule_size_stays_within_its_range() -> None:
    # Radius 4-8% of the image (times the anatomy's scale): box diameters of about 7-18%.
    diameters = [max(n.w, n.h) / 256 for s in range(12) for n in _render(s, 256, ("Nodule",))[1]]
    assert min(diameters) > 0.06 and max(diameters) < 0.18


def test_spec_fixes_anatomy_and_followup_keeps_it() -> None:
    spec = PhantomSpec.sample(np.random.default_rng(1))
    later = spec.followup(np.random.default_rng(2))
    anatomy = ("lung_width", "lung_height", "heart_width", "dome_left", "rib_spacing", "texture_seed")
    assert all(getattr(later, name) == getattr(spec, name) for name in anatomy)
    assert later.exposure != spec.exposure and abs(later.rotation - spec.rotation) < 3.5
    same_a, _ = render_phantom(np.random.default_rng(5), 64, (), spec=spec)
    same_b, _ = render_phantom(np.random.default_rng(5), 64, (), spec=spec)
    moved, _ = render_phantom(np.random.default_rng(5), 64, (), spec=dataclasses.replace(spec, shift_x=0.2))
    assert np.array_equal(same_a, same_b) and not np.array_equal(same_a, moved)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 16}, "size must be an integer >= 32; got 16"),
        ({"findings": ("Nodules",)}, "did you mean 'Nodule'"),
        ({"findings": ("Mass",)}, "valid options: Nodule, Opacity, Effusion"),
    ],
)
def test_render_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_phantom(np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prevalence": {"Nodule": 1.5}}, "prevalence of 'Nodule' must lie in"),
        ({"prevalence": {"Pneumonia": 0.1}}, "unknown phantom finding 'Pneumonia'"),
        ({"n_images": 0}, "n_images must be at least 1"),
        ({"images_per_patient": (3, 1)}, "images_per_patient must be"),
    ],
)
def test_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_phantom_dataset(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "labels.csv").exists()


def test_writer_tables_follow_the_contract(dataset: PhantomDataset) -> None:
    labels = pd.read_csv(dataset.labels_csv)
    boxes = pd.read_csv(dataset.boxes_csv)
    assert list(labels.columns) == LABEL_HEADER and list(boxes.columns) == BOX_HEADER
    assert len(labels) == dataset.n_images == 40 and dataset.labels == PHANTOM_LABELS
    assert labels["image_id"].str.fullmatch(r"ph\d{5}_\d{3}").all()
    assert set(labels["view"]) <= {"PA", "AP"} and set(labels["sex"]) <= {"M", "F"}
    assert labels["age"].dtype.kind == "i"
    for label in PHANTOM_LABELS:
        assert set(labels[label].unique()) <= {0.0, 1.0}
    assert set(boxes["image_id"]) <= set(labels["image_id"])
    assert labels["patient_id"].nunique() < len(labels)
    index = validate_index(labels)
    assert len(validate_boxes(boxes, index)) == len(boxes)
    assert (dataset.root / "README.txt").read_text().startswith("Synthetic chest-X-ray phantoms")
    assert not list(dataset.root.rglob("*.tmp"))


def test_writer_images_exist_and_boxes_match_labels(dataset: PhantomDataset) -> None:
    labels = pd.read_csv(dataset.labels_csv)
    boxes = pd.read_csv(dataset.boxes_csv)
    for row in labels.itertuples():
        with Image.open(dataset.root / row.path) as png:
            assert png.mode == "L" and png.size == (64, 64)
        for label in PHANTOM_LABELS:
            n_boxes = int(((boxes["image_id"] == row.image_id) & (boxes["label"] == label)).sum())
            assert (n_boxes > 0) == (getattr(row, label) == 1.0), (row.image_id, label)
    assert ((boxes["x"] + boxes["w"] <= 64) & (boxes["y"] + boxes["h"] <= 64)).all()
    assert ((boxes[["x", "y"]] >= 0).all(axis=1) & (boxes["w"] > 0)).all()


def test_writer_is_byte_identical_by_seed(tmp_path: Path) -> None:
    a = write_phantom_dataset(tmp_path / "a", n_images=8, size=48, seed=11)
    b = write_phantom_dataset(tmp_path / "b", n_images=8, size=48, seed=11)
    c = write_phantom_dataset(tmp_path / "c", n_images=8, size=48, seed=12)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert len(files) == 8 + 3
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files)
    assert (a.root / "images" / "ph00001_000.png").read_bytes() != (
        c.root / "images" / "ph00001_000.png"
    ).read_bytes()


def test_image_does_not_depend_on_dataset_length(tmp_path: Path) -> None:
    short = write_phantom_dataset(tmp_path / "short", n_images=4, size=40, seed=5)
    long = write_phantom_dataset(tmp_path / "long", n_images=11, size=40, seed=5)
    short_rows = pd.read_csv(short.labels_csv)
    assert short_rows.equals(pd.read_csv(long.labels_csv).head(4))
    for path in short_rows["path"]:
        assert (short.root / path).read_bytes() == (long.root / path).read_bytes()


@pytest.mark.parametrize(("per_patient", "patients"), [((1, 1), 6), ((2, 2), 3), ((3, 3), 2)])
def test_images_per_patient(tmp_path: Path, per_patient: tuple[int, int], patients: int) -> None:
    result = write_phantom_dataset(tmp_path, n_images=6, size=32, images_per_patient=per_patient)
    assert pd.read_csv(result.labels_csv)["patient_id"].nunique() == patients


def test_prevalence_is_honoured(tmp_path: Path) -> None:
    result = write_phantom_dataset(tmp_path / "default", n_images=400, size=32, seed=1)
    rates = pd.read_csv(result.labels_csv)[list(PHANTOM_LABELS)].mean()
    for label, expected in phantoms.DEFAULT_PREVALENCE.items():
        assert abs(rates[label] - expected) < 0.08, (label, rates[label])
    both = pd.read_csv(result.labels_csv)[list(PHANTOM_LABELS)].sum(axis=1)
    assert (both >= 2).any() and (both == 0).any()
    custom = write_phantom_dataset(
        tmp_path / "custom", n_images=20, size=32, prevalence={"Nodule": 0, "Effusion": 1}
    )
    table = pd.read_csv(custom.labels_csv)
    assert (table["Nodule"] == 0).all() and (table["Effusion"] == 1).all()


def test_crash_while_writing_images_leaves_no_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    real_write = phantoms._write_png

    def failing_write(path: Path, image: np.ndarray) -> None:
        if len(written) == 3:
            raise OSError("disk full")
        real_write(path, image)
        written.append(path)

    monkeypatch.setattr(phantoms, "_write_png", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_phantom_dataset(tmp_path, n_images=6, size=32)
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    assert not (tmp_path / "labels.csv").exists() and not (tmp_path / "boxes.csv").exists()


def test_findings_are_learnable_but_not_given_away_by_brightness() -> None:
    rng = np.random.default_rng(0)
    present = rng.random((300, len(PHANTOM_LABELS))) < 0.5
    features = []
    for i, row in enumerate(present):
        findings = [label for label, on in zip(PHANTOM_LABELS, row, strict=True) if on]
        image, _ = render_phantom(np.random.default_rng(1000 + i), 64, findings)
        features.append(cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA).ravel())
    x = np.asarray(features)
    held_out = []
    for j in range(len(PHANTOM_LABELS)):
        model = LogisticRegression(max_iter=2000).fit(x[:200], present[:200, j])
        held_out.append(roc_auc_score(present[200:, j], model.decision_function(x[200:])))
        mean_auc = roc_auc_score(present[:, j], x.mean(axis=1))
        assert max(mean_auc, 1 - mean_auc) < 0.95
    assert max(held_out) > 0.6
