"""The README's Results tables, re-created from the checkpoints on the real data of $CXR_DATA_DIR.

Run: CXR_DATA_DIR=../shared/data .venv/bin/python bench/bench_real_tables.py [--bootstrap 1000]

Reads the bundled checkpoint (checkpoints/real-densenet121) and the experiment runs that
bench/real_experiments.py trains into $CXR_HOME/runs; a table whose runs are missing says so. Writes
bench/REAL_RESULTS.md (the tables) and prints one JSON object with the headline figures:
1. the bundled model on the test split: AUROC with 95% CI and positives, per label, overall and per source;
2. shortcut check: how well a model tells the sources apart;
3. modality-specific transfer: proxy-pretrained vs random initialisation on paediatric pneumonia (DeLong);
4. ensembles of three architectures: the four strategies vs the members, and ensemble CRM vs member CRM
   against the NIH, RSNA and TBX11K boxes (PeerJ protocol);
5. custom CNN vs standard architectures: accuracy, AUROC, parameters, time per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from cxrcore.evaluate.delong import delong_test
from cxrcore.evaluate.map_localisation import localisation_report
from cxrcore.evaluate.report import compare_ensembles, evaluate_checkpoint
from cxrcore.models.card import read_card
from cxrcore.store import Workspace
from cxrcore.workflows.realdata import (
    ENSEMBLE_RUNS,
    REAL_DATASET,
    SOURCE_DATASET,
    TRANSFER_TARGET,
    real_data_dir,
    register_real_datasets,
)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "checkpoints" / "real-densenet121.safetensors"
OUT = ROOT / "bench" / "REAL_RESULTS.md"


def _markdown(frame: pd.DataFrame, index: bool = False) -> str:
    """A pipe table (the README's format) of a small frame."""
    if index:
        frame = frame.reset_index()
    cells = [[str(c) for c in frame.columns]] + [
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines)


def _run(ws: Workspace, name: str) -> Path | None:
    path = ws.home / "runs" / name / "best.safetensors"
    return path if path.is_file() else None


def _ci(row: pd.Series) -> str:
    if pd.isna(row["auroc"]):
        return "n/a (one class)"
    if pd.isna(row["auroc_lo"]):  # the macro row: a mean of per-label figures has no bootstrap CI here
        return f"{row['auroc']:.3f}"
    return f"{row['auroc']:.3f} [{row['auroc_lo']:.3f}, {row['auroc_hi']:.3f}]"


def bundled_table(ws: Workspace, n_boot: int) -> tuple[str, dict]:
    """Per label: AUROC [CI] (positives / images) on the whole test split and within each source."""
    if not BUNDLED.is_file():
        return "Missing: checkpoints/real-densenet121.safetensors.", {}
    result = evaluate_checkpoint(BUNDLED, ws, REAL_DATASET, "test", n_boot=n_boot, by="source")
    columns = {"all sources": result.summary, **result.groups}
    rows = []
    for label in [*result.predictions.labels, "macro"]:
        row = {"label": label}
        for name, table in columns.items():
            t = table.loc[label]
            row[name] = f"{_ci(t)} ({int(t['positives'])}/{int(t['n'])})" if t["n"] else ""
        rows.append(row)
    card = (read_card(BUNDLED).evaluation or {}).get("metrics", {})
    matches = all(
        card.get(label, {}).get("auroc") is None
        if pd.isna(result.summary.loc[label, "auroc"])
        else abs(card.get(label, {}).get("auroc", -1) - result.summary.loc[label, "auroc"]) < 1e-6
        for label in result.predictions.labels
    )
    text = _markdown(pd.DataFrame(rows))
    return text, {
        "macro_auroc": round(float(result.summary.loc["macro", "auroc"]), 4),
        "per_source_macro_auroc": {
            k: round(float(v.loc["macro", "auroc"]), 4) for k, v in result.groups.items()
        },
        "card_matches_evaluate": bool(matches),
        "test_images": len(result.predictions.table),
    }


def shortcut_table(ws: Workspace, n_boot: int) -> tuple[str, dict]:
    """AUROC of telling each source from the others."""
    path = _run(ws, "real-source-resnet18")
    if path is None:
        return "Missing run: real-source-resnet18 (bench/real_experiments.py).", {}
    result = evaluate_checkpoint(path, ws, SOURCE_DATASET, "test", n_boot=n_boot)
    table = result.summary.drop(index=["macro", "micro"], errors="ignore")
    shown = pd.DataFrame(
        {
            "source": table.index,
            "AUROC [95% CI]": [_ci(r) for _, r in table.iterrows()],
            "images of this source": table["positives"].astype(int),
            "test images": table["n"].astype(int),
        }
    )
    return _markdown(shown), {"source_auroc": {k: round(float(v), 4) for k, v in table["auroc"].items()}}


def transfer_table(ws: Workspace, n_boot: int) -> tuple[str, dict]:
    """Pneumonia vs normal on Kermany's test split: proxy-pretrained init vs random init, same budget."""
    runs = {
        "random init": _run(ws, "kermany-random"),
        "pretrained (NIH + TBX11K proxy)": _run(ws, "kermany-pretrained"),
    }
    if any(p is None for p in runs.values()):
        return "Missing runs: kermany-random / kermany-pretrained (bench/real_experiments.py).", {}
    results = {k: evaluate_checkpoint(p, ws, TRANSFER_TARGET, "test", n_boot=n_boot) for k, p in runs.items()}
    a, b = results.values()
    y = a.predictions.y_true[:, 0]
    test = delong_test(y, b.predictions.y_prob[:, 0], a.predictions.y_prob[:, 0])
    rows = []
    for name, res in results.items():
        row = res.summary.iloc[0]
        epochs = read_card(runs[name]).history
        rows.append(
            {
                "initialisation": name,
                "AUROC [95% CI]": _ci(row),
                "accuracy": f"{row['accuracy']:.3f}",
                "epochs": len(epochs),
                "best epoch": read_card(runs[name]).epoch,
            }
        )
    text = _markdown(pd.DataFrame(rows))
    text += (
        f"\n\nDeLong, pretrained minus random: ΔAUROC {test.diff:+.3f} "
        f"[{test.diff_lo:+.3f}, {test.diff_hi:+.3f}], p = {test.p_value:.3g}; "
        f"{int(np.nansum(y))} pneumonia / {int((y == 0).sum())} normal test images."
    )
    return text, {
        "auroc_random": round(float(a.summary.iloc[0]["auroc"]), 4),
        "auroc_pretrained": round(float(b.summary.iloc[0]["auroc"]), 4),
        "delong_p": round(float(test.p_value), 4),
    }


def ensemble_tables(ws: Workspace, n_boot: int) -> tuple[str, dict]:
    """Members vs the four ensembles (mean over labels), and CRM localisation against the boxes."""
    paths = [_run(ws, r) for r in ENSEMBLE_RUNS]
    if any(p is None for p in paths):
        return f"Missing runs: {', '.join(ENSEMBLE_RUNS)} (bench/real_experiments.py).", {}
    comparison = compare_ensembles(paths, ws, REAL_DATASET, n_boot=n_boot)
    mean = comparison.table[comparison.table["label"] == "mean"].set_index("model")
    cls = mean[["kind", "auroc", "accuracy", "sensitivity", "specificity", "f1"]].round(3)
    report = localisation_report(paths, ws, REAL_DATASET, "test", method="crm", by="source")
    parts = ["Classification, mean over the 17 labels of the test split:", _markdown(cls, index=True)]
    loc_cols = ["pairs", "mean_iou", "peerj_map", "coco_map", "pointing"]
    for source, table in report.groups.items():
        boxes = "NIH and RSNA boxes on NIH images" if source.startswith("nih") else "TBX11K boxes"
        parts += [
            f"\nCRM localisation, {boxes} (test split):",
            _markdown(table[loc_cols].round(3), index=True),
        ]
    best_member = mean[mean["kind"] == "member"]["auroc"].idxmax()
    return "\n".join(parts), {
        "mean_auroc": {k: round(float(v), 4) for k, v in mean["auroc"].items()},
        "best_member": best_member,
        "crm_peerj_map": {
            s: {k: round(float(v), 4) for k, v in t["peerj_map"].items()} for s, t in report.groups.items()
        },
    }


def architecture_table(ws: Workspace) -> tuple[str, dict]:
    """Custom CNN vs standard architectures: size, speed and test scores (Youden thresholds)."""
    rows = []
    for run in ENSEMBLE_RUNS:
        path = _run(ws, run)
        if path is None:
            continue
        card = read_card(path)
        result = evaluate_checkpoint(path, ws, REAL_DATASET, "test", n_boot=200)
        per_label = result.summary.drop(index=["macro", "micro"])
        seconds = [float(h["seconds"]) for h in card.history if "seconds" in h]
        rows.append(
            {
                "model": card.spec.architecture,
                "input px": card.input_size,
                "parameters (M)": round((card.num_parameters or 0) / 1e6, 2),
                "s / epoch": round(statistics.median(seconds), 1) if seconds else None,
                "epochs to the best checkpoint": len(seconds),
                "test AUROC (macro)": round(float(result.summary.loc["macro", "auroc"]), 3),
                "test accuracy (mean)": round(float(per_label["accuracy"].mean()), 3),
            }
        )
    if not rows:
        return "Missing runs (bench/real_experiments.py).", {}
    return _markdown(pd.DataFrame(rows)), {"architectures": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    data = real_data_dir()
    if data is None:
        print(json.dumps({"skipped": "CXR_DATA_DIR not set to the real data folder"}))
        return 0
    ws = Workspace()
    if REAL_DATASET not in {r.name for r in ws.list_datasets()}:
        register_real_datasets(data, say=lambda line: print(line, file=sys.stderr), report=print)
    started = time.perf_counter()
    sections = [
        (
            "1. The bundled model (real-densenet121) on the test split",
            lambda: bundled_table(ws, args.bootstrap),
        ),
        ("2. Shortcut check: telling the sources apart", lambda: shortcut_table(ws, args.bootstrap)),
        ("3. Modality-specific transfer on paediatric pneumonia", lambda: transfer_table(ws, args.bootstrap)),
        ("4. Ensembles of three architectures", lambda: ensemble_tables(ws, args.bootstrap)),
        ("5. Custom CNN vs standard architectures", lambda: architecture_table(ws)),
    ]
    lines = [
        "# Results on real chest X-rays",
        "",
        "Written by `bench/bench_real_tables.py` from the checkpoints; small data (1,073 images, 215 in the "
        "test split), so the confidence intervals are wide. AUROC cells: AUROC [95% bootstrap CI] "
        "(positives / images with a known label).",
    ]
    summary: dict[str, object] = {}
    missing = []
    for title, make in sections:
        text, figures = make()
        lines += ["", f"## {title}", "", text]
        summary.update(figures)
        if not figures:
            missing.append(title.split(".")[0])
    # A workspace without the experiment runs (a fresh clone) must not overwrite the full tables.
    out = OUT if not missing else ROOT / "bench" / "out" / "REAL_RESULTS.partial.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    summary["written"] = str(out.relative_to(ROOT))
    if missing:
        summary["missing_tables"] = missing
        summary["note"] = "run bench/real_experiments.py first (trains the experiment runs)"
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
