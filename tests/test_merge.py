from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrcore.data.index import DatasetError, IndexedDataset, validate_index
from cxrcore.data.merge import (
    PROXY_LABEL,
    merge_boxes,
    merge_indexes,
    pretrain_dataset,
    proxy_task,
    source_task,
)


def _index(ids: list[str], **labels: list[float]) -> pd.DataFrame:
    return validate_index(
        pd.DataFrame({"image_id": ids, "path": ids, "patient_id": ["p"] * len(ids), **labels})
    )


def test_merge_aligns_labels_with_nan_for_unknown_and_prefixes_ids() -> None:
    nih = _index(["a", "b"], Effusion=[1.0, 0.0], Mass=[0.0, 0.0])
    tb = _index(["a"], Tuberculosis=[1.0])
    merged = merge_indexes({"nih": nih, "tb": tb})
    assert list(merged["image_id"]) == ["nih/a", "nih/b", "tb/a"]
    assert list(merged["source"]) == ["nih", "nih", "tb"]
    assert merged["patient_id"].nunique() == 2  # the same patient id in two sources is two patients
    assert list(merged.columns[-3:]) == ["Effusion", "Mass", "Tuberculosis"]
    assert np.isnan(merged.loc[2, "Effusion"]) and np.isnan(merged.loc[0, "Tuberculosis"])


def test_proxy_task_is_abnormal_when_any_positive_and_unknown_when_undecidable() -> None:
    index = _index(["a", "b", "c", "d"], A=[1.0, 0.0, 0.0, np.nan], B=[np.nan, 0.0, np.nan, np.nan])
    proxy = proxy_task(index)
    values = proxy[PROXY_LABEL].tolist()
    assert values[:2] == [1.0, 0.0] and np.isnan(values[2]) and np.isnan(values[3])
    assert list(proxy.columns[-1:]) == [PROXY_LABEL]


def test_pretrain_dataset_counts_and_needs_input() -> None:
    ds = pretrain_dataset(
        {"x": IndexedDataset(_index(["a", "b"], A=[1.0, 0.0])), "y": IndexedDataset(_index(["c"], B=[0.0]))}
    )
    assert ds.notes["proxy_counts"] == {"1.0": 1, "0.0": 2}
    with pytest.raises(DatasetError, match="nothing to merge"):
        merge_indexes({})


def test_normals_negative_fills_other_sources_labels_only_for_normal_images() -> None:
    nih = _index(["a", "b", "c"], Effusion=[1.0, 0.0, np.nan], Mass=[0.0, 0.0, 0.0])
    tb = _index(["x"], Tuberculosis=[1.0])
    merged = merge_indexes({"nih": nih, "tb": tb}, normals_negative=True)
    tb_col = merged["Tuberculosis"].tolist()
    assert tb_col[1] == 0.0  # b: every NIH label a known 0
    assert np.isnan(tb_col[0]) and np.isnan(tb_col[2])  # a has a finding, c is partly unknown
    assert tb_col[3] == 1.0 and np.isnan(merged.loc[3, "Effusion"])  # a positive is not a normal


def test_folder_class_names_take_the_known_findings_spelling() -> None:
    from cxrcore.labels import canonical_label

    assert canonical_label("PNEUMONIA") == "Pneumonia"
    assert canonical_label("pleural thickening") == "Pleural_Thickening"
    assert canonical_label("Lung Opacity") == "Lung Opacity"
    assert canonical_label("Weird") == "Weird"


def test_merged_boxes_keep_their_images_and_extra_boxes_join_by_file() -> None:
    nih = IndexedDataset(
        index=_index(["a.png", "b.png"], Effusion=[1.0, 0.0]),
        boxes=pd.DataFrame(
            {"image_id": ["a.png"], "label": ["Effusion"], "x": [1.0], "y": [2.0], "w": [3.0], "h": [4.0]}
        ),
    )
    tb = IndexedDataset(index=_index(["t.png"], Tuberculosis=[1.0]))
    # RSNA-style: own ids, the same files as NIH rows; one box on a file the merge does not have
    rsna_index = validate_index(
        pd.DataFrame(
            {
                "image_id": ["r1", "r2"],
                "path": ["b.png", "zzz.png"],
                "patient_id": ["p", "q"],
                "Pneumonia": [1.0, 1.0],
            }
        )
    )
    rsna = IndexedDataset(
        index=rsna_index,
        boxes=pd.DataFrame(
            {
                "image_id": ["r1", "r2"],
                "label": ["Lung Opacity"] * 2,
                "x": [5.0, 6.0],
                "y": [0.0, 0.0],
                "w": [1.0, 1.0],
                "h": [1.0, 1.0],
            }
        ),
    )
    merged = merge_indexes({"nih": nih.index, "tb": tb.index})
    boxes = merge_boxes({"nih": nih, "tb": tb}, merged, {"rsna": rsna})
    assert list(boxes["image_id"]) == ["nih/a.png", "nih/b.png"]
    assert list(boxes["label"]) == ["Effusion", "Lung Opacity"] and list(boxes["x"]) == [1.0, 5.0]


def test_source_task_has_one_label_per_source() -> None:
    merged = merge_indexes(
        {"nih": _index(["a", "b"], Effusion=[1.0, 0.0]), "tb": _index(["a"], Tuberculosis=[1.0])}
    )
    task = source_task(merged)
    assert list(task.columns[-2:]) == ["nih", "tb"]
    assert task["nih"].tolist() == [1.0, 1.0, 0.0] and task["tb"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(DatasetError, match="merged dataset"):
        source_task(_index(["a"], A=[1.0]))
