from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png

from cxrcore.data.adapters import get_adapter, load_source
from cxrcore.data.index import DatasetError
from cxrcore.labels import NIH14_LABELS


def _nih_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    labels = tmp_path / "Data_Entry_2017.csv"
    labels.write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
        "00000001_000.png,Cardiomegaly|Effusion,0,1,57,M,PA,2682,2749,0.143,0.143\n"
        "00000001_001.png,No Finding,1,1,58,M,PA,2894,2729,0.143,0.143\n"
        "00000002_000.png,Pleural_Thickening,0,2,40,F,AP,2500,2048,0.168,0.168\n"
        "00000003_000.png,Infiltration,0,3,33,F,PA,2500,2048,0.168,0.168\n"
    )
    images = tmp_path / "images" / "images_001"
    for name in ("00000001_000.png", "00000001_001.png", "00000002_000.png"):
        write_png(images / name, (128, 128))
    boxes = tmp_path / "BBox_List_2017.csv"
    boxes.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Cardiomegaly,512,256,256,128\n"
        "00000003_000.png,Infiltrate,10,10,100,100\n"
    )
    return labels, tmp_path / "images", boxes


def test_nih14_multi_hot_missing_images_and_box_rescaling(tmp_path: Path) -> None:
    labels, images, boxes = _nih_files(tmp_path)
    ds = load_source("nih14", labels_csv=labels, images_dir=images, bbox_csv=boxes)
    index = ds.index
    assert list(index["image_id"]) == ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    assert ds.labels == list(NIH14_LABELS)
    assert ds.notes["dropped_missing_image"] == 1
    row = index.set_index("image_id").loc["00000001_000.png"]
    assert (row["Cardiomegaly"], row["Effusion"], row["Mass"]) == (1.0, 1.0, 0.0)
    assert index.set_index("image_id").loc["00000001_001.png", list(NIH14_LABELS)].sum() == 0  # No Finding
    assert list(index["patient_id"]) == ["00000001", "00000001", "00000002"]
    assert list(index["view"]) == ["PA", "PA", "AP"]
    # 1024 px box on a 128 px file: scaled by 1/8; the box of the missing image is gone.
    assert ds.boxes[["x", "y", "w", "h"]].iloc[0].tolist() == [64.0, 32.0, 32.0, 16.0]
    assert len(ds.boxes) == 1


def test_nih14_label_only_mode_keeps_every_row(tmp_path: Path) -> None:
    labels, _, boxes = _nih_files(tmp_path)
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("00000003_000.png\n")
    ds = load_source("nih14", labels_csv=labels, bbox_csv=boxes, test_list=test_list)
    assert len(ds.index) == 4 and ds.notes["label_only"] is True
    assert ds.index["path"].isna().all()
    assert ds.index.set_index("image_id").loc["00000003_000.png", "Infiltration"] == 1.0
    assert list(ds.index["split"]) == ["train", "train", "train", "test"]
    assert sorted(ds.boxes["label"]) == ["Cardiomegaly", "Infiltration"]  # official "Infiltrate" renamed


def test_rsna_with_dicom_names_and_with_a_mapping(tmp_path: Path) -> None:
    labels = tmp_path / "stage_2_train_labels.csv"
    labels.write_text(
        "patientId,x,y,width,height,Target\n"
        "aaa,,,,,0\n"
        "bbb,100,200,300,400,1\n"
        "bbb,600,200,200,400,1\n"
        "ccc,,,,,0\n"
    )
    folder = tmp_path / "png"
    write_png(folder / "00000007_000.png", (512, 512))
    write_png(folder / "00000008_002.png", (512, 512))
    mapping = tmp_path / "map.csv"
    mapping.write_text(
        "patientId,nih_image\naaa,00000007_000.png\nbbb,00000008_002.png\nccc,00000009_000.png\n"
    )
    ds = load_source("rsna", labels_csv=labels, images_dir=folder, mapping_csv=mapping)
    assert list(ds.index["image_id"]) == ["00000007_000.png", "00000008_002.png"]
    assert list(ds.index["patient_id"]) == ["00000007", "00000008"]
    assert list(ds.index["Lung Opacity"]) == [0.0, 1.0]
    assert ds.notes["dropped_missing_image"] == 1
    assert ds.boxes[["x", "y", "w", "h"]].iloc[0].tolist() == [50.0, 100.0, 150.0, 200.0]


def test_folder_split_binary_and_patient_pattern(tmp_path: Path) -> None:
    for split, cls, name in [
        ("train", "0_normal", "00000001_000.png"),
        ("train", "1_abnormal", "00000002_000.png"),
        ("val", "0_normal", "00000001_001.png"),
        ("test", "1_abnormal", "00000003_000.png"),
    ]:
        write_png(tmp_path / split / cls / name)
    ds = load_source("folder", root=tmp_path)
    assert ds.labels == ["abnormal"]
    assert list(ds.index["split"]) == ["test", "train", "train", "valid"]
    assert list(ds.index["patient_id"]) == ["00000003", "00000001", "00000002", "00000001"]
    assert ds.index.set_index("image_id").loc["train/1_abnormal/00000002_000.png", "abnormal"] == 1.0
    custom = load_source("folder", root=tmp_path, patient_pattern=r"^(\d{4})")
    assert set(custom.index["patient_id"]) == {"0000"}
    with pytest.raises(DatasetError, match="does not match"):
        load_source("folder", root=tmp_path, patient_pattern=r"^(x\d+)")


def test_folder_multiclass_is_one_hot(tmp_path: Path) -> None:
    for cls in ("covid", "pneumonia", "tb"):
        write_png(tmp_path / cls / f"{cls}1.png")
    ds = load_source("folder", root=tmp_path)
    assert ds.labels == ["covid", "Pneumonia", "tb"]
    np.testing.assert_array_equal(ds.index[ds.labels].to_numpy(), np.eye(3))
    assert "split" not in ds.index.columns


def test_boxes_csv_labels_from_boxes_plus_constant_labels(tmp_path: Path) -> None:
    for name in ("tb1.png", "tb2.png", "tb3.png"):
        write_png(tmp_path / "images" / name)
    table = tmp_path / "boxes.csv"
    table.write_text("image,label,x,y,w,h\ntb1,Active,1,2,3,4\ntb1,Obsolete,5,5,5,5\ntb2,Active,0,0,9,9\n")
    ds = load_source(
        "boxes-csv", boxes_csv=table, images_dir=tmp_path / "images", set_labels="Tuberculosis=1"
    )
    frame = ds.index.set_index("image_id")
    assert ds.labels == ["Active", "Obsolete", "Tuberculosis"]
    assert frame.loc["tb1.png", ["Active", "Obsolete"]].tolist() == [1.0, 1.0]
    assert frame.loc["tb3.png", ["Active", "Obsolete", "Tuberculosis"]].tolist() == [0.0, 0.0, 1.0]
    assert len(ds.boxes) == 3 and set(ds.boxes["image_id"]) == {"tb1.png", "tb2.png"}


def test_generic_csv_in_course_notebook_layout(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "imgs" / name)
    table = tmp_path / "train-small.csv"
    table.write_text(
        "Image,Atelectasis,Cardiomegaly,PatientId\nimgs/a.png,0,1,11\nimgs/b.png,1,0,12\nimgs/c.png,1,1,13\n"
    )
    ds = load_source("csv", csv_path=table)
    assert ds.labels == ["Atelectasis", "Cardiomegaly"]
    assert list(ds.index["patient_id"]) == ["11", "12"]
    assert ds.notes["dropped_missing_image"] == 1


@pytest.mark.parametrize(("policy", "expected"), [("nan", np.nan), ("zeros", 0.0), ("ones", 1.0)])
def test_chexpert_uncertain_labels_follow_policy(tmp_path: Path, policy: str, expected: float) -> None:
    from cxrcore.labels import CHEXPERT_LABELS

    rel = "CheXpert-v1.0-small/train/patient00042/study1/view1_frontal.jpg"
    write_png(tmp_path / rel)
    values = ["-1.0"] + [""] * (len(CHEXPERT_LABELS) - 1)
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
    table = tmp_path / "CheXpert-v1.0-small" / "train.csv"
    table.write_text(f"{header}\n{rel},Female,68,Frontal,AP,{','.join(values)}\n")
    ds = load_source("chexpert", csv_path=table, uncertainty=policy)
    first = ds.index[CHEXPERT_LABELS[0]].iloc[0]
    assert (np.isnan(first) and np.isnan(expected)) or first == expected
    assert ds.index["patient_id"].iloc[0] == "patient00042"
    assert ds.index[list(CHEXPERT_LABELS[1:])].isna().all(axis=None)


def test_unknown_source_and_missing_argument_are_explained() -> None:
    with pytest.raises(DatasetError, match="did you mean 'nih14'"):
        get_adapter("nih15")
    with pytest.raises(DatasetError, match="needs \\['labels_csv'\\]"):
        load_source("nih14")
    with pytest.raises(DatasetError, match="does not take"):
        load_source("folder", root=".", colour="blue")


# ---- real data -------------------------------------------------------------------------------


def test_real_nih_label_file_matches_pandas_counts(data_dir: Path) -> None:
    csv = data_dir / "nih14" / "Data_Entry_2017_v2020.csv.gz"
    ds = load_source("nih14", labels_csv=csv)
    raw = pd.read_csv(csv)
    assert len(ds.index) == len(raw) == 112_120
    tokens = raw["Finding Labels"].str.split("|").explode().value_counts()
    for label in NIH14_LABELS:
        assert ds.index[label].sum() == tokens[label], label
    assert ds.index["patient_id"].nunique() == raw["Patient ID"].nunique()


def test_real_nih_images_with_boxes(data_dir: Path) -> None:
    nih = data_dir / "nih14"
    ds = load_source(
        "nih14",
        labels_csv=nih / "Data_Entry_2017_v2020.csv.gz",
        images_dir=nih / "images",
        bbox_csv=nih / "BBox_List_2017.csv.gz",
    )
    assert len(ds.index) == 524 and ds.index["patient_id"].nunique() == 508
    assert ds.notes["dropped_missing_image"] == 112_120 - 524
    assert len(ds.boxes) > 0
    assert (ds.boxes["x"] + ds.boxes["w"] <= 512 + 1e-6).all()  # rescaled from 1024 to 512 px


def test_real_rsna_boxes_onto_nih_images(data_dir: Path) -> None:
    ds = load_source(
        "rsna",
        labels_csv=data_dir / "rsna" / "stage_2_train_labels.csv.gz",
        images_dir=data_dir / "nih14" / "images",
        mapping_csv=data_dir / "rsna" / "rsna_to_nih.csv",
    )
    assert 0 < len(ds.index) <= 524
    positives = set(ds.index.loc[ds.index["Lung Opacity"] == 1, "image_id"])
    assert set(ds.boxes["image_id"]) == positives
    assert (ds.boxes[["x", "y"]] >= 0).all(axis=None) and (ds.boxes["x"] + ds.boxes["w"] <= 512 + 1e-6).all()


def test_real_tbx11k_and_kermany(data_dir: Path) -> None:
    tb = load_source(
        "boxes-csv",
        boxes_csv=data_dir / "tbx11k" / "boxes.csv",
        images_dir=data_dir / "tbx11k" / "images",
        set_labels="Tuberculosis=1",
    )
    assert len(tb.index) == 400
    assert set(tb.labels) == {"ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "Tuberculosis"}
    kermany = load_source("folder", root=data_dir / "kermany")
    assert len(kermany.index) == 149 and kermany.labels == ["Pneumonia"]
    assert int(kermany.index["Pneumonia"].sum()) == 75
