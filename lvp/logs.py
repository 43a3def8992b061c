"""Logging set-up of every `lvp` process: text lines (default) or, with ``LVP_LOG_FORMAT=json``,
one JSON object per line for CloudWatch Logs Insights::

    {"time": "2026-12-06T03:04:05.678Z", "level": "INFO", "logger": "lvp.viewer",
     "message": "live page on http://0.0.0.0:8080/"}

plus ``"exception"`` (the formatted traceback) when the record carries one. uvicorn's own
loggers (which it configures itself from ``uvicorn.config.LOGGING_CONFIG`` unless a server
passes ``log_config=None``) get the same formatter, so a service writes nothing else.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson

from lvp.config import ConfigError, Settings

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        ms = int(record.created * 1000) % 1000
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def log_format_from_env(env: dict[str, str] | None = None) -> str:
    """``LVP_LOG_FORMAT`` alone (a malformed other setting must not stop logging being set up)."""
    field = Settings.__dataclass_fields__["log_format"]
    env_name = field.metadata["env"]
    raw = (os.environ if env is None else env).get(env_name) or field.default
    return str(raw)


def setup_logging(level: int, log_format: str) -> None:
    """Configure the root logger (stderr) and uvicorn's default logging config."""
    fmt = log_format.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"LVP_LOG_FORMAT={log_format!r} must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if fmt == "json":
        _uvicorn_json()


def _uvicorn_json() -> None:
    """uvicorn.run's default ``log_config`` is the module-level LOGGING_CONFIG dict: change its
    formatters in place, so servers that keep the default log JSON too."""
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    for name in ("default", "access"):
        LOGGING_CONFIG.setdefault("formatters", {})[name] = {"()": f"{__name__}.JsonFormatter"}
