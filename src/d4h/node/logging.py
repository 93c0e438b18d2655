"""Structured JSON logging to stderr, with secrets redacted by field name before formatting."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|private|api[_-]?key)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")
# A compact JWS/JWT anywhere in text (SI tokens, access tokens, credentials): its header starts "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEYS.search(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _JWT.sub("[redacted-jwt]", _BEARER.sub(r"\1[redacted]", value))
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self._node,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = redact(value, key)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))  # messages may quote tokens
        return orjson.dumps(doc, default=str).decode()


def configure(node: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("alembic").setLevel("WARNING")
    # Access lines carry full URLs; keep them at debug level only.
    logging.getLogger("uvicorn.access").setLevel("WARNING" if level != "DEBUG" else "DEBUG")
