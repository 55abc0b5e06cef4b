"""Commands for batch prediction, evaluation and ensembles of checkpoints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

from cxrcore.cli.output import EXIT_ERROR, ImageBar, NamedBars, emit
from cxrcore.data.detections import DEFAULT_SCORE_THRESHOLD
from cxrcore.data.index import SPLIT_CHOICES, TEST_SPLIT
from cxrcore.evaluate.box_fusion import FUSION_METHODS
from cxrcore.evaluate.classification import (
    DEFAULT_THRESHOLD_RULE,
    N_BOOT,
    THRESHOLD_RULE_NAMES,
    THRESHOLD_RULES,
)
from cxrcore.evaluate.ensemble import METHOD_NAMES, METHODS, check_method
from cxrcore.store import Workspace

SHOWN = ["n", "positives", "auroc", "auroc_lo", "auroc_hi", "ap", "threshold", "sensitivity", "specificity"]
DETECTION_SHOWN = [
    "n_boxes",
    "mAP@0.25",
    "mAP@0.5",
    "mAR@0.5",
    "F1@0.5",
    "mAP@0.75",
    "coco_mAP",
    "rsna",
    "cpm",
]


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a checkpoint over a dataset split and store the table in the workspace."""
    if args.background:
        return _predict_in_background(args)
    from cxrcore.evaluate.predict import predict

    with ImageBar(f"predicting {args.split}") as bar:
        preds = predict(
            args.checkpoint,
            Workspace(),
            args.dataset,
            args.split,
            batch_size=args.batch_size,
            workers=args.workers,
            refresh=args.refresh,
            progress=bar,
        )
    info = {**preds.meta, "from_cache": preds.from_cache}
    emit(info, args.json, lambda: "\n".join(f"{k:>22}: {v}" for k, v in info.items()))
    return 0


def _predict_in_background(args: argparse.Namespace) -> int:
    """Start (or find) a background prediction and print its status; never waits for it."""
    from cxrcore.evaluate import background

    status = background.start(args.checkpoint, Workspace(), args.dataset, args.split, retry=args.refresh)
    info = {"key": status.key, "state": status.state, "done": status.done, "total": status.total}
    if status.error:
        info["error"] = status.error
    emit(info, args.json, lambda: "\n".join(f"{k:>8}: {v}" for k, v in info.items()))
    return EXIT_ERROR if status.state == background.FAILED else 0


def _is_detector(path: str) -> bool:
    """Whether a checkpoint file holds a detector (read from its card, without loading weights)."""
    from cxrcore.models.card import read_card

    return read_card(path).task == "detect"


def _score_threshold(given: float | None, checkpoints: list[str]) -> tuple[float, str]:
    """The box score cut to count boxes from: the one given, else the cards' (chosen on validation or 0.5)."""
    if given is not None:
        return given, "given with --score-threshold"
    from cxrcore.models.card import read_card
    from cxrcore.models.readout import shared_score_threshold

    return shared_score_threshold([read_card(path) for path in checkpoints])


def cmd_evaluate_detector(args: argparse.Namespace) -> int:
    """Box metrics and image-level AUROC of a detector on a split; heat-map boxes beside it on request."""
    from cxrcore.evaluate.detector_eval import compare_box_sources, evaluate_detector

    ws = Workspace()
    score, source = _score_threshold(args.score_threshold, [args.checkpoint])
    with ImageBar("detecting") as bar:
        result = evaluate_detector(
            args.checkpoint,
            ws,
            args.dataset,
            args.split,
            score_threshold=score,
            n_boot=args.bootstrap,
            progress=bar,
        )
        compared = None
        if args.heatmaps:
            compared = compare_box_sources(
                [args.checkpoint], args.heatmaps, ws, args.dataset, args.split, method=args.heatmap_method,
                score_threshold=score,
            )  # fmt: skip
    payload: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "task": "detect",
        "dataset": args.dataset,
        "split": args.split,
        "n_images": len(result.stored.image_ids),
        "score_threshold": score,
        "score_threshold_source": source,
        "boxes": result.report.reset_index().to_dict(orient="records"),
        "image_level": result.image_level.reset_index(names="label").to_dict(orient="records"),
    }
    if compared is not None:
        payload["heat_map_comparison"] = compared.to_dict(orient="records")

    def text() -> str:
        head = (
            f"{args.checkpoint} on {args.dataset}/{args.split}: {payload['n_images']} images; "
            f"mAR / F1 / RSNA at score >= {score:g} ({source})"
        )
        cols = [c for c in DETECTION_SHOWN if c in result.report.columns]
        parts = [head, result.report[cols].to_string(float_format=lambda v: f"{v:.3f}")]
        parts += ["\nimage level (highest box score per class)"]
        shown = [c for c in SHOWN if c in result.image_level.columns and c != "threshold"]
        parts.append(result.image_level[shown].to_string(float_format=lambda v: f"{v:.3f}"))
        if compared is not None:
            overall = compared[compared["class"] == "overall"].set_index("source")
            parts += ["\nthe same metrics, overall, for heat-map boxes on the same images"]
            parts.append(overall[cols].to_string(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(parts)

    emit(payload, args.json, text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Metrics of a checkpoint on a split, thresholds chosen on the validation split."""
    if _is_detector(args.checkpoint):
        return cmd_evaluate_detector(args)
    from cxrcore.evaluate.report import evaluate_checkpoint

    with ImageBar("predicting") as bar:
        result = evaluate_checkpoint(
            args.checkpoint,
            Workspace(),
            args.dataset,
            args.split,
            rule=args.threshold,
            target=args.target,
            n_boot=args.bootstrap,
            progress=bar,
            by=args.by,
        )
    payload = {
        "checkpoint": args.checkpoint,
        "dataset": args.dataset,
        "split": args.split,
        "n_images": len(result.predictions.table),
        "threshold_rule": result.threshold_rule,
        "threshold_source": result.threshold_source,
        "thresholds": result.thresholds,
        "metrics": result.summary,
    }
    if args.by:
        payload["by"] = {"column": args.by, "metrics": result.groups}

    def text() -> str:
        head = (
            f"{args.checkpoint} on {args.dataset}/{args.split}: {payload['n_images']} images, "
            f"thresholds: {result.threshold_source}"
        )
        cols = [c for c in SHOWN if c in result.summary.columns]
        tables = [head, result.summary[cols].to_string(float_format=lambda v: f"{v:.3f}")]
        for value, table in result.groups.items():
            tables.append(f"\n{args.by} = {value}: {int(table.loc['macro', 'n'])} label values")
            tables.append(table[cols].to_string(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(tables)

    emit(payload, args.json, text)
    return 0


def cmd_ensemble_detectors(args: argparse.Namespace) -> int:
    """Detectors and their fused boxes compared on a split, by the detection report's overall row."""
    from cxrcore.evaluate.detector_eval import compare_detector_ensembles

    given = args.methods if args.methods != ",".join(METHODS) else ",".join(FUSION_METHODS)
    methods = [m.strip() for m in given.split(",") if m.strip()]
    score, source = _score_threshold(args.score_threshold, args.checkpoints)
    with NamedBars() as bars:
        table = compare_detector_ensembles(
            args.checkpoints,
            Workspace(),
            args.dataset,
            args.split,
            methods=methods,
            score_threshold=score,
            progress=bars,
        )
    payload = {
        "dataset": args.dataset,
        "split": args.split,
        "task": "detect",
        "score_threshold": score,
        "score_threshold_source": source,
        "table": table.to_dict("records"),
    }
    cols = ["model", "kind", *[c for c in DETECTION_SHOWN if c in table.columns]]

    def text() -> str:
        head = f"mAR / F1 / RSNA at score >= {score:g} ({source})"
        return head + "\n" + table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")

    emit(payload, args.json, text)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    """Members and ensembles (fitted on validation) compared on a split."""
    tasks = {_is_detector(path) for path in args.checkpoints}
    if tasks == {True}:
        return cmd_ensemble_detectors(args)
    if len(tasks) > 1:
        print("error: an ensemble is of classifiers or of detectors, not both", file=sys.stderr)
        return EXIT_ERROR
    from cxrcore.evaluate.report import MEAN_ROW, best_marks, compare_ensembles

    methods = [check_method(m.strip()) for m in args.methods.split(",") if m.strip()]
    with NamedBars() as bars:
        result = compare_ensembles(
            args.checkpoints,
            Workspace(),
            args.dataset,
            methods,
            split=args.split,
            rule=args.threshold,
            n_boot=args.bootstrap,
            progress=bars,
        )
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "split": args.split,
        "labels": list(result.labels),
        "models": result.kinds,
        "fitted": result.fitted,
        "table": result.table.to_dict(orient="records"),
    }

    def text() -> str:
        mean = best_marks(result.table)
        deltas = result.table[(result.table["label"] == MEAN_ROW) & (result.table["kind"] == "ensemble")]
        extra = deltas.set_index("model")[["vs_best_member", "delta_auroc"]]
        return (
            f"{args.dataset}/{args.split}, mean over {len(result.labels)} label(s); * = best\n"
            + mean.to_string()
            + "\n\n"
            + pd.DataFrame(extra).to_string(float_format=lambda v: f"{v:+.3f}")
        )

    emit(payload, args.json, text)
    return 0


def _common(parser: argparse.ArgumentParser, split_default: str = TEST_SPLIT) -> None:
    parser.add_argument("--dataset", required=True, help="a registered dataset")
    parser.add_argument("--split", default=split_default, choices=SPLIT_CHOICES)
    parser.add_argument("--json", action="store_true")


def _thresholds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        default=DEFAULT_THRESHOLD_RULE,
        choices=THRESHOLD_RULES,
        help="operating point chosen on the validation split: "
        + "; ".join(f"{rule} = {name}" for rule, name in THRESHOLD_RULE_NAMES.items()),
    )
    parser.add_argument("--bootstrap", type=int, default=N_BOOT, help="bootstrap resamples for the AUROC CI")


def add_evaluation_commands(groups: Any) -> None:
    """The predict, evaluate and ensemble commands."""
    pred = groups.add_parser("predict", help="predict a checkpoint over a dataset split (stored, reused)")
    pred.add_argument("checkpoint")
    _common(pred)
    pred.add_argument("--batch-size", type=int, default=64)
    pred.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    pred.add_argument("--refresh", action="store_true", help="predict again even if stored")
    pred.add_argument(
        "--background",
        action="store_true",
        help="start the prediction in a low-priority background process and return at once (run again "
        "to see its progress; with --refresh, a failed one is started again)",
    )
    pred.set_defaults(func=cmd_predict)
    ev = groups.add_parser("evaluate", help="metrics with confidence intervals for a checkpoint")
    ev.add_argument("checkpoint")
    _common(ev)
    _thresholds(ev)
    ev.add_argument("--target", type=float, help="target sensitivity or specificity for those rules")
    ev.add_argument(
        "--by", help="also report within each value of this index column (e.g. source, for merged datasets)"
    )
    ev.add_argument(
        "--score-threshold",
        type=float,
        help="detectors: boxes scoring at least this count for mAR, F1 and the RSNA score (default: the "
        "cut in the model card, chosen on validation by checkpoint calibrate, else "
        f"{DEFAULT_SCORE_THRESHOLD}; mAP and FROC sweep every score)",
    )
    ev.add_argument(
        "--heatmaps",
        nargs="+",
        metavar="CLASSIFIER",
        help="detectors: also score these classifiers' heat-map boxes on the same images, in one table",
    )
    ev.add_argument(
        "--heatmap-method", default="crm", help="the map --heatmaps draws boxes from (cam or crm)"
    )
    ev.set_defaults(func=cmd_evaluate)
    ens = groups.add_parser("ensemble", help="compare checkpoints and their ensembles")
    ens.add_argument("checkpoints", nargs="+")
    _common(ens)
    _thresholds(ens)
    ens.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated ensemble methods: "
        + "; ".join(f"{method} = {name}" for method, name in METHOD_NAMES.items())
        + f"; for detectors: {', '.join(FUSION_METHODS)} (default all)",
    )
    ens.add_argument(
        "--score-threshold",
        type=float,
        help="detectors: the score from which boxes count for mAR, F1, RSNA (default: the lowest of the "
        f"members' cuts in their model cards, {DEFAULT_SCORE_THRESHOLD} for a member without one)",
    )
    ens.set_defaults(func=cmd_ensemble)
