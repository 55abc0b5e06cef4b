"""Which exceptions are a user's to fix: the CLI prints them as one line, the dashboard as one message.

Modules that import PyTorch are loaded only when a command or page needs them, so their error classes
are looked up lazily: an error of a module that was never imported cannot have been raised.
"""

from __future__ import annotations

import sys

from cxrcore.atomic import WriteError
from cxrcore.data.index import DatasetError
from cxrcore.io import ImageReadError
from cxrcore.labels import LabelError
from cxrcore.store import WorkspaceError
from cxrcore.stored_files import StoredFileError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ImageReadError,
    DatasetError,
    LabelError,
    WorkspaceError,
    StoredFileError,
    FileNotFoundError,
    WriteError,  # a full disk or a read-only folder: the user frees room or fixes the rights
)
LAZY_USER_ERRORS = (
    ("cxrcore.models.checkpoint", "CheckpointError"),
    ("cxrcore.models.ensemble", "EnsembleError"),
    ("cxrcore.explain.engine", "ExplainError"),
    ("cxrcore.evaluate.recalibrate", "CalibrationError"),
    ("cxrcore.evaluate.detector_threshold", "ThresholdError"),
    ("cxrcore.workflows.realdata", "RealDataError"),
)


def is_user_error(exc: BaseException) -> bool:
    """Whether an exception is one a user can fix (shown as one line, not a traceback)."""
    lazy = tuple(
        getattr(sys.modules[module], name)
        for module, name in LAZY_USER_ERRORS
        if hasattr(sys.modules.get(module), name)
    )
    return isinstance(exc, USER_ERRORS + lazy)
