"""Lesions of the synthetic chest phantoms: nodules, diffuse opacities and effusion-like blunting.

Each lesion is an additive density field on the phantom's pixel grid; its box is the tight bounding
box of the pixels where that field exceeds a tenth of its peak. Contrast and size vary per lesion, so
some lesions are obvious and some are hard to see under ribs, vessels and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrcore.data.phantom_anatomy import LUNG_CENTER_V, Frame, lung_masks
from cxrcore.labels import PHANTOM_LABELS

BOX_THRESHOLD = 0.1  # a box covers the pixels where the lesion adds more than this fraction of its peak


@dataclass(frozen=True)
class Lesion:
    """One drawn finding: its label and tight box in pixel coordinates (x, y = top-left corner)."""

    label: str
    x: float
    y: float
    w: float
    h: float


def draw_lesions(label: str, frame: Frame, rng: np.random.Generator) -> list[tuple[Lesion, np.ndarray]]:
    """Draw one finding (one or two nodules, one opacity or one effusion) and return boxes and fields."""
    drawers = {"Nodule": _nodules, "Opacity": _opacity, "Effusion": _effusion}
    if label not in drawers:
        raise ValueError(f"unknown phantom finding {label!r}; valid options: {', '.join(PHANTOM_LABELS)}")
    fields = drawers[label](frame, rng)
    return [(_box(label, field), field) for field in fields]


def _box(label: str, field: np.ndarray) -> Lesion:
    """The tight box of the pixels where a lesion field exceeds BOX_THRESHOLD of its peak."""
    mask = field > BOX_THRESHOLD * float(field.max())
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise RuntimeError(f"{label} lesion has an empty field")
    return Lesion(
        label,
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    )


def _point_in_lung(frame: Frame, side: int, margin: float, rng: np.random.Generator) -> tuple[float, float]:
    """A random point of one lung (side -1 = image left) at least ``margin`` inside its edge."""
    spec = frame.spec
    u = side * spec.lung_offset + rng.uniform(-1.0, 1.0, 64) * spec.lung_width
    v = LUNG_CENTER_V + rng.uniform(-0.8, 1.0, 64) * spec.lung_height
    ok = np.ones(64, bool)
    for du, dv in ((0, 0), (margin, 0), (-margin, 0), (0, margin), (0, -margin)):
        ok &= lung_masks(u + du, v + dv, spec)[0 if side < 0 else 1]
    if not ok.any():  # tiny or unusual lungs: fall back to the middle of the lung
        return side * spec.lung_offset, LUNG_CENTER_V + 0.1 * spec.lung_height
    first = int(np.argmax(ok))
    return float(u[first]), float(v[first])


def _nodules(frame: Frame, rng: np.random.Generator) -> list[np.ndarray]:
    """One or two small round soft-edged blobs inside the lungs (radius 4-8% of the image size)."""
    count = 2 if rng.random() < 0.25 else 1
    fields = []
    for _ in range(count):
        radius = 2.0 * rng.uniform(0.04, 0.08) / frame.spec.scale
        aspect = rng.uniform(0.85, 1.15)
        centre_u, centre_v = _point_in_lung(frame, int(rng.choice((-1, 1))), 0.7 * radius, rng)
        amplitude = rng.uniform(0.25, 0.55)
        d2 = ((frame.u - centre_u) * aspect) ** 2 + ((frame.v - centre_v) / aspect) ** 2
        fields.append((amplitude * np.exp(-2.3 * (d2 / radius**2) ** 2)).astype(np.float32))
    return fields


def _opacity(frame: Frame, rng: np.random.Generator) -> list[np.ndarray]:
    """A larger patchy brightening (15-30% of the image size) confined to one lung."""
    side = int(rng.choice((-1, 1)))
    radius_u, radius_v = rng.uniform(0.15, 0.3, 2) / frame.spec.scale
    centre_u, centre_v = _point_in_lung(frame, side, 0.3 * min(radius_u, radius_v), rng)
    cells = rng.standard_normal((14, 14)).astype(np.float32)
    patches = frame.sample_field(cv2.GaussianBlur(cells, (0, 0), 0.9, borderType=cv2.BORDER_REFLECT))
    patches = np.clip(0.7 + 1.0 * patches, 0.1, 1.6)
    envelope = np.exp(
        -2.3 * (((frame.u - centre_u) / radius_u) ** 2 + ((frame.v - centre_v) / radius_v) ** 2)
    )
    lung = frame.lungs[0 if side < 0 else 1]
    field = rng.uniform(0.3, 0.55) * envelope * patches * lung
    return [frame.blur(field.astype(np.float32), 0.004)]


def _effusion(frame: Frame, rng: np.random.Generator) -> list[np.ndarray]:
    """Fluid in one costophrenic angle: a bright fill under a meniscus that rises towards the chest wall."""
    spec = frame.spec
    side = int(rng.choice((-1, 1)))
    depth = rng.uniform(0.08, 0.3)
    dome = spec.dome_right if side < 0 else spec.dome_left
    base = dome + 0.1 - depth  # medial fluid level; the lung reaches about dome + 0.1 at its lateral edge
    inner = spec.lung_offset - spec.lung_width
    lateral = np.clip((side * frame.u - inner) / (2 * spec.lung_width), 0.0, 1.0)
    level = base - 0.6 * depth * lateral**2
    below = np.clip((frame.v - level) / 0.04 + 0.5, 0.0, 1.0)
    thickening = 0.7 + 0.3 * np.clip((frame.v - level) / 0.12, 0.0, 1.0)
    lung = lung_masks(frame.u, frame.v, spec)[0 if side < 0 else 1]
    field = rng.uniform(0.35, 0.6) * below * thickening * lung
    return [frame.blur(field.astype(np.float32), 0.008)]
