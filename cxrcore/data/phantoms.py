"""Synthetic chest-X-ray phantoms with lesions at known boxes, and a writer for whole phantom datasets.

A phantom is a float32 grey image in [0, 1] (bright = dense) of a thorax with lungs, heart, ribs,
clavicles and spine, varied in placement, exposure, noise and device-like objects; findings from
:data:`cxrcore.labels.PHANTOM_LABELS` are drawn into it at known boxes. The images are synthetic:
they exercise the pipeline (tests, the offline demo) and are no substitute for real radiographs.

Example::

    img, lesions = render_phantom(np.random.default_rng(0), size=256, findings=("Nodule",))
    dataset = write_phantom_dataset("phantoms", n_images=120, seed=0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrcore.atomic import write_bytes_atomic
from cxrcore.data.phantom_anatomy import PhantomSpec, anatomy_density, burn_marker, device_mask, make_frame
from cxrcore.data.phantom_lesions import Lesion, draw_lesions
from cxrcore.hints import unknown_choice
from cxrcore.labels import PHANTOM_LABELS

__all__ = [
    "DEFAULT_PREVALENCE",
    "MIN_SIZE",
    "Lesion",
    "PhantomDataset",
    "PhantomSpec",
    "render_phantom",
    "write_phantom_dataset",
]

logger = logging.getLogger(__name__)

MIN_SIZE = 32
DEFAULT_PREVALENCE: dict[str, float] = {"Nodule": 0.3, "Opacity": 0.25, "Effusion": 0.2}
LABEL_COLUMNS: tuple[str, ...] = ("image_id", "path", "patient_id", "view", "sex", "age", *PHANTOM_LABELS)
BOX_COLUMNS: tuple[str, ...] = ("image_id", "label", "x", "y", "w", "h")
_COMPRESSION = 1 - np.exp(-2.0)  # film-like response: dense regions compress towards white


@dataclass(frozen=True)
class PhantomDataset:
    """Where a phantom dataset was written and what it holds."""

    root: Path
    labels_csv: Path
    boxes_csv: Path
    n_images: int
    labels: tuple[str, ...]


def render_phantom(
    rng: np.random.Generator,
    size: int = 256,
    findings: Sequence[str] = (),
    spec: PhantomSpec | None = None,
) -> tuple[np.ndarray, list[Lesion]]:
    """Render one phantom and return the image (float32, size x size, in [0, 1]) and its lesions.

    The generator's draws do not depend on ``findings``: the same seed with and without a finding
    gives the same anatomy, exposure, noise and devices, differing only where the lesions are.
    ``spec`` fixes the patient and acquisition (follow-up images); by default one is drawn from ``rng``.
    """
    _check_size(size)
    wanted = _check_findings(findings)
    seeds = rng.integers(0, 2**63 - 1, size=2 + len(PHANTOM_LABELS))
    if spec is None:
        spec = PhantomSpec.sample(np.random.default_rng(seeds[0]))
    frame = make_frame(spec, size)
    density = anatomy_density(frame)
    lesions: list[Lesion] = []
    for position, label in enumerate(PHANTOM_LABELS):
        if label in wanted:
            for lesion, field in draw_lesions(label, frame, np.random.default_rng(seeds[2 + position])):
                density += field
                lesions.append(lesion)
    image = _expose(density, spec, np.random.default_rng(seeds[1]))
    image = np.maximum(image, 0.95 * frame.blur(device_mask(spec, size), 0.0015))
    return burn_marker(image, spec).astype(np.float32), lesions


def _expose(density: np.ndarray, spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    """Map density to grey values (film response, exposure, gamma) and add quantum and low-frequency noise."""
    size = density.shape[0]
    grey = (1.0 - np.exp(-2.0 * np.maximum(density, 0.0))) / _COMPRESSION
    grey = np.clip(spec.offset + spec.exposure * grey, 0.0, 1.0) ** spec.gamma
    grey += spec.noise * rng.standard_normal((size, size), dtype=np.float32)
    coarse = rng.standard_normal((4, 4)).astype(np.float32)
    grey += 0.025 * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(grey, 0.0, 1.0)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SIZE:
        raise ValueError(f"phantom size must be an integer >= {MIN_SIZE}; got {size!r}")


def _check_findings(findings: Sequence[str]) -> set[str]:
    """The requested findings as a set; unknown names raise with the valid options and a close match."""
    if isinstance(findings, str):
        findings = (findings,)
    for name in findings:
        if name not in PHANTOM_LABELS:
            raise ValueError(unknown_choice("phantom finding", name, PHANTOM_LABELS, n=1))
    return set(findings)


def _check_prevalence(prevalence: Mapping[str, float] | None) -> dict[str, float]:
    """Default prevalences updated with the given ones, each checked to be a probability."""
    out = dict(DEFAULT_PREVALENCE)
    for name, value in (prevalence or {}).items():
        _check_findings((name,))
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"prevalence of {name!r} must lie in [0, 1]; got {value!r}")
        out[name] = float(value)
    return out


def _check_writer_args(n_images: int, seed: int, images_per_patient: tuple[int, int]) -> None:
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1; got {n_images!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    low, high = images_per_patient
    if not 1 <= low <= high:
        raise ValueError(
            f"images_per_patient must be (low, high) with 1 <= low <= high; got {images_per_patient!r}"
        )


def write_phantom_dataset(
    out_dir: str | Path,
    *,
    n_images: int = 120,
    size: int = 256,
    seed: int = 0,
    prevalence: Mapping[str, float] | None = None,
    images_per_patient: tuple[int, int] = (1, 3),
) -> PhantomDataset:
    """Write phantom PNGs plus labels.csv, boxes.csv and README.txt into ``out_dir``.

    Patients get ``images_per_patient`` films (the same anatomy, re-positioned and re-exposed, each
    with its own findings); each finding is present independently with its prevalence (labels not
    named in ``prevalence`` keep :data:`DEFAULT_PREVALENCE`). Image k depends only on the seed and
    its patient and follow-up numbers. Images are written first and the tables last, each replaced
    atomically, so a crash never leaves a table that names missing images.
    """
    _check_size(size)
    _check_writer_args(n_images, seed, images_per_patient)
    rates = _check_prevalence(prevalence)
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    boxes: list[dict[str, object]] = []
    patient = 0
    while len(rows) < n_images:
        patient += 1
        for row, image, lesions in _patient_images(patient, seed, size, rates, images_per_patient):
            if len(rows) == n_images:
                break
            _write_png(root / str(row["path"]), image)
            rows.append(row)
            boxes.extend({"image_id": row["image_id"], **vars(lesion)} for lesion in lesions)
    labels_frame = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    boxes_frame = pd.DataFrame(boxes, columns=list(BOX_COLUMNS))
    _write_text(root / "README.txt", _readme(labels_frame, boxes_frame, size, seed, rates))
    _write_text(root / "boxes.csv", boxes_frame.to_csv(index=False, lineterminator="\n"))
    _write_text(root / "labels.csv", labels_frame.to_csv(index=False, lineterminator="\n"))
    logger.info(
        "wrote %d phantom images (%d px) to %s in %.2f s", n_images, size, root, time.perf_counter() - started
    )
    return PhantomDataset(root, root / "labels.csv", root / "boxes.csv", n_images, PHANTOM_LABELS)


def _patient_images(
    patient: int, seed: int, size: int, rates: Mapping[str, float], images_per_patient: tuple[int, int]
) -> list[tuple[dict[str, object], np.ndarray, list[Lesion]]]:
    """Render every film of one patient; the generators hang off (seed, patient, film) only."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(patient,)))
    count = int(rng.integers(images_per_patient[0], images_per_patient[1] + 1))
    anatomy = PhantomSpec.sample(rng)
    sex, age = str(rng.choice(("M", "F"))), int(rng.integers(18, 90))
    out = []
    for film in range(count):
        film_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(patient, film + 1)))
        present = {label: bool(film_rng.random() < rates[label]) for label in PHANTOM_LABELS}
        view = "AP" if film_rng.random() < 0.3 else "PA"
        spec = anatomy if film == 0 else anatomy.followup(film_rng)
        image, lesions = render_phantom(film_rng, size, [k for k, v in present.items() if v], spec=spec)
        image_id = f"ph{patient:05d}_{film:03d}"
        row: dict[str, object] = {
            "image_id": image_id,
            "path": f"images/{image_id}.png",
            "patient_id": f"ph{patient:05d}",
            "view": view,
            "sex": sex,
            "age": age + film // 2,
            **{label: float(present[label]) for label in PHANTOM_LABELS},
        }
        out.append((row, image, lesions))
    return out


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write an 8-bit grey PNG via a temporary file, so a reader never sees half an image."""
    ok, encoded = cv2.imencode(".png", np.round(image * 255.0).astype(np.uint8))
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    write_bytes_atomic(path, encoded.tobytes())


def _write_text(path: Path, text: str) -> None:
    """Write a text file via a temporary file and an atomic rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _readme(
    labels: pd.DataFrame, boxes: pd.DataFrame, size: int, seed: int, rates: Mapping[str, float]
) -> str:
    """A short description of a written phantom dataset."""
    counts = ", ".join(f"{label} {int(labels[label].sum())}" for label in PHANTOM_LABELS)
    wanted = ", ".join(f"{label} {rates[label]:.2f}" for label in PHANTOM_LABELS)
    return (
        "Synthetic chest-X-ray phantoms (not real patients).\n\n"
        f"{len(labels)} images of {labels['patient_id'].nunique()} patients, {size} x {size} px, "
        f"8-bit grey PNG, seed {seed}.\n"
        f"Positive images: {counts} (prevalence asked: {wanted}); {len(boxes)} boxes.\n\n"
        "labels.csv: image_id,path,patient_id,view,sex,age,Nodule,Opacity,Effusion "
        "(path relative to this folder; labels 1.0 present, 0.0 absent).\n"
        "boxes.csv: image_id,label,x,y,w,h (pixels of the PNG; x, y = top-left corner).\n"
        "Image ids are ph<patient>_<follow-up>: films of one patient share anatomy, so split by patient.\n"
    )
