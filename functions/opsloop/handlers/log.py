"""Structured log lines (``firebase_functions.logger``) carrying the fields of the run in progress.

Within ``telemetry.run_context(runId=...)`` every line written here, and every ``logging`` record of the
``opsloop`` loggers once ``install`` has run (services log through ``logging``), is one JSON line with
``runId``, which Cloud Logging turns into a field to filter on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from firebase_functions import logger

from .. import telemetry


def info(message: str, **fields: Any) -> None:
    logger.info(message, **{**telemetry.log_fields(), **fields})


def warn(message: str, **fields: Any) -> None:
    logger.warn(message, **{**telemetry.log_fields(), **fields})


def error(message: str, **fields: Any) -> None:
    logger.error(message, **{**telemetry.log_fields(), **fields})


_SEVERITY = {logging.DEBUG: logger.LogSeverity.DEBUG, logging.INFO: logger.LogSeverity.INFO,
             logging.WARNING: logger.LogSeverity.WARNING, logging.ERROR: logger.LogSeverity.ERROR,
             logging.CRITICAL: logger.LogSeverity.CRITICAL}


class StructuredHandler(logging.Handler):
    """A ``logging`` record as a structured line: its message, logger name, exception and the run's fields."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            severity = _SEVERITY.get(record.levelno, logger.LogSeverity.ERROR if record.levelno > logging.ERROR
                                     else logger.LogSeverity.INFO)
            entry: dict[str, Any] = {"severity": severity, "message": record.getMessage(), "logger": record.name,
                                     **telemetry.log_fields()}
            if record.exc_info:
                entry["exception"] = logging.Formatter().formatException(record.exc_info)
            logger.write(entry)  # type: ignore[arg-type]  # a LogEntry with more fields
        except Exception:
            self.handleError(record)


_installed: StructuredHandler | None = None
_install_lock = threading.Lock()


def install() -> None:
    """Route the ``opsloop`` loggers to structured lines (once per process; not to the root logger's plain
    text as well, so a line is not written twice)."""
    global _installed
    with _install_lock:
        if _installed is not None:
            return
        _installed = StructuredHandler()
        package = logging.getLogger("opsloop")
        package.addHandler(_installed)
        package.propagate = False


def uninstall() -> None:
    """Undo ``install`` (tests)."""
    global _installed
    with _install_lock:
        if _installed is None:
            return
        package = logging.getLogger("opsloop")
        package.removeHandler(_installed)
        package.propagate = True
        _installed = None
