"""Run one training job: ``python -m cxrcore.train --config RUN.json [--job ID] [--resume]``.

RUN.json (or .toml) holds a TrainConfig. With ``--job`` the run reports to that row of the workspace's
jobs table (this is how the dashboard and ``cxr train --background`` launch it); otherwise it logs.
Under ``torchrun --nproc-per-node N -m cxrcore.train --config RUN.json`` it trains with DDP; only
rank 0 reports and writes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from cxrcore.store import Workspace
from cxrcore.train.config import TrainConfig
from cxrcore.train.loop import run_training
from cxrcore.train.progress import LogReporter, Reporter


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, report the outcome; exit status 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m cxrcore.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="TrainConfig as .json or .toml")
    parser.add_argument("--job", type=int, help="jobs-table row to report to")
    parser.add_argument("--resume", action="store_true", help="continue the run named in the config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ws = Workspace()
    rank = int(os.environ.get("RANK", "0"))
    reporter: Reporter = LogReporter()
    if args.job is not None and rank == 0:
        from cxrcore.train.jobs import JobReporter

        reporter = JobReporter(ws, args.job)
    try:
        cfg = TrainConfig.from_file(args.config)
        result = run_training(cfg, ws, reporter, resume=args.resume)
    except Exception as exc:  # the job row must say why the run ended
        logging.getLogger(__name__).error("training failed:\n%s", traceback.format_exc())
        if hasattr(reporter, "failed"):
            reporter.failed(f"{type(exc).__name__}: {exc}")
        return 1
    if result.stopped == "cancelled" and hasattr(reporter, "cancelled"):
        reporter.cancelled()
    elif hasattr(reporter, "finished"):
        reporter.finished(result.to_dict())
    logging.getLogger(__name__).info("finished: %s", result.to_dict() | {"history": len(result.history)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
