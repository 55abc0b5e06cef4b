"""Explain: upload a chest X-ray (PNG, JPEG, DICOM) or pick one of a dataset; see every label's calibrated
probability against its threshold, with how far the label can be trusted, and, side by side per label,
where the model looked (CAM / Grad-CAM, CRM and any other method chosen) and how much of it lies inside
the lung fields."""

from __future__ import annotations

from functools import partial

import streamlit as st

from cxrcore.explain.methods import DEFAULT_METHODS, DEFAULT_SMOOTH, EXTRA_METHODS
from cxrcore.explain.panel import panel_png, panel_tiles
from cxrcore.models.card import read_card
from cxrcore.preprocess import boxes_to_input
from cxrcore.ui import detections as ud
from cxrcore.ui import explain as ux
from cxrcore.ui import lungs, trust
from cxrcore.ui.models import load_model
from cxrcore.ui.page import compute_turn, guarded, select_checkpoint, select_dataset, setup_page
from cxrcore.ui.turns import FIRST, LATER

ws = setup_page("Explain")
st.title("Explain")
st.caption("For research and teaching only: these maps show what a model responds to, not a diagnosis.")
dataset = select_dataset(ws)
checkpoint = select_checkpoint(ws, task="classify")
if checkpoint is None:
    st.info("No model yet: `make run` prepares the demo models, or train one on the Train page.")
    st.stop()

# The image is read outside the turns; a set of several uploads is reviewed in a later turn of its own.
choice = ux.image_source(ws, dataset, checkpoint)
if choice is None:
    st.info("Upload one chest X-ray or several, or pick an image of the selected dataset.")
    with guarded("read the model's card"):
        trust.labels_section(read_card(checkpoint))
    st.stop()

rows = None
with compute_turn(FIRST), guarded("explain the image"):  # maps before anyone's later sections
    loaded = load_model(checkpoint)
    pixels = ux.window_controls(choice)
    if ux.image_refused(choice):
        st.stop()
    # One forward pass gives the maps and the features the upload guard measures; nothing is shown
    # before the guard has had its say.
    base = ux.cached_explanation(loaded, pixels, None, DEFAULT_METHODS)
    if not ux.guard_warning(loaded, choice, pixels, base):
        st.stop()
    readings = trust.readings_section(loaded, base)  # labels called positive first
    trust.about_section(loaded, ux.guard_verdict(loaded, choice, pixels, base))
    order = readings["label"].tolist()

    left, right, last = st.columns([3, 2, 1])
    labels = ux.label_picker(left, choice, order)
    extra = right.multiselect("More methods", EXTRA_METHODS, key="explain_methods")
    smooth = ux.smoothing_input(last, "explain_smooth")
    options = ux.panel_options()
    if not labels:
        st.info("Pick at least one label.")
        st.stop()
    result = base
    if extra or smooth != DEFAULT_SMOOTH:
        result = ux.cached_explanation(loaded, pixels, labels, (*DEFAULT_METHODS, *extra), smooth)
    truth = None
    if choice.truth is not None and len(choice.truth):
        height, width = choice.pixels.shape
        truth = boxes_to_input(choice.truth, width, height, loaded.preprocess)
    cam_name = "CAM (= Grad-CAM at the last layer)" if loaded.spec.pooling == "avg" else "Grad-CAM"
    st.caption(
        f"Columns: the image{' with its true boxes (green)' if truth is not None else ''}, {cam_name}, "
        f"CRM{', ' + ', '.join(extra) if extra else ''}. Boxes: regions above "
        f"{options.box_threshold:.0%} of each map's peak, scored by peak heat x probability."
    )
    rows = panel_tiles(result, labels, [*DEFAULT_METHODS, *extra], options, truth)
if rows is None:  # the explanation failed and said why
    st.stop()

with guarded("explain the image"):
    # Shows the panel, then runs a detector (in a later turn) and draws its boxes beside it.
    rows = ud.detector_panel(ws, choice, pixels, rows, options.tile)
    st.download_button(  # the PNG is encoded when clicked, not on every run (uploads, sliders)
        "Download the panel (PNG)",
        partial(panel_png, rows),
        file_name=f"{choice.name}-explained.png",
        mime="image/png",
        on_click="ignore",
    )
    with compute_turn(LATER):
        lungs.explain_lung_section(loaded, pixels, result, labels)

    # Toggles, not expanders: an expander's body runs (and computes) even while it is closed.
    if st.toggle("Show the ensemble of several models", value=False, key="explain_show_ensemble"):
        with compute_turn(LATER):
            ux.ensemble_section(ws, loaded, pixels, labels, options, smooth)
    if st.toggle("Show filters and activations", value=False, key="explain_show_internals"):
        with compute_turn(LATER):
            ux.internals_section(loaded, result.image01)
