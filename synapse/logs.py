"""One log format for the whole process: gunicorn's lines, Django's, and one line per request.

`SYNAPSE_LOG_FORMAT=json` (the container image's default) writes one JSON object per line;
`text` writes the classic plain line with the request fields appended as key=value. The same
configuration dict serves Django's LOGGING and gunicorn's `logconfig_dict`, so the master, the
workers and the application write one format. This module does not import Django: gunicorn's
config file loads it in the master before any Django code.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

# The request line's fields ride on the record under this attribute (see `request_fields`).
FIELDS_ATTR = "synapse"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{key}={value}" for key, value in _fields(record).items() if value not in (None, ""))
        return f"{line} {extra}" if extra else line


def log_format() -> str:
    value = os.environ.get("SYNAPSE_LOG_FORMAT", "text").strip().lower()
    return value if value in ("json", "text") else "text"


def log_level() -> str:
    return os.environ.get("SYNAPSE_LOG_LEVEL", "INFO").strip().upper() or "INFO"


def logging_config(*, gunicorn: bool = False, access_log: bool = False) -> dict[str, Any]:
    """A `dictConfig` for Django's LOGGING (gunicorn=False) or gunicorn's `logconfig_dict`."""
    formatter = "json" if log_format() == "json" else "text"
    level = log_level()
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": formatter, "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
    }
    if gunicorn:
        # gunicorn's and uvicorn's loggers (the uvicorn worker copies gunicorn's handlers). The
        # access line is optional: the gateway's own request line carries more.
        for name in ("gunicorn.error", "uvicorn.error"):
            config["loggers"][name] = {"handlers": ["console"], "level": level, "propagate": False}
        for name in ("gunicorn.access", "uvicorn.access"):
            config["loggers"][name] = {"handlers": ["console"] if access_log else [], "level": level, "propagate": False}
    return config
