"""A consumed Kafka message for unit tests: the fields agents and dead letters read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Message:
    """One message as aiokafka hands it to a consumer (Faust wraps the same fields)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: Any = None
