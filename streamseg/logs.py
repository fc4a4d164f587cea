"""Log output of the command line: readable text, or one JSON object per line for log shippers.

The JSON formatter is the standard library's ``logging.Formatter`` with a ``format`` that builds
a dict: the fields are few and fixed, so a dependency (python-json-logger, structlog) would add
nothing. Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
``stream`` where the record names one (``extra={"stream": ...}``, or
logged on a stream's own reader or output thread), ``exception`` with its traceback, and any other ``extra=``
values (the status line adds ``streams``). Set up only by the CLI: importing streamseg configures
no logging.

Messages are already free of passwords where they are made (sources scrub URLs, see
``uri.redact``/``uri.scrub``); this module adds no URL of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        stream = _thread_stream(record.threadName)
        if stream is not None:
            entry["stream"] = stream
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _thread_stream(thread: str | None) -> str | None:
    """The stream a pipeline thread works for: readers are ``source-NAME``, workers ``outputs-NAME``."""
    for prefix in ("source-", "outputs-"):
        if thread and thread.startswith(prefix):
            return thread[len(prefix) :]
    return None


def setup(verbose: bool = False, fmt: str = "text") -> None:
    """Log to stderr in ``fmt`` (text or json), INFO (DEBUG when ``verbose``) and up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    # Not force=True: a host that configured logging first (pytest's capture, an embedding app) keeps it.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
