"""The lung segmenter's card: what the network is, how an image becomes its input, how it was made.

A segmenter checkpoint is one safetensors file whose metadata holds this card as JSON under
``SEGMENTER_CARD_KEY`` (a key of its own, so classifier listings pass it by), plus a JSON sidecar for
people, written like a classifier's (``cxrcore.models.checkpoint``). The card is enough to rebuild the
network and prepare an image for it; reading it never runs code. Kept free of PyTorch.

Fields: ``task`` ("segment"), ``spec`` (library, decoder, encoder, decoder channels, classes, input size,
normalisation mean and std, output activation), ``preprocess`` (``PreprocessConfig``), ``threshold``
(probability at which a pixel belongs to a class), ``training`` (data: JSRT, split counts, seed,
fingerprint of the image list; settings; per-epoch history), ``evaluation`` (test Dice per organ with
bootstrap 95% CIs, crop-box IoU), ``how_made`` (command, duration, hardware) and the generated fields
(``created_at``, ``package_versions``, ``num_parameters``, ``weights_dtype``).

Importing this module (``cxrcore.models`` does, so any use of a model does) registers the bundled
segmenter as the ``"segmenter"`` lung crop method of ``cxrcore.lung_crop``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrcore.data.jsrt import ORGANS
from cxrcore.lung_crop import Box, register_lung_crop_method
from cxrcore.models.card import SEGMENTER_CARD_KEY, CheckpointError, file_fingerprint, safetensors_metadata
from cxrcore.models.catalog import bundled_dir
from cxrcore.models.model_card import WEIGHTS_DTYPES, CardError
from cxrcore.preprocess import PreprocessConfig

SEGMENTER_CARD_VERSION = 1
SEGMENT_TASK = "segment"
ACTIVATIONS: tuple[str, ...] = ("sigmoid",)  # one independent probability per class (classes may overlap)
LUNG_CLASSES: tuple[str, str] = ("right_lung", "left_lung")  # the patient's right and left
SEGMENTER_FILE = "lung-segmenter.safetensors"
DICE_BOOTSTRAP = 2000  # resamples of the test images for the 95% interval of a Dice (card and command)
LUNG_HEAT_MAX_IMAGES = 100  # images of a split scored for heat in the lungs by default (page and command)


def default_segmenter_path() -> Path:
    """Where the bundled lung segmenter lives (``CXR_CHECKPOINTS`` moves the bundled folder)."""
    return bundled_dir() / SEGMENTER_FILE


@dataclass(frozen=True)
class SegmenterSpec:
    """Enough to rebuild the network: a segmentation-models-pytorch decoder over an encoder, and its input."""

    encoder: str = "tu-mobilenetv4_conv_small"
    decoder: str = "Unet"
    decoder_channels: tuple[int, ...] = (64, 48, 32, 16, 16)
    classes: tuple[str, ...] = ORGANS
    input_size: int = 192
    mean: float = 0.5
    std: float = 0.25
    activation: str = "sigmoid"
    library: str = "segmentation-models-pytorch"

    def __post_init__(self) -> None:
        """Reject specs the lung API cannot use; normalise types."""
        classes = tuple(str(c) for c in self.classes)
        missing = [c for c in LUNG_CLASSES if c not in classes]
        if missing or len(set(classes)) != len(classes):
            raise CardError(
                f"segmenter classes must be unique and include {list(LUNG_CLASSES)}, got {classes}"
            )
        if self.activation not in ACTIVATIONS:
            raise CardError(
                f"unknown activation {self.activation!r}; valid options: {', '.join(ACTIVATIONS)}"
            )
        if int(self.input_size) < 32 or not float(self.std) > 0:
            raise CardError(f"input_size must be >= 32 and std > 0, got {self.input_size!r}, {self.std!r}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmenterSpec:
        """Rebuild from ``to_dict`` output; unknown keys raise CardError naming the valid ones."""
        return cls(**_known(cls, d))


def _known(cls: type, d: Any) -> dict[str, Any]:
    """``d`` as keyword arguments of dataclass ``cls``; CardError for a non-mapping or unknown keys."""
    if not isinstance(d, Mapping):
        raise CardError(f"{cls.__name__} expects a mapping, got {type(d).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise CardError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(valid)}")
    return dict(d)


@dataclass(frozen=True)
class SegmenterCard:
    """The typed card of a segmenter checkpoint; see the module docstring."""

    spec: SegmenterSpec
    preprocess: PreprocessConfig
    threshold: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    how_made: dict[str, Any] | None = None
    created_at: str | None = None
    package_versions: dict[str, str] = field(default_factory=dict)
    num_parameters: int | None = None
    weights_dtype: str = "float32"

    def __post_init__(self) -> None:
        """Reject a card whose parts disagree."""
        if self.preprocess.input_size != self.spec.input_size:
            raise CardError(
                f"preprocessing input size {self.preprocess.input_size} differs from the segmenter's "
                f"input size {self.spec.input_size}"
            )
        if self.preprocess.lung_crop:
            raise CardError(
                "a lung segmenter sees the whole image: its preprocessing cannot crop to the lungs"
            )
        if not 0 < float(self.threshold) < 1:
            raise CardError(f"threshold must lie in (0, 1), got {self.threshold!r}")
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise CardError(
                f"unknown weights_dtype {self.weights_dtype!r}; valid: {', '.join(WEIGHTS_DTYPES)}"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        """The output classes, in channel order."""
        return self.spec.classes

    def replace(self, **changes: Any) -> SegmenterCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form; ``card_from_dict`` reads it back."""
        out = {"format_version": SEGMENTER_CARD_VERSION, "task": SEGMENT_TASK}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmenterCard:
        """A card from its stored JSON; CardError for another task, version or a field that does not fit."""
        if not isinstance(d, Mapping):
            raise CardError(f"a segmenter card is a mapping, got {type(d).__name__}")
        if d.get("task") != SEGMENT_TASK or d.get("format_version") != SEGMENTER_CARD_VERSION:
            raise CardError(
                f"not a segmenter card of version {SEGMENTER_CARD_VERSION} "
                f"(task {d.get('task')!r}, format_version {d.get('format_version')!r})"
            )
        rest = _known(
            cls, {k: v for k, v in d.items() if k not in ("format_version", "task", "weights_file")}
        )
        try:
            spec = SegmenterSpec.from_dict(rest.pop("spec"))
            settings = {**dict(rest.pop("preprocess")), "input_size": spec.input_size}
            return cls(spec=spec, preprocess=PreprocessConfig.from_dict(settings), **rest)
        except KeyError as exc:
            raise CardError(f"segmenter card has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise CardError(str(exc)) from exc


def read_segmenter_card(path: str | Path) -> SegmenterCard:
    """The card of a segmenter checkpoint, from its safetensors header (no weights are read).

    Raises:
        CheckpointError: missing, unreadable or corrupt file, or no readable segmenter card; the
            message names the file.
    """
    weights = Path(path)
    metadata = safetensors_metadata(weights, "lung segmenter")
    if SEGMENTER_CARD_KEY not in metadata:
        raise CheckpointError(f"{str(weights)!r} holds no lung segmenter card ({SEGMENTER_CARD_KEY!r})")
    try:
        return SegmenterCard.from_dict(json.loads(metadata[SEGMENTER_CARD_KEY]))
    except (json.JSONDecodeError, CardError) as exc:
        raise CheckpointError(f"lung segmenter card of {str(weights)!r} cannot be read: {exc}") from exc


def dice_summary(evaluation: Mapping[str, Any] | None, organs: Sequence[str] = ORGANS) -> str:
    """One line of test Dice per organ with its 95% CI from a card's ``evaluation`` ("" when absent)."""
    dice = (evaluation or {}).get("dice") or {}
    parts = [
        f"{organ.replace('_', ' ')} {d['mean']:.3f} ({d['ci_low']:.3f}-{d['ci_high']:.3f})"
        for organ in organs
        if isinstance(d := dice.get(organ), Mapping)
    ]
    return "; ".join(parts)


def _segmenter_crop_box(pixels: np.ndarray) -> Box:
    """The bundled segmenter's lung crop box (its network is loaded on first use)."""
    from cxrcore.models.segmenter import lung_box  # PyTorch, only when a segmenter crop is asked for

    return lung_box(pixels)


def _segmenter_identity() -> str:
    """The bundled segmenter's weights fingerprint ("missing" without one), for preprocessing cache keys."""
    path = default_segmenter_path()
    return file_fingerprint(path) if path.is_file() else "missing"


register_lung_crop_method("segmenter", _segmenter_crop_box, _segmenter_identity)
