"""Structured logs: one JSON object per line (per request on the ``os2d.serve.access`` logger).

A request line holds ``request_id``, ``method``, ``path``, ``status``, ``latency_ms``,
``classes`` (classes searched or added), ``detections`` and the worker's ``pid``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

ACCESS_LOGGER = "os2d.serve.access"
#: LogRecord attributes that are not fields of the JSON line.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields, "traceback"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        blob = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                "pid": os.getpid()}
        blob.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            blob["traceback"] = self.formatException(record.exc_info)
        return json.dumps(blob, default=str, ensure_ascii=False)


def log_config(level: str = "info") -> dict:
    """A :func:`logging.config.dictConfig` for uvicorn and os2d: JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {
            "os2d": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # ours replaces it
        },
    }


def configure(level: str = "info") -> None:
    """Apply :func:`log_config` in this process (the command line's own messages)."""
    import logging.config

    logging.config.dictConfig(log_config(level))
    sys.stderr.flush()
