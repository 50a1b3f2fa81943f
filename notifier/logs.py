"""Structured logs: one JSON object per line, contacts and secrets masked.

Pass ids as `extra={"incident_id": ..., "notification_id": ...}`; they become fields.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"\+\d{6,14}(\d{2})")
_BEARER = re.compile(r"(?i)\b(bearer|token|secret|password|api[_-]?key)([=: ]+)[^\s,;\"']+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def mask(text: str) -> str:
    """Hide emails, E.164 phone numbers, tokens and URL passwords in `text`."""
    text = _EMAIL.sub(r"\1***@\2", text)
    text = _PHONE.sub(r"+***\1", text)
    text = _BEARER.sub(r"\1\2***", text)
    return _URL_PASSWORD.sub(r"\1***@", text)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON line with its extra fields, masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # yoyo narrates every migration step at INFO; its summary is printed by the CLI
    logging.getLogger("yoyo").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request at INFO (registry look-ups, provider calls): far too chatty
    for chatty in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
