"""The real public chest X-rays of ``$CXR_DATA_DIR``, registered as the bundled real-data model's recipe says.

The recipe is a list of ``python -m cxrcore`` commands, kept here as data: the same commands register
the datasets on a user's machine (``python -m cxrcore demo real-data``), are run by
``bench/real_experiments.py`` before it trains, and are written into the bundled model cards, so a
card says exactly how its data was prepared. ``$CXR_DATA_DIR`` stands for the data folder.
``register_real_datasets`` runs the registration commands in this process, through the functions the
command line calls for them (``cxrcore.workflows.datasets``), and reports each result in the words the
command prints.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cxrcore.errors import is_user_error
from cxrcore.store import Workspace
from cxrcore.workflows.datasets import (
    comma_names,
    merge_datasets,
    merged_line,
    register_source,
    registered_line,
    split_dataset,
    split_table,
)

log = logging.getLogger(__name__)

DATA_ENV = "CXR_DATA_DIR"

# The merged training set of the bundled model: NIH's 14 findings, paediatric pneumonia (Kermany) and
# TBX11K tuberculosis; normal images of one source are negative for the others' labels; RSNA's
# opacity boxes (drawn on NIH files) count as Pneumonia boxes for localisation.
REAL_DATASET = "cxr-real"
SOURCE_DATASET = "cxr-source"  # the same images labelled by source: the shortcut check
PRETRAIN_DATASET = "cxr-pretrain"  # NIH + TBX11K on the normal-vs-abnormal proxy task
TRANSFER_TARGET = "kermany"  # paediatric pneumonia: the repurposing target, unseen in pretraining
# The lesion detector's set: NIH official boxes (nih14_boxes and nih14), RSNA opacity boxes as Pneumonia,
# TBX11K tuberculosis boxes, JSRT nodule squares; films without boxes are negatives.
DETECT_DATASET = "cxr-detect"

REGISTER_COMMANDS: tuple[str, ...] = (
    "data register nih --source nih14 --labels-csv $CXR_DATA_DIR/nih14/Data_Entry_2017_v2020.csv.gz"
    " --images-dir $CXR_DATA_DIR/nih14/images --bbox-csv $CXR_DATA_DIR/nih14/BBox_List_2017.csv.gz",
    "data register rsna --source rsna --labels-csv $CXR_DATA_DIR/rsna/stage_2_train_labels.csv.gz"
    " --images-dir $CXR_DATA_DIR/nih14/images --mapping-csv $CXR_DATA_DIR/rsna/rsna_to_nih.csv",
    "data register kermany --source folder --root $CXR_DATA_DIR/kermany"
    " --patient-pattern '^(person\\d+|(?:NORMAL2-)?IM-\\d+)'",
    "data register tbx --source boxes-csv --boxes-csv $CXR_DATA_DIR/tbx11k/boxes.csv"
    " --images-dir $CXR_DATA_DIR/tbx11k/images --set-labels Tuberculosis=1",
    f"data merge {REAL_DATASET} --normals-negative --from nih,kermany,tbx --boxes-from rsna=Pneumonia"
    " --fractions 0.7,0.1,0.2 --seed 0",
    f"data merge {SOURCE_DATASET} --source-task --from nih,kermany,tbx --fractions 0.7,0.1,0.2 --seed 0",
    f"data merge {PRETRAIN_DATASET} --proxy --from nih,tbx --fractions 0.8,0.2,0.0 --seed 0",
    f"data split {TRANSFER_TARGET} --fractions 0.6,0.1,0.3 --seed 0",
    # The lesion detector's data: every real image with boxes, and NIH films without boxes as negatives.
    "data register nihbox --source nih14 --labels-csv $CXR_DATA_DIR/nih14/Data_Entry_2017_v2020.csv.gz"
    " --images-dir $CXR_DATA_DIR/nih14_boxes/images --bbox-csv $CXR_DATA_DIR/nih14/BBox_List_2017.csv.gz",
    "data register jsrt --source boxes-csv --boxes-csv $CXR_DATA_DIR/jsrt/boxes.csv"
    " --images-dir $CXR_DATA_DIR/jsrt/images",
    f"data merge {DETECT_DATASET} --normals-negative --from nihbox,nih,tbx,jsrt --boxes-from rsna=Pneumonia"
    " --fractions 0.7,0.1,0.2 --seed 0",
)


class RealDataError(RuntimeError):
    """The real data folder is missing or incomplete; the message says what is missing."""


def real_data_dir() -> Path | None:
    """The folder ``$CXR_DATA_DIR`` names, when it exists and holds the NIH images; else None."""
    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    folder = Path(value).expanduser()
    return folder if (folder / "nih14" / "images").is_dir() else None


def command_argv(command: str, data_dir: str | Path, home: str | Path | None = None) -> list[str]:
    """The argument list of one recipe command with the data folder (and workspace folder) filled in."""
    command = command.replace("$CXR_DATA_DIR", shlex.quote(str(data_dir)))
    if home is not None:
        command = command.replace("$CXR_HOME", shlex.quote(str(home)))
    return shlex.split(command)


def _options(tokens: Sequence[str]) -> dict[str, str | bool]:
    """The ``--name value`` options and bare ``--flag``s of a recipe command, by name ('_' for '-')."""
    options: dict[str, str | bool] = {}
    rest = list(tokens)
    while rest:
        token = rest.pop(0)
        if not token.startswith("--"):
            raise ValueError(f"recipe command argument {token!r} is not an option")
        takes_value = bool(rest) and not rest[0].startswith("--")
        options[token[2:].replace("-", "_")] = rest.pop(0) if takes_value else True
    return options


def _run(ws: Workspace, argv: Sequence[str]) -> str:
    """Run one registration command of the recipe as ``python -m cxrcore`` with ``--replace`` would.

    Returns what the command prints about the dataset it registered.
    """
    group, command, name, *rest = argv
    options = _options(rest)
    if (group, command) == ("data", "register"):
        source = str(options.pop("source"))
        return registered_line(register_source(ws, name, source, options, replace=True))
    how: dict[str, Any] = {}
    if "fractions" in options:
        how["fractions"] = str(options.pop("fractions"))
    if "seed" in options:
        how["seed"] = int(options.pop("seed"))
    if (group, command) == ("data", "merge"):
        sources = comma_names(str(options.pop("from")))
        boxes_from = comma_names(str(options.pop("boxes_from", "")))
        flags = {
            flag: bool(options.pop(flag, False)) for flag in ("proxy", "normals_negative", "source_task")
        }
        _check_used(options, argv)
        record = merge_datasets(ws, name, sources, boxes_from=boxes_from, **flags, **how, replace=True)
        return merged_line(record)
    if (group, command) == ("data", "split"):
        stratify = not options.pop("no_stratify", False)
        _check_used(options, argv)
        return split_table(split_dataset(ws, name, stratify=stratify, **how))
    raise ValueError(f"the recipe registers with data register, merge and split, not {' '.join(argv[:2])!r}")


def _check_used(options: dict[str, str | bool], argv: Sequence[str]) -> None:
    if options:
        raise ValueError(
            f"unknown option(s) {', '.join(sorted(options))} in recipe command {shlex.join(argv)}"
        )


def register_real_datasets(
    data_dir: str | Path | None = None,
    say: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Run the recipe's registration commands in the current workspace; returns the commands run.

    ``say`` is told each command before it runs, ``report`` what the command registered (the lines
    ``python -m cxrcore`` prints for it).

    Raises:
        RealDataError: no data folder, or a command failed (its error is logged).
    """
    folder = Path(data_dir) if data_dir is not None else real_data_dir()
    if folder is None or not (folder / "nih14" / "images").is_dir():
        raise RealDataError(
            f"set {DATA_ENV} to the real data folder (with nih14/images); it is not set or incomplete"
        )
    ws = Workspace()
    done = []
    for command in REGISTER_COMMANDS:
        if say is not None:
            say(f"python -m cxrcore {command}")
        try:
            printed = _run(ws, command_argv(command, folder))
        except Exception as exc:
            if not is_user_error(exc):
                raise
            log.error("error: %s", exc)
            raise RealDataError(f"registering the real data failed at: python -m cxrcore {command}") from exc
        if report is not None:
            report(printed)
        done.append(f"python -m cxrcore {command}")
    return done


# The bundled lesion detector (bench/real_detector.py): a Faster R-CNN whose DenseNet-121 trunk is the
# bundled classifier's, frozen ("head only"), at 256 px, for a budget that fits 2 CPU cores.
DETECT_TRAIN: tuple[str, str] = (
    "real-detector",
    f"train --task detect --dataset {DETECT_DATASET} --model faster_rcnn_densenet121"
    " --init checkpoints/real-densenet121.safetensors --freeze-backbone --input-size 256 --epochs 8"
    " --steps-per-epoch 150 --batch-size 4 --lr 5e-4 --seed 0 --run-name real-detector",
)

# The training runs behind the bundled real-data model and the README's Results tables, in order.
# (run name, command); ``$CXR_HOME`` stands for the workspace folder.
TRAIN_COMMANDS: tuple[tuple[str, str], ...] = (
    (
        "real-densenet121",
        f"train --dataset {REAL_DATASET} --model densenet121 --input-size 128 --epochs 20 --lr 1e-3"
        " --batch-size 32 --seed 0 --run-name real-densenet121",
    ),
    (  # the same network fine-tuned at 256 px from the bundled file: 8 x 8 maps instead of 4 x 4
        "real-densenet121-256",
        f"train --dataset {REAL_DATASET} --model densenet121 --init checkpoints/real-densenet121.safetensors"
        " --input-size 256 --epochs 6 --lr 3e-4 --batch-size 16 --seed 0 --run-name real-densenet121-256",
    ),
    (
        "real-resnet18",
        f"train --dataset {REAL_DATASET} --model resnet18 --input-size 128 --epochs 20 --lr 1e-3"
        " --batch-size 32 --seed 0 --run-name real-resnet18",
    ),
    (
        "real-custom_cnn",
        f"train --dataset {REAL_DATASET} --model custom_cnn --input-size 64 --epochs 20 --lr 5e-4"
        " --batch-size 32 --seed 0 --run-name real-custom_cnn",
    ),
    (
        "real-source-resnet18",
        f"train --dataset {SOURCE_DATASET} --model resnet18 --input-size 64 --epochs 6 --lr 1e-3"
        " --seed 0 --run-name real-source-resnet18",
    ),
    (
        "real-pretrain-resnet18",
        f"train --dataset {PRETRAIN_DATASET} --model resnet18 --input-size 128 --epochs 12 --lr 1e-3"
        " --seed 0 --run-name real-pretrain-resnet18",
    ),
    (
        "kermany-random",
        f"train --dataset {TRANSFER_TARGET} --model resnet18 --input-size 128 --epochs 30 --lr 1e-3"
        " --seed 0 --run-name kermany-random",
    ),
    (
        "kermany-pretrained",
        f"train --dataset {TRANSFER_TARGET} --model resnet18 --input-size 128 --epochs 30 --lr 1e-3"
        " --seed 0 --init $CXR_HOME/runs/real-pretrain-resnet18/best.safetensors"
        " --run-name kermany-pretrained",
    ),
)
ENSEMBLE_RUNS = ("real-custom_cnn", "real-resnet18", "real-densenet121")
# How the bundled real-data model's probabilities are calibrated and its operating points chosen
# (on the merged dataset's validation split; bundling runs the same call).
CALIBRATE_COMMAND = (
    f"checkpoint calibrate checkpoints/real-densenet121.safetensors --dataset {REAL_DATASET}"
    " --method auto --threshold youden"
)
# The real-data runs bundled in checkpoints/ (the first is the dashboard's default classifier).
BUNDLED_RUNS = ("real-densenet121", "real-densenet121-256")
