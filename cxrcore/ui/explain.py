"""Widgets of the Explain page: the image source (upload or dataset), window controls, the panel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from cxrcore.data.index import DatasetError
from cxrcore.digest import array_digest
from cxrcore.explain.boxes import BOX_THRESHOLD
from cxrcore.explain.heatmap import COLORMAPS, heatmap_overlay, to_jpeg_bytes, to_png_bytes
from cxrcore.explain.methods import DEFAULT_METHODS, DEFAULT_SMOOTH, EXTRA_METHODS
from cxrcore.explain.panel import PanelOptions, Tile, panel_picture
from cxrcore.io import MAX_UPLOAD_MB, UPLOAD_TYPES, ImageReadError, assess_image, read_image
from cxrcore.io import read_upload as read_upload_bytes
from cxrcore.models.catalog import list_checkpoints
from cxrcore.store import Workspace
from cxrcore.ui import state
from cxrcore.ui.models import load_model
from cxrcore.workflows.demo import sample_phantom_png

if TYPE_CHECKING:  # PyTorch loads when a model first runs, not when the page is first drawn
    from cxrcore.explain.engine import Explanation
    from cxrcore.models.checkpoint import Checkpoint
    from cxrcore.models.guard import Verdict

SESSION_CACHE_ENTRIES = 4  # results kept per session and kind: a few images or settings to go back to
_T = TypeVar("_T")


@dataclass
class ImageChoice:
    """The image to explain: grey pixels in [0, 1], reader metadata, and true boxes when known."""

    name: str
    pixels: np.ndarray
    meta: dict[str, Any]
    truth: pd.DataFrame | None = None  # label, x, y, w, h in the image's own pixels
    data: bytes | None = None  # the uploaded file (kept in memory only), for the colour check


def read_upload(name: str, data: bytes) -> ImageChoice | None:
    """Read an upload in memory; a too large or unreadable file shows the reader's message, nothing else."""
    try:
        pixels, meta = read_upload_bytes(data)
    except ImageReadError as exc:
        st.error(f"Cannot read {name!r}: {exc}")
        return None
    return ImageChoice(name, pixels, meta, data=data)


def _from_dataset(ws: Workspace, dataset: str) -> ImageChoice | None:
    """An image of a registered dataset (those with boxes first), with its true boxes."""
    data = ws.load_dataset(dataset)
    index = data.index[data.index["path"].notna()]
    if index.empty:
        st.info("This dataset has no image files.")
        return None
    boxed = list(dict.fromkeys(data.boxes["image_id"]))
    ids = [i for i in boxed if i in set(index["image_id"])][:200] or list(index["image_id"][:200])
    image_id = st.selectbox("Image", ids, key="explain_image_id", help="Images with boxes are listed first.")
    row = index.set_index("image_id").loc[image_id]
    try:
        pixels, meta = read_image(row["path"])
    except ImageReadError as exc:
        raise DatasetError(f"cannot read {image_id}: {exc}") from None
    truth = data.boxes.loc[data.boxes["image_id"] == image_id, ["label", "x", "y", "w", "h"]]
    return ImageChoice(str(image_id), pixels, meta, truth.reset_index(drop=True))


def image_source(ws: Workspace, dataset: str | None, checkpoint: Path | None = None) -> ImageChoice | None:
    """Upload PNG / JPEG / DICOM files, or pick an image of the selected dataset.

    Several uploads are reviewed together with ``checkpoint`` (a gallery, reports and a CSV); the one
    opened in the gallery is returned.
    """
    choices = ["Upload files"] + ([f"An image of {dataset}"] if dataset else [])
    where = st.radio("Image", choices, horizontal=True, key="explain_source")
    if where == "Upload files":
        uploads = st.file_uploader(
            f"Chest X-rays (PNG, JPEG or DICOM, up to {MAX_UPLOAD_MB} MB each; one, or several to review "
            "together); they stay in memory and are never stored",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key="explain_upload",
        )
        if len(uploads or []) > 1 and checkpoint is not None:
            from cxrcore.ui.batch import gallery_section

            return gallery_section(checkpoint, [(u.name, u.getvalue()) for u in uploads])
        if uploads:
            return read_upload(uploads[0].name, uploads[0].getvalue())
        if state.UPLOAD in st.session_state:  # uploaded on the home page, or a phantom picked below
            name, data = st.session_state[state.UPLOAD]
            return read_upload(name, data)
        sample_phantoms()
        return None
    return _from_dataset(ws, dataset) if dataset else None


def guard_verdict(
    checkpoint: Checkpoint, choice: ImageChoice, pixels: np.ndarray, explanation: Explanation | None = None
) -> Verdict:
    """The upload guard's verdict on the image as shown, once per image and model in this session; with
    the image's explanation, from its forward pass (the guard then runs no model of its own)."""
    from cxrcore.models.guard import assess

    features = None if explanation is None else explanation.pooled_features
    key = (model_key(checkpoint), array_digest(choice.pixels, choice.data, pixels))
    return session_memo(
        state.GUARD_VERDICTS,
        key,
        lambda: assess(checkpoint, choice.pixels, choice.data, model_pixels=pixels, features=features),
    )


def image_refused(choice: ImageChoice) -> bool:
    """Refuse an image with nothing to see (blank, too small, ...) with the reason; whether refused."""
    quality = assess_image(choice.pixels, choice.meta, repr(choice.name))
    if quality.refused:
        st.error(quality.refusal)
    return quality.refused


def guard_warning(
    checkpoint: Checkpoint, choice: ImageChoice, pixels: np.ndarray, explanation: Explanation | None = None
) -> bool:
    """Warn before any prediction is shown when the image does not look like the model's training images.

    Returns whether to go on and show the predictions.
    """
    verdict = guard_verdict(checkpoint, choice, pixels, explanation)
    if not verdict.suspicious:
        if verdict.score is not None:
            st.caption(
                f"Upload guard: feature distance {verdict.score:.1f} (threshold {verdict.threshold:.1f})."
            )
        return True
    st.warning(
        "This does not look like a chest X-ray the model was trained on: "
        + "; ".join(verdict.reasons)
        + ". Its predictions would mean little.",
        icon="⚠️",
    )
    return st.checkbox("Show the predictions anyway", value=False, key="explain_anyway")


def label_picker(
    container: Any, choice: ImageChoice, order: list[str], key: str = "explain_labels"
) -> list[str]:
    """The labels whose maps are shown. Each new image (or a model with other labels) starts from its own
    first four in ``order`` (labels called positive first); the person's changes hold while the image
    stays. Set through the session state, not as the widget's default: a default that changes with the
    image redrew the box with the new labels while the widget kept returning the old ones."""
    content = choice.data if choice.data is not None else choice.pixels  # the file's bytes are fewer
    image = (choice.name, array_digest(content), tuple(sorted(order)))
    if st.session_state.get(state.LABELS_IMAGE) != image:
        st.session_state[key] = order[:4]
        st.session_state[state.LABELS_IMAGE] = image
    return container.multiselect("Labels", order, key=key)


def model_key(checkpoint: Checkpoint) -> str:
    """The checkpoint's weights fingerprint (its identity for a model held only in memory)."""
    return checkpoint.fingerprint() or f"memory-{id(checkpoint.model)}"


def session_memo(name: str, key: tuple, compute: Callable[[], _T]) -> _T:
    """``compute()`` once per key in this session, keeping the last few results (least recent dropped).

    Kept in ``st.session_state`` rather than ``st.cache_data``: the results belong to this session's
    upload, which must not outlive the session nor reach another user.
    """
    memo: dict[tuple, Any] = st.session_state.setdefault(name, {})
    if key in memo:
        memo[key] = memo.pop(key)  # most recently used last
        return memo[key]
    value = compute()
    memo[key] = value
    while len(memo) > SESSION_CACHE_ENTRIES:
        memo.pop(next(iter(memo)))
    return value


def cached_explanation(
    checkpoint: Checkpoint,
    pixels: np.ndarray,
    labels: Sequence[str] | None,
    methods: Sequence[str],
    smooth: float = DEFAULT_SMOOTH,
) -> Explanation:
    """``explain`` once per (image as windowed, checkpoint, labels, methods, smoothing) in this session.

    Display options (colour map, opacity, thresholds, boxes) only re-colour the maps, so moving them
    reuses the result and never runs the model.
    """
    from cxrcore.explain.engine import explain

    key = (
        model_key(checkpoint),
        array_digest(pixels),
        None if labels is None else tuple(labels),
        tuple(methods),
        float(smooth),
    )
    return session_memo(
        state.EXPLANATIONS, key, lambda: explain(checkpoint, pixels, labels, methods, smooth=smooth)
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _phantom_png(seed: int, size: int | None = None) -> tuple[str, bytes]:
    """A sample phantom's file name and PNG bytes (the demo's size by default), once per seed and size."""
    return sample_phantom_png(seed) if size is None else sample_phantom_png(seed, size=size)


def sample_phantoms(count: int = 4) -> None:
    """No file at hand: synthetic phantoms to click (labelled as synthetic)."""
    st.caption("No X-ray at hand? Click a synthetic phantom (computer-generated, not a patient):")
    for seed, column in enumerate(st.columns(count)):
        name, data = _phantom_png(seed, 192)
        column.image(
            data, caption=name.removeprefix("synthetic-phantom-").removesuffix(".png"), width="stretch"
        )
        if column.button("Explain this one", key=f"explain_sample_{seed}"):
            st.session_state[state.UPLOAD] = _phantom_png(seed)
            st.rerun()


def window_controls(choice: ImageChoice) -> np.ndarray:
    """DICOM window level / width on the [0, 1] image (defaults: the whole range, as read)."""
    if choice.meta.get("format") != "dicom":
        return choice.pixels
    with st.expander("DICOM window", expanded=False):
        window = choice.meta.get("window") or {}
        st.caption(f"Read with {window.get('source', 'the full stored range')}; adjust on the result:")
        left, right = st.columns(2)
        level = left.slider("Level", 0.0, 1.0, 0.5, 0.01, key="explain_level")
        width = right.slider("Width", 0.05, 1.0, 1.0, 0.01, key="explain_width")
    return np.clip((choice.pixels - (level - width / 2)) / width, 0.0, 1.0).astype(np.float32)


def panel_options() -> PanelOptions:
    """Sliders and toggles for the overlays."""
    c1, c2, c3, c4, c5 = st.columns(5)
    alpha = c1.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="explain_alpha")
    threshold = c2.slider(
        "Hide below",
        0.0,
        1.0,
        0.2,
        0.05,
        key="explain_threshold",
        help="Map values under this are transparent.",
    )
    box_threshold = box_threshold_input(c3, "explain_box_threshold")
    colormap = c4.selectbox("Colour map", list(COLORMAPS), key="explain_colormap")
    boxes = c5.toggle("Boxes from the maps", value=True, key="explain_boxes")
    return PanelOptions(
        colormap=colormap, alpha=alpha, threshold=threshold, box_threshold=box_threshold, show_boxes=boxes
    )


def box_threshold_input(where: object, key: str) -> float:
    """The fraction of a map's peak that outlines a box drawn from it, from a slider."""
    return float(
        where.slider(  # type: ignore[attr-defined]
            "Box threshold (fraction of the peak)",
            0.1,
            0.9,
            BOX_THRESHOLD,
            0.05,
            key=key,
            help="A box outlines the region above this fraction of a map's peak. Maps wider than the "
            "lesions give tighter boxes at higher values: the phantom localisers' boxes fit best at 0.8.",
        )
    )


def smoothing_input(where: object, key: str) -> float:
    """The maps' Gaussian smoothing as a fraction of the map's side, from a slider in percent."""
    percent = where.slider(  # type: ignore[attr-defined]
        "Map smoothing (% of the side)",
        0.0,
        20.0,
        100 * DEFAULT_SMOOTH,
        0.25,
        key=key,
        help="A Gaussian over the map before it is enlarged (standard deviation in percent of the "
        "map's side), so the peak marks the centre of the evidence rather than one noisy cell. "
        "0 shows the unfiltered map.",
    )
    return float(percent) / 100


def show_panel(rows: list[list[Tile]]) -> None:
    """One picture per label: the image, then each method's overlay, side by side.

    A row is one picture rather than a picture per tile: each picture on the page is one more request
    and element for the browser to fetch, lay out and composite, and a room of people uploading at
    once on one machine waits for the browsers' work as much as for the model's.
    """
    for row in rows:
        st.image(
            to_jpeg_bytes(panel_picture([row])),
            caption=" | ".join(tile.caption for tile in row),
            width="stretch",
        )


def ensemble_section(
    ws: Workspace,
    checkpoint: Checkpoint,
    pixels: np.ndarray,
    labels: list[str],
    options: PanelOptions,
    smooth: float,
) -> None:
    """Ensemble maps: the mean of the normalised maps of this model and the members picked (PeerJ 2020)."""
    others = {
        str(e.path): e.title
        for e in list_checkpoints(ws.home)
        if e.path != checkpoint.path
        and e.info.get("task") == "classify"  # a detector of the same classes has no maps to average
        and list(e.info["labels"]) == list(checkpoint.labels)
    }
    if not others:
        st.caption("No other checkpoint with the same labels.")
        return
    picked = st.multiselect("Other members", list(others), format_func=others.get, key="explain_members")
    method = st.selectbox("Method", [*DEFAULT_METHODS, *EXTRA_METHODS], key="explain_ens_method")
    if not picked:
        return
    from cxrcore.explain.engine import explain_ensemble

    loaded = [checkpoint] + [load_model(p) for p in picked]
    ens = explain_ensemble(loaded, pixels, labels, method, smooth=smooth)
    for column, label in zip(st.columns(len(labels)), labels, strict=True):
        rgb = heatmap_overlay(
            ens.image01, ens.maps[label], options.colormap, options.alpha, options.threshold
        )
        column.image(
            to_jpeg_bytes(rgb),
            caption=f"{label}: mean of {len(loaded)} maps, p = {ens.probabilities[label]:.3f}",
        )


def internals_section(checkpoint: Checkpoint, image01: np.ndarray) -> None:
    """The first-layer filters and the strongest channels of the CAM layer for this (prepared) image."""
    from cxrcore.explain.internals import channel_activations, first_layer_filters

    model = checkpoint.model
    filters = first_layer_filters(model)
    grid, channels = channel_activations(model, image01, top=16)
    left, right = st.columns(2)
    left.image(filters, caption="First-layer filters", width="stretch")
    right.image(
        grid, caption=f"Strongest channels of {model.spec.cam_layer} (first: {channels[:6]})", width="stretch"
    )
    st.download_button("Filters (PNG)", to_png_bytes(filters), file_name="filters.png", key="dl_filters")
