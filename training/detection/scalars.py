"""TensorBoard scalars for a training run, or nothing when TensorBoard is not installed.

TensorBoard is in the 'train' extra but optional: a run without it still writes its JSON-lines
log, and says once that no event files are written and how to get them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)


class ScalarLog(Protocol):
    """Where per-step scalars go."""

    def add(self, tag: str, value: float, step: int) -> None:
        """Record ``value`` under ``tag`` at ``step``."""

    def close(self) -> None:
        """Flush and release the log."""


class _NoScalars:
    """A scalar log that keeps nothing (no ``log_dir``, or TensorBoard is not installed)."""

    def add(self, tag: str, value: float, step: int) -> None:
        """Drop the value."""

    def close(self) -> None:
        """Nothing to release."""


class _TensorBoardScalars:
    """Scalars written as TensorBoard event files by ``torch.utils.tensorboard``."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional package

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def add(self, tag: str, value: float, step: int) -> None:
        """Write one scalar event."""
        self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush the event file to disk and close it."""
        self._writer.close()


def tensorboard_available() -> bool:
    """Return whether ``torch.utils.tensorboard`` can be imported (the package is installed)."""
    try:
        import torch.utils.tensorboard  # noqa: F401, PLC0415 - probe only
    except ImportError:
        return False
    return True


def open_scalar_log(log_dir: Path | None) -> ScalarLog:
    """Return a TensorBoard log in ``log_dir``; a log that keeps nothing when it is ``None``.

    When TensorBoard is not installed, say so once (with the fix) and keep nothing.
    """
    if log_dir is None:
        return _NoScalars()
    if not tensorboard_available():
        logger.warning(
            "TensorBoard is not installed, so no event files are written to %s; "
            "install the 'train' extra (pip install 'triage[train]') or 'tensorboard'",
            log_dir,
        )
        return _NoScalars()
    log_dir.mkdir(parents=True, exist_ok=True)
    return _TensorBoardScalars(log_dir)
