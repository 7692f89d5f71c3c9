"""JSON logs (``RADSHARE_LOG_FORMAT=json``): one object a line, with the hygiene of the plain ones (docs/security.md
A21).

python-json-logger writes every attribute a caller attached to a record (``extra=``) into the object. Plain logs
show only the message, so an attribute would be a new way out for personal data: Django's request logger attaches
the request, whose text holds the query string (the share code travels in one), and uvicorn attaches a coloured
copy of its message. Only the fields named here are written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# The fields of every line, as (record attribute, name in the line).
BASE_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger", "message": "message"}
# Attributes a record may carry that are written too: the access log's (core/middleware.py::RequestLogMiddleware)
# and an exception's traceback.
EXTRA_FIELDS = frozenset({"method", "path", "status", "duration_ms", "exc_info", "stack_info"})


class JsonFormatter(_JsonFormatter):
    """``{"time", "level", "logger", "message"}`` plus the allowed extra fields; the time in UTC, ISO 8601."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(list(BASE_FIELDS), rename_fields=BASE_FIELDS, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in [k for k in log_data if k not in BASE_FIELDS.values() and k not in EXTRA_FIELDS]:
            del log_data[key]
