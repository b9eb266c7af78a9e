"""Run logs: a readable text log (console + file) and TensorBoard scalars, main process only."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


class _TqdmHandler(logging.StreamHandler):
    """Console output that does not break an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def get_logger(log_file: Path | None = None, *, enabled: bool = True) -> logging.Logger:
    """The `restore` logger writing to the console and, if given, to `log_file`."""
    logger = logging.getLogger("restore")
    logger.setLevel(logging.INFO if enabled else logging.ERROR)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None and enabled:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


class Scalars:
    """TensorBoard scalars (no-op when disabled or on non-main processes)."""

    def __init__(self, log_dir: Path | None) -> None:
        self.writer: Any = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def add(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
