"""Anatomy of the synthetic chest phantoms: body, lungs, heart, ribs, spine and device-like objects.

Everything is drawn in an "anatomy frame" that spans [-1, 1] on both axes of a centred, upright chest:
``u`` grows to the image right (the patient's left on a PA film) and ``v`` grows downwards. A
:class:`PhantomSpec` places that frame in the image (shift, scale, rotation), so one spec renders the
same patient at any pixel size, and follow-up images of a patient share every anatomical parameter.
Densities are additive (bright = dense); :mod:`cxrcore.data.phantoms` maps them to grey values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

LUNG_CENTER_V = -0.08  # vertical centre of both lung ellipses
MEDIASTINUM = 0.085  # half-width of the mediastinum between the lungs
DOME_CURVE = 1.4  # how fast a hemidiaphragm falls from its top towards the costophrenic angle
MARKERS: tuple[str, ...] = ("R", "L", "")
_TEXTURE_CELLS = 48  # resolution of the lung-marking noise in the anatomy frame


@dataclass(frozen=True)
class PhantomSpec:
    """Per-patient anatomy plus per-image placement, exposure and device parameters of one phantom."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0
    rotation: float = 0.0  # degrees, positive = clockwise on the image
    body_width: float = 0.84
    lung_offset: float = 0.38  # |u| of each lung's centre
    lung_width: float = 0.30
    lung_height: float = 0.64
    dome_right: float = 0.30  # top of the patient's right hemidiaphragm (image left)
    dome_left: float = 0.34
    heart_x: float = 0.10
    heart_width: float = 0.27
    heart_height: float = 0.21
    rib_spacing: float = 0.125
    rib_phase: float = 0.0
    texture_seed: int = 0
    exposure: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    noise: float = 0.02
    wire: bool = False
    ecg_leads: int = 0
    marker: str = "R"
    marker_corner: int = 0
    device_seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> PhantomSpec:
        """Draw a random patient with a random acquisition."""
        anatomy = {
            "body_width": rng.uniform(0.78, 0.9),
            "lung_offset": rng.uniform(0.35, 0.4),
            "lung_width": rng.uniform(0.27, 0.32),
            "lung_height": rng.uniform(0.58, 0.68),
            "dome_right": rng.uniform(0.26, 0.34),
            "heart_x": rng.uniform(0.06, 0.14),
            "heart_width": rng.uniform(0.24, 0.32),
            "heart_height": rng.uniform(0.18, 0.24),
            "rib_spacing": rng.uniform(0.115, 0.14),
            "rib_phase": rng.uniform(0.0, 1.0),
            "texture_seed": int(rng.integers(0, 2**31)),
        }
        anatomy["dome_left"] = anatomy["dome_right"] + rng.uniform(0.0, 0.07)
        return cls(**anatomy).followup(rng, jitter=1.0)

    def followup(self, rng: np.random.Generator, jitter: float = 0.3) -> PhantomSpec:
        """The same patient on another film: placement jittered, exposure and devices drawn anew."""
        return dataclasses.replace(
            self,
            shift_x=self.shift_x * (1 - jitter) + jitter * rng.uniform(-0.06, 0.06),
            shift_y=self.shift_y * (1 - jitter) + jitter * rng.uniform(-0.06, 0.06),
            scale=self.scale * (1 - jitter) + jitter * rng.uniform(0.9, 1.06),
            rotation=self.rotation * (1 - jitter) + jitter * rng.uniform(-5.0, 5.0),
            exposure=rng.uniform(0.85, 1.15),
            offset=rng.uniform(-0.06, 0.08),
            gamma=rng.uniform(0.8, 1.25),
            noise=rng.uniform(0.008, 0.035),
            wire=bool(rng.random() < 0.25),
            ecg_leads=int(rng.choice(4, p=(0.6, 0.1, 0.15, 0.15))),
            marker=str(rng.choice(MARKERS)),
            marker_corner=int(rng.integers(0, 4)),
            device_seed=int(rng.integers(0, 2**31)),
        )


@dataclass(frozen=True)
class Frame:
    """A spec laid onto a pixel grid: anatomy coordinates of every pixel and the soft lung masks."""

    spec: PhantomSpec
    size: int
    u: np.ndarray
    v: np.ndarray
    lungs: tuple[np.ndarray, np.ndarray]  # soft masks of the image-left and image-right lung, float32

    def blur(self, image: np.ndarray, fraction: float) -> np.ndarray:
        """Gaussian blur with a sigma given as a fraction of the image size."""
        return blur(image, fraction)

    def sample_field(self, grid: np.ndarray) -> np.ndarray:
        """Sample a small square field (covering the anatomy frame) at every pixel, bilinearly."""
        cells = grid.shape[0] - 1
        map_x = (self.u + 1.0) * (0.5 * cells)
        map_y = (self.v + 1.0) * (0.5 * cells)
        return cv2.remap(grid, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def blur(image: np.ndarray, fraction: float) -> np.ndarray:
    """Gaussian blur of a square image with a sigma given as a fraction of its size."""
    sigma = max(fraction * image.shape[0], 0.3)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def make_frame(spec: PhantomSpec, size: int) -> Frame:
    """Compute anatomy coordinates for a size x size image and the lung masks of the spec."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2.0 / size) - 1.0
    x = centres[None, :] - np.float32(spec.shift_x)
    y = centres[:, None] - np.float32(spec.shift_y)
    angle = np.deg2rad(spec.rotation)
    cos, sin = np.float32(np.cos(angle) / spec.scale), np.float32(np.sin(angle) / spec.scale)
    u = cos * x + sin * y
    v = cos * y - sin * x
    left, right = (blur(m.astype(np.float32), 0.008) for m in lung_masks(u, v, spec))
    return Frame(spec=spec, size=size, u=u, v=v, lungs=(left, right))


def dome_level(u: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """The diaphragm line: each hemidiaphragm is highest mid-lung and falls towards both sides."""
    right = spec.dome_right + DOME_CURVE * (u + spec.lung_offset) ** 2
    left = spec.dome_left + DOME_CURVE * (u - spec.lung_offset) ** 2
    return np.where(u < 0, right, left)


def heart_mask(u: np.ndarray, v: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """The heart shadow: a tilted ellipse on the diaphragm, its apex towards the image right."""
    du = u - spec.heart_x
    dv = v - (spec.dome_left - 0.55 * spec.heart_height)
    along, across = 0.9 * du + 0.44 * dv, 0.9 * dv - 0.44 * du  # long axis tilted down to the image right
    return (along / spec.heart_width) ** 2 + (across / spec.heart_height) ** 2 < 1.0


def lung_masks(u: np.ndarray, v: np.ndarray, spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the image-left and image-right lung fields at anatomy coordinates u, v."""
    below_apex = np.abs((v - LUNG_CENTER_V) / spec.lung_height)
    above_dome = v < dome_level(u, spec)
    outside_heart = ~heart_mask(u, v, spec)
    masks = []
    for side in (-1.0, 1.0):
        across = np.abs((u - side * spec.lung_offset) / spec.lung_width)
        inside = across**2.4 + below_apex**2 < 1.0
        masks.append(inside & above_dome & outside_heart & (side * u > MEDIASTINUM))
    return masks[0], masks[1]


def anatomy_density(frame: Frame) -> np.ndarray:
    """The blurred density of body, lungs, mediastinum, heart, spine, ribs and clavicles."""
    spec, u, v = frame.spec, frame.u, frame.v
    a = np.abs(u)
    dome = dome_level(u, spec)
    body = _body(a, v, spec)
    density = 0.46 * body.astype(np.float32)
    density += 0.06 * (body & (v > dome + 0.02))  # liver and abdomen under the diaphragm
    mediastinum = (np.abs(u - 0.01) < MEDIASTINUM + 0.03 * (v > -0.3)) & (v < dome)
    heart = heart_mask(u, v, spec) & (v < dome + 0.03)
    knob = ((u - spec.heart_x - 0.02) / 0.075) ** 2 + ((v + 0.3) / 0.06) ** 2 < 1.0
    density += np.maximum(0.12 * mediastinum, 0.15 * (heart | knob))
    density -= 0.1 * ((a < 0.028) & (v < -0.3))  # air in the trachea
    density += _spine(u, v, spec) + _clavicles(a, v)
    lungs = frame.lungs[0] + frame.lungs[1]
    density += _ribs(a, v, spec) * body * (v < dome + 0.12) * (0.4 + 0.6 * lungs)
    density = frame.blur(density, 0.005)
    density -= 0.3 * lungs
    return density + _lung_markings(frame)


def _body(a: np.ndarray, v: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """The thorax outline: sloping shoulders above, a gently narrowing trunk below, the neck on top."""
    shoulder = np.sqrt(np.clip(1.0 - ((v + 0.52) / 0.48) ** 2, 0.0, 1.0))
    half_width = np.where(v < -0.52, spec.body_width * shoulder, spec.body_width - 0.05 * (v + 0.52) ** 2)
    return a < np.maximum(half_width, 0.2)


def _spine(u: np.ndarray, v: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """Vertebral column: a central band with one body per rib level."""
    band = np.abs(u) < 0.07
    level = np.cos(2 * np.pi * ((v + 0.8) / spec.rib_spacing + spec.rib_phase))
    return (0.09 + 0.03 * level) * band


def _rib_profile(t: np.ndarray, width: float) -> np.ndarray:
    """Cross-section of one rib per unit cycle of t: a rounded band with a brighter lower margin."""
    frac = (t - np.floor(t)) / width
    inside = frac < 1.0
    body = np.sqrt(np.maximum(np.sin(np.pi * np.minimum(frac, 1.0)), 0.0))
    cortex = np.exp(-(((frac - 0.88) / 0.1) ** 2))
    return (0.7 * body + 0.3 * cortex) * inside


def _ribs(a: np.ndarray, v: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """Posterior ribs (arcs from the spine) and fainter anterior ribs running down towards the sternum."""
    posterior = np.maximum(v + 0.86 + 0.5 * a - 1.25 * a**2, 0.0)  # rise from the spine, fall laterally
    t = (posterior / spec.rib_spacing) ** 0.92 + spec.rib_phase  # intercostal spaces widen downwards
    extent = (a > 0.07) & (a < spec.body_width - 0.04) & (t > 0.6) & (t < 10.6)
    ribs = 0.13 * _rib_profile(t, 0.38) * extent
    anterior = (v + 0.62 - 0.6 * (0.8 - a)) / (1.25 * spec.rib_spacing) + spec.rib_phase
    extent_a = (a > 0.14) & (a < spec.body_width - 0.08) & (anterior > 0.5) & (anterior < 6.0)
    ribs += 0.045 * _rib_profile(anterior, 0.35) * extent_a
    return ribs.astype(np.float32)


def _clavicles(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two clavicles rising from the sternal notch towards the shoulders."""
    centre = -0.68 - 0.2 * a + 0.35 * (a - 0.3) ** 2
    return 0.18 * ((np.abs(v - centre) < 0.03) & (a > 0.05) & (a < 0.6))


def _lung_markings(frame: Frame) -> np.ndarray:
    """Vessel-like lines radiating from each hilum, tapering and fading towards the periphery."""
    rng = np.random.default_rng(frame.spec.texture_seed)
    hilum_v = LUNG_CENTER_V + 0.06
    markings = np.zeros_like(frame.u)
    for side in (-1.0, 1.0):
        du, dv = side * frame.u - 0.15, frame.v - hilum_v
        radius = np.sqrt(du**2 + dv**2)
        angle = np.arctan2(dv, du)
        noise = rng.standard_normal((_TEXTURE_CELLS // 2, _TEXTURE_CELLS)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
        noise /= noise.std() + 1e-6
        map_x = (angle + np.pi) * np.float32((noise.shape[1] - 1) / (2 * np.pi))
        map_y = radius * np.float32(18.0)
        field = cv2.remap(noise, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        width = 0.45 * np.clip(0.15 / (radius + 0.05), 0.2, 1.0)
        vessels = np.exp(-((field / width) ** 2)) * np.exp(-radius / 0.4) * np.minimum(radius / 0.08, 1.0)
        hilum = np.exp(-((du / 0.06) ** 2 + (dv / 0.11) ** 2))
        markings += 0.12 * vessels + 0.07 * hilum
    return (markings * (frame.lungs[0] + frame.lungs[1])).astype(np.float32)


def device_mask(spec: PhantomSpec, size: int) -> np.ndarray:
    """Wires and ECG-lead rings in pixel space (0..1), independent of any finding."""
    mask = np.zeros((size, size), np.float32)
    rng = np.random.default_rng(spec.device_seed)
    thickness = max(1, round(0.006 * size))
    shift = 4  # sub-pixel precision of the cv2 drawing calls
    scale = size * (1 << shift)
    if spec.wire:
        start, bend, end = (
            rng.uniform((0.2, 0.0), (0.8, 0.1)),
            rng.uniform(0.2, 0.8, 2),
            rng.uniform(0.25, 0.75, 2),
        )
        t = np.linspace(0.0, 1.0, 40)[:, None]
        curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t**2 * end
        cv2.polylines(
            mask, [np.round(curve * scale).astype(np.int32)], False, 1.0, thickness, cv2.LINE_8, shift
        )
    for _ in range(spec.ecg_leads):
        centre = tuple(int(c) for c in np.round(rng.uniform(0.15, 0.85, 2) * scale))
        radius = round(0.022 * scale)
        cv2.circle(mask, centre, radius, 1.0, thickness, cv2.LINE_8, shift)
        cv2.circle(mask, centre, radius // 4, 1.0, -1, cv2.LINE_8, shift)
    return mask


def burn_marker(image: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """Burn the spec's side marker (white text) into one corner of a [0, 1] image."""
    if not spec.marker:
        return image
    size = image.shape[0]
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(size / 200))
    scale = 0.07 * size / cv2.getTextSize("R", font, 1.0, 1)[0][1]
    (width, height), _ = cv2.getTextSize(spec.marker, font, scale, thickness)
    margin = round(0.04 * size)
    x = margin if spec.marker_corner % 2 == 0 else size - margin - width
    y = margin + height if spec.marker_corner < 2 else size - margin
    text = np.zeros((size, size), np.uint8)
    cv2.putText(text, spec.marker, (x, y), font, scale, 255, thickness, cv2.LINE_AA)
    return np.maximum(image, text.astype(np.float32) / 255.0)
