"""Log lines of Cronlet's processes (the operator and the executor): JSON, or text that stays on one line.

One record is one line either way, so that a log collector never splits a traceback into many records.
Pure formatting: the caller decides where the lines go.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``fields`` (an attempt's identity, say) are added to every record."""

    def __init__(self, *, fields: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._fields,
        }
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, with newlines (as in tracebacks) escaped to keep one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        return line.replace("\r", "\\r").replace("\n", "\\n")


def timestamp(record: logging.LogRecord) -> str:
    """The record's time as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def formatter(kind: str, *, fields: Mapping[str, object] | None = None) -> logging.Formatter:
    """The formatter for ``--log-format`` / ``CRONLET_LOG_FORMAT``: ``json``, else text."""
    return JsonFormatter(fields=fields) if kind.strip().lower() == "json" else TextFormatter()
