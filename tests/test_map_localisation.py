"""Explanation maps placed back onto the image and scored against boxes (members and ensemble)."""

from __future__ import annotations

import numpy as np
import pytest
from page_harness import ROOT

from cxrcore.evaluate.map_localisation import ENSEMBLE, FRAME, localisation_report, map_to_frame
from cxrcore.preprocess import PreprocessConfig, fit_geometry, prepare
from cxrcore.store import Workspace


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_a_map_goes_back_to_where_the_image_was(fit: str) -> None:
    # A 200 x 100 image with a bright block; the block's map in the model square must land on the block.
    image = np.zeros((100, 200), np.float32)
    image[40:60, 90:110] = 1.0
    square = prepare(image, PreprocessConfig(input_size=64, fit=fit)).astype(np.float32) / 255
    frame = map_to_frame(square, 200, 100, PreprocessConfig(input_size=64, fit=fit))
    assert frame.shape == (FRAME // 2, FRAME)  # 128 x 256: the image's aspect ratio
    ys, xs = np.nonzero(frame > 0.5)
    scale = FRAME / 200
    assert abs(ys.mean() - 50 * scale) < 2 and abs(xs.mean() - 100 * scale) < 2


def test_fit_geometry_worked_examples() -> None:
    assert fit_geometry(200, 100, 64, "pad") == (64, 32, 0, 16)
    assert fit_geometry(200, 100, 64, "crop") == (128, 64, -32, 0)


@pytest.mark.slow  # uses trained_home
def test_report_scores_members_and_their_ensemble(trained_ws: Workspace) -> None:
    paths = [trained_ws.home / "runs" / run / "best.safetensors" for run in ("tiny", "resnet18")]
    seen: list[int] = []
    report = localisation_report(
        paths, trained_ws, "demo-phantoms", max_images=12, progress=lambda d, t: seen.append(d), by="view"
    )
    assert list(report.table.index) == ["tiny/best", "resnet18/best", ENSEMBLE]
    assert seen[-1] == 12
    assert (report.table["pairs"] >= 12).all()
    for column in ("mean_iou", "peerj_map", "coco_map", "pointing"):
        assert report.table[column].between(0, 1).all(), column
    # Every (image, label) pair is scored once per model.
    counts = report.rows.groupby("model").size()
    assert counts.nunique() == 1
    # Per view: the same scores computed on that view's pairs only.
    index = trained_ws.load_dataset("demo-phantoms").index.set_index("image_id")
    views = report.rows["image_id"].map(index["view"])
    assert set(report.groups) == set(views)
    for view, table in report.groups.items():
        mine = report.rows[(views == view).to_numpy()]
        assert table.loc[ENSEMBLE, "pairs"] == int((mine["model"] == ENSEMBLE).sum())
        expected = mine[mine["model"] == "tiny/best"]["top_box_iou"].mean()
        assert table.loc["tiny/best", "top_box_iou"] == pytest.approx(expected)


@pytest.mark.slow  # six localisation reports over the demo test split
def test_bundled_localiser_points_at_the_phantom_lesions(demo_ws: Workspace) -> None:
    """The demo localiser's maps find the lesions of the demo test split; the 2x2 maps of resnet18 do not."""
    localiser = ROOT / "checkpoints" / "demo-localiser.safetensors"
    cam = localisation_report([localiser], demo_ws, "demo-phantoms", "test", method="cam")
    crm = localisation_report(
        [localiser], demo_ws, "demo-phantoms", "test", method="crm_label", extra_thresholds=(0.5, 0.7)
    )
    for report in (cam, crm):
        row = report.table.iloc[0]
        assert row["pairs"] == 37
        assert row["pointing"] >= 0.95  # 36 of 37 pairs (bench: 0.903 / 0.893 of 421 fresh phantoms)
        nodules = report.rows[report.rows["label"] == "Nodule"]
        assert len(nodules) == 16 and nodules["hit"].all()
    # The smoothing moves peaks from a plateau's edge to its centre: unsmoothed, 34 of 37 hit.
    plain = localisation_report([localiser], demo_ws, "demo-phantoms", "test", method="cam", smooth=0)
    assert plain.table.iloc[0]["pointing"] == pytest.approx(34 / 37)
    assert cam.table.iloc[0]["pointing"] == pytest.approx(36 / 37)
    assert crm.table.iloc[0]["top_box_iou@0.7"] >= 0.4  # smoothed maps: a box nearer the peak fits
    # Other box thresholds are scored from the same maps, as a report at that threshold scores them.
    assert crm.table.iloc[0]["top_box_iou@0.5"] == crm.table.iloc[0]["top_box_iou"]
    at_07 = localisation_report(
        [localiser], demo_ws, "demo-phantoms", "test", method="crm_label", threshold=0.7
    ).table.iloc[0]["top_box_iou"]
    assert crm.table.iloc[0]["top_box_iou@0.7"] == pytest.approx(at_07)
    assert at_07 != pytest.approx(crm.table.iloc[0]["top_box_iou"])
    resnet = ROOT / "checkpoints" / "demo-resnet18.safetensors"
    coarse = localisation_report([resnet], demo_ws, "demo-phantoms", "test", method="cam").table.iloc[0]
    assert coarse["pointing"] <= 0.1


@pytest.mark.slow  # two localisation reports of two models
def test_the_two_bundled_localisers_ensemble_map_points_at_the_lesions(demo_ws: Workspace) -> None:
    """The PeerJ ensemble map (mean of the members' normalised maps) of the two demo localisers."""
    names = ("demo-localiser", "demo-localiser-b")
    members = [ROOT / "checkpoints" / f"{name}.safetensors" for name in names]
    for method in ("cam", "crm_label"):
        report = localisation_report(
            members, demo_ws, "demo-phantoms", "test", method=method, extra_thresholds=(0.7,)
        )
        assert list(report.table.index) == [*(f"checkpoints/{name}" for name in names), ENSEMBLE]
        row = report.table.loc[ENSEMBLE]
        assert row["pairs"] == 37
        assert row["pointing"] == pytest.approx(36 / 37)  # bench: 0.93 of 421 fresh phantoms
        assert row["top_box_iou@0.7"] >= 0.4


@pytest.mark.slow  # uses trained_home
def test_pointing_within_a_tolerance_counts_near_peaks_and_never_fewer(trained_ws: Workspace) -> None:
    path = trained_ws.home / "runs" / "tiny" / "best.safetensors"
    near = localisation_report([path], trained_ws, "demo-phantoms", max_images=12, pointing_tolerance=16)
    within, hit = (near.rows[c].eq(True) for c in ("hit_within", "hit"))
    assert (within | ~hit).all()  # a strict hit is a hit within any tolerance
    assert near.table.iloc[0]["pointing_within"] == pytest.approx(within.mean())
    # A tolerance as long as the frame makes every map with positive evidence a hit; strict is unchanged.
    whole = localisation_report([path], trained_ws, "demo-phantoms", max_images=12, pointing_tolerance=FRAME)
    assert whole.table.iloc[0]["pointing_within"] == pytest.approx(whole.rows["hit"].notna().mean())
    assert whole.table.iloc[0]["pointing_within"] > whole.table.iloc[0]["pointing"]
    assert whole.table.iloc[0]["pointing"] == near.table.iloc[0]["pointing"]


def test_excluded_images_are_left_out_of_the_report(demo_ws: Workspace) -> None:
    localiser = ROOT / "checkpoints" / "demo-tiny.safetensors"
    whole = localisation_report([localiser], demo_ws, "demo-phantoms", "test", max_images=6)
    first = whole.rows["image_id"].iloc[0]
    less = localisation_report([localiser], demo_ws, "demo-phantoms", "test", max_images=6, exclude={first})
    assert first not in set(less.rows["image_id"]) and first in set(whole.rows["image_id"])
    assert set(less.rows["image_id"]) - set(whole.rows["image_id"])  # the next boxed image takes its place
