"""Progress reporting from a training run: the loop calls a Reporter; the console and jobs implement it."""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """What the training loop tells the outside world."""

    def started(self, total_epochs: int, steps_per_epoch: int, info: dict[str, Any]) -> None:
        """The run is set up (dataset sizes, device, resumed epoch in ``info``)."""

    def step(self, epoch: int, step: int, loss: float) -> None:
        """One optimiser step finished (epoch and step count from 1)."""

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """An epoch finished; ``record`` holds train loss, validation loss/AUROC, lr, seconds."""

    def should_stop(self) -> bool:
        """Whether the run was asked to stop (cancel)."""


class LogReporter:
    """Reports through logging only (used by tests and non-rank-0 processes)."""

    def started(self, total_epochs: int, steps_per_epoch: int, info: dict[str, Any]) -> None:
        log.info("training %d epochs x %d steps: %s", total_epochs, steps_per_epoch, info)

    def step(self, epoch: int, step: int, loss: float) -> None:
        log.debug("epoch %d step %d loss %.4f", epoch, step, loss)

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        log.info("epoch %d: %s", epoch, record)

    def should_stop(self) -> bool:
        return False
