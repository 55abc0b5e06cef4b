"""The Explain page computes only what is shown, and reuses an upload's explanation when a display
control moves (AppTest with the bundled demo localiser, calls counted)."""

from __future__ import annotations

import pytest
from page_harness import count_calls, run, run_page
from streamlit.testing.v1 import AppTest

from cxrcore.explain import engine, internals
from cxrcore.models import guard
from cxrcore.store import Workspace
from cxrcore.ui import explain as ux
from cxrcore.ui import state

PAGE = "pages/5_Explain.py"


def _upload(at: AppTest, ws: Workspace, index: int = 0) -> AppTest:
    """Upload one of the demo's phantom PNGs (images like the bundled localiser's training images)."""
    path = sorted((ws.home / "demo" / "phantoms" / "images").glob("*.png"))[index]
    at.file_uploader(key="explain_upload").upload(path.name, path.read_bytes())
    return run(at)


def test_the_filters_are_computed_only_once_their_toggle_is_on(
    demo_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    activations = count_calls(monkeypatch, internals, "channel_activations")
    members = count_calls(monkeypatch, ux, "list_checkpoints")  # the ensemble section's first engine call
    at = _upload(run_page(PAGE), demo_ws)
    shown = len(at.get("image"))
    assert shown > 0 and activations[0] == 0 and members[0] == 0
    at.toggle(key="explain_show_internals").set_value(True)
    run(at)
    assert activations[0] == 1
    assert len(at.get("image")) == shown + 2  # the filters and the strongest channels
    assert members[0] == 0
    at.toggle(key="explain_show_ensemble").set_value(True)
    run(at)
    assert members[0] == 1


def test_display_controls_recolour_the_cached_maps_without_running_the_model(
    demo_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    explained = count_calls(monkeypatch, engine, "explain")
    guarded = count_calls(monkeypatch, guard, "assess")
    guard_passes = count_calls(monkeypatch, guard, "pooled_features")
    at = _upload(run_page(PAGE), demo_ws)
    assert explained[0] == 1 and guarded[0] == 1
    assert guard_passes[0] == 0  # the guard reads the explanation's forward pass
    first = [str(image.proto) for image in at.get("image")]  # media URLs: a content hash each
    at.slider(key="explain_alpha").set_value(0.9)
    run(at)
    assert [str(image.proto) for image in at.get("image")] != first  # overlays drawn again
    at.selectbox(key="explain_colormap").set_value(at.selectbox(key="explain_colormap").options[-1])
    run(at)
    at.slider(key="explain_threshold").set_value(0.5)
    run(at)
    at.toggle(key="explain_boxes").set_value(False)
    run(at)
    assert explained[0] == 1 and guarded[0] == 1  # the same maps, re-coloured
    assert len(at.get("image")) == len(first)

    at.slider(key="explain_smooth").set_value(0.0)  # new maps: explained again
    run(at)
    assert explained[0] == 2
    labels = at.multiselect(key="explain_labels")
    labels.set_value(labels.value[:1])  # other labels at this smoothing: explained again
    run(at)
    assert explained[0] == 3
    at.slider(key="explain_alpha").set_value(0.3)
    run(at)
    assert explained[0] == 3 and guarded[0] == 1


def test_another_image_is_explained_and_the_session_keeps_a_few_results(
    demo_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    explained = count_calls(monkeypatch, engine, "explain")
    at = _upload(_upload(run_page(PAGE), demo_ws, 0), demo_ws, 4)  # both pass the upload guard
    assert explained[0] == 2
    for percent in (0.0, 1.0, 2.0, 3.0, 4.0):
        at.slider(key="explain_smooth").set_value(percent)
        run(at)
    assert len(at.session_state[state.EXPLANATIONS]) == ux.SESSION_CACHE_ENTRIES


def test_the_sample_phantoms_are_drawn_once_not_on_every_run(
    demo_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ux._phantom_png.clear()
    drawn = count_calls(monkeypatch, ux, "sample_phantom_png")
    at = run_page(PAGE)
    assert len(at.get("image")) == 4 and drawn[0] == 4
    at.radio(key="explain_source").set_value("Upload files")
    run(at)
    assert len(at.get("image")) == 4 and drawn[0] == 4
