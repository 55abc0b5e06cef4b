"""The model card: one typed, versioned record of what a checkpoint is and how it was made.

A ``ModelCard`` travels with the weights (embedded in the safetensors header, and in a JSON sidecar for
people). It holds everything needed to use the model on a new image and to judge it:

- ``task`` (one of ``TASKS``) and ``spec`` (the frozen ``ModelSpec``: architecture, labels,
  ``input_size``, normalisation ``mean`` / ``std``, classifier and CAM layers). The input size and the
  normalisation statistics are stored here and nowhere else;
- ``preprocess``: how an image becomes the model's input (``PreprocessConfig``; its ``input_size`` is
  the spec's, so it is not stored a second time);
- provenance: ``dataset`` (name, fingerprint, split, synthetic), ``training_config``, ``history``,
  ``epoch``, ``selected_by``, ``metrics`` (validation), ``evaluation`` (test figures), ``how_made``
  (commands, hardware, duration), ``imported_from`` / ``note`` for foreign weights;
- what a reader needs next to the probabilities: ``calibration`` and ``operating_points`` (fitted on
  a validation split, read and applied by ``cxrcore.models.readout``) and, for detection models,
  ``detector`` (classes, box format);
- written by ``save_checkpoint``: ``created_at``, ``package_versions``, ``num_parameters``,
  ``weights_dtype``.

Keys this version does not know are kept in ``extra`` and written back unchanged.

Versions: cards of version 1 (two input sizes, normalisation stored twice, flat or nested dataset
keys, ``monitor`` beside ``selected_by``, ``image_size`` in the training settings) are migrated on
read by ``card_from_dict``, which also reads the partial mappings callers pass to ``save_checkpoint``.
Kept free of PyTorch so listings stay fast.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxrcore.models.readout import ReadoutError, check_calibration, check_operating_points
from cxrcore.models.spec import ModelSpec
from cxrcore.preprocess import PreprocessConfig

logger = logging.getLogger(__name__)

CARD_VERSION = 2
TASKS: tuple[str, ...] = ("classify", "detect")  # image-level labels; boxes (cxrcore.models.detector)
TASK_NAMES = {"classify": "Classifier", "detect": "Lesion detector"}  # each task in words, for the pages
WEIGHTS_DTYPES: tuple[str, ...] = ("float32", "float16")

# Written by save_checkpoint from the model and the environment; a caller's values are ignored.
GENERATED = ("format_version", "spec", "created_at", "package_versions", "num_parameters")
# Old names of the same fields (version 1 cards and older callers).
_RENAMED = {"train_config": "training_config", "monitor": "selected_by", "norm_stats": "norm"}


class CardError(ValueError):
    """A model card that cannot be read: missing or malformed fields, or an unknown version."""


@dataclass(frozen=True)
class DatasetRecord:
    """The data a model was trained on: registered name, index fingerprint, split, synthetic or real."""

    name: str | None = None
    fingerprint: str | None = None
    split: dict[str, Any] = field(default_factory=dict)  # counts, fractions, seed, stratified
    synthetic: bool = False

    @property
    def split_seed(self) -> int | None:
        """The seed of the patient split, when recorded."""
        return self.split.get("seed")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is (task, spec, preprocessing) and where it came from; see the module docstring."""

    spec: ModelSpec
    preprocess: PreprocessConfig
    task: str = "classify"
    norm_images: int | None = None  # training images the spec's mean / std were computed on
    dataset: DatasetRecord = field(default_factory=DatasetRecord)
    training_config: dict[str, Any] | None = None
    history: tuple[dict[str, Any], ...] = ()
    epoch: int | None = None
    selected_by: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    how_made: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    operating_points: dict[str, Any] | None = None
    detector: dict[str, Any] | None = None
    imported_from: str | None = None
    note: str | None = None
    created_at: str | None = None
    package_versions: dict[str, str] = field(default_factory=dict)
    num_parameters: int | None = None
    weights_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject a card whose parts disagree or whose task is unknown."""
        if self.task not in TASKS:
            raise CardError(f"unknown task {self.task!r}; valid options: {', '.join(TASKS)}")
        if self.preprocess.input_size != self.spec.input_size:
            raise CardError(
                f"preprocessing input size {self.preprocess.input_size} differs from the model's "
                f"input size {self.spec.input_size}"
            )
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise CardError(
                f"unknown weights_dtype {self.weights_dtype!r}; valid: {', '.join(WEIGHTS_DTYPES)}"
            )
        try:
            check_calibration(self.calibration, self.spec.labels)
            check_operating_points(self.operating_points, self.spec.labels)
        except ReadoutError as exc:
            raise CardError(str(exc)) from None
        object.__setattr__(self, "history", tuple(dict(h) for h in self.history))

    @classmethod
    def for_spec(cls, spec: ModelSpec, **fields: Any) -> ModelCard:
        """A card for a model with this spec: default preprocessing at its input size unless given."""
        fields.setdefault("preprocess", PreprocessConfig(input_size=spec.input_size))
        return cls(spec=spec, **fields)

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's output names."""
        return self.spec.labels

    @property
    def input_size(self) -> int:
        """Side of the model's square input in pixels."""
        return self.spec.input_size

    @property
    def synthetic(self) -> bool:
        """Whether the model was trained on synthetic phantoms."""
        return self.dataset.synthetic

    @property
    def trained_labels(self) -> list[str]:
        """The dataset labels training used (empty: all of the dataset's)."""
        return list((self.training_config or {}).get("labels") or [])

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form (version ``CARD_VERSION``); ``card_from_dict`` reads it back."""
        preprocess = self.preprocess.to_dict()
        del preprocess["input_size"]  # the spec's
        out: dict[str, Any] = {
            "format_version": CARD_VERSION,
            "task": self.task,
            "spec": self.spec.to_dict(),
            "preprocess": preprocess,
            "norm_images": self.norm_images,
            "dataset": self.dataset.to_dict(),
        }
        for f in dataclasses.fields(self):
            if f.name not in out and f.name not in ("spec", "preprocess", "dataset", "extra"):
                value = getattr(self, f.name)
                out[f.name] = list(value) if f.name == "history" else value
        return {**self.extra, **out}


def _dataset_record(value: Any, flat: dict[str, Any]) -> DatasetRecord:
    """A DatasetRecord from a name, a nested mapping, and the flat keys of version 1 cards."""
    nested = dict(value) if isinstance(value, Mapping) else {}
    name = nested.get("name") if nested else value
    split = dict(nested.get("split") or {}) if isinstance(nested.get("split"), Mapping) else {}
    seed = flat.pop("split_seed", nested.get("split_seed"))
    if seed is not None:
        split.setdefault("seed", seed)
    fingerprint = flat.pop("dataset_fingerprint", None) or nested.get("fingerprint")
    synthetic = bool(flat.pop("synthetic", False) or nested.get("synthetic"))
    return DatasetRecord(None if name is None else str(name), fingerprint, split, synthetic)


def _training_config(value: Any) -> Any:
    """The training settings with today's names (``image_size`` became ``input_size``)."""
    if not isinstance(value, Mapping):
        return value  # None, or a value the writer refuses with a clear message
    return {("input_size" if k == "image_size" else k): v for k, v in value.items()}


def _spec_and_preprocess(d: dict[str, Any], version: int) -> tuple[ModelSpec, PreprocessConfig, int | None]:
    """The spec, the preprocessing and the normalisation image count, with one input size.

    A version 1 card stored the input size twice. The preprocessing size is the one the training
    images were prepared at, so it wins when a repurposed run left the spec's size behind. In a
    current card a preprocessing size, if given at all, must be the spec's.
    """
    spec_dict = dict(d.pop("spec"))
    settings = dict(d.pop("preprocess", None) or {})
    size = settings.pop("size", None) or settings.pop("input_size", None)
    if size is not None and int(size) != int(spec_dict.get("input_size", size)):
        if version != 1:
            raise CardError(
                f"preprocessing input size {size} differs from the model's input size "
                f"{spec_dict['input_size']}"
            )
        logger.info("version 1 card: spec input size %s, preprocessing %s", spec_dict["input_size"], size)
        spec_dict["input_size"] = int(size)
    norm = d.pop("norm", None)
    norm_images = d.pop("norm_images", None)
    if isinstance(norm, Mapping):
        norm_images = norm.get("n_images", norm_images)
        if "mean" in norm and "std" in norm:
            spec_dict.setdefault("mean", norm["mean"])
            spec_dict.setdefault("std", norm["std"])
    spec = ModelSpec.from_dict(spec_dict)
    return spec, PreprocessConfig.from_dict({**settings, "input_size": spec.input_size}), norm_images


def card_from_dict(d: Mapping[str, Any]) -> ModelCard:
    """A ModelCard from its stored JSON (version 1 or 2) or from a partial mapping with a ``spec``.

    Raises:
        CardError: no spec, a newer version, or a field that does not fit.
    """
    if not isinstance(d, Mapping):
        raise CardError(f"a model card is a mapping, got {type(d).__name__}")
    version = d.get("format_version", CARD_VERSION)
    if version not in (1, CARD_VERSION):
        raise CardError(f"card format_version {version!r} is not supported (this version reads 1 and 2)")
    if "spec" not in d:
        raise CardError("model card has no 'spec'")
    rest = {_RENAMED.get(k, k): v for k, v in d.items() if k not in ("format_version", "weights_file")}
    try:
        spec, preprocess, norm_images = _spec_and_preprocess(rest, version)
        dataset = _dataset_record(rest.pop("dataset", None), rest)
        known = {f.name for f in dataclasses.fields(ModelCard)} - {"spec", "preprocess", "dataset", "extra"}
        values = {k: rest.pop(k) for k in list(rest) if k in known}
        values["training_config"] = _training_config(values.get("training_config"))
        values.setdefault("norm_images", norm_images)
        values["history"] = tuple(h for h in values.get("history") or () if isinstance(h, Mapping))
        values["metrics"] = dict(values.get("metrics") or {})
        values["package_versions"] = dict(values.get("package_versions") or {})
        values["weights_dtype"] = values.get("weights_dtype") or "float32"
        return ModelCard(spec=spec, preprocess=preprocess, dataset=dataset, extra=rest, **values)
    except (TypeError, ValueError) as exc:
        raise CardError(str(exc)) from exc
