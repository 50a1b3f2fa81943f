"""Where a local stack lives and which ports it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"


class StackError(RuntimeError):
    """A stack step failed; the message says what and what to do."""


@dataclass(frozen=True)
class StackConfig:
    """One named local stack: its ports, its state folder and the shared jar cache."""

    name: str = "dev"
    brokers: int = 1
    kafka_port: int = 9092
    state_root: Path = REPO_ROOT / ".stack"
    cache_dir: Path = REPO_ROOT / ".cache"
    database_url: str | None = None
    schema_registry_url: str | None = None
    heap: str = "512m"

    @property
    def state_dir(self) -> Path:
        """This stack's data, logs, pid files and URLs."""
        return self.state_root / self.name

    def broker_port(self, node: int) -> int:
        """Client listener of node 1..brokers."""
        return self.kafka_port + node - 1

    def controller_port(self, node: int) -> int:
        """KRaft controller listener of node 1..brokers (10 above the client ports)."""
        return self.kafka_port + 10 + node - 1

    @property
    def registry_port(self) -> int:
        """Schema Registry port: 8081 beside the dev stack's 9092, kept in step with it."""
        return self.kafka_port - 9092 + 8081

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers of the stack's brokers."""
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in range(1, self.brokers + 1))

    @classmethod
    def from_env(
        cls, name: str | None = None, brokers: int | None = None, kafka_port: int | None = None
    ) -> StackConfig:
        """Build from arguments, falling back to NOTIFIER_STACK* variables and defaults."""
        stack = name or os.environ.get("NOTIFIER_STACK", "dev")
        default_port = 19092 if stack == "test" else 9092
        return cls(
            name=stack,
            brokers=brokers or int(os.environ.get("NOTIFIER_STACK_BROKERS", "1")),
            kafka_port=kafka_port
            or int(os.environ.get("NOTIFIER_STACK_KAFKA_PORT", str(default_port))),
            state_root=Path(os.environ.get("NOTIFIER_STATE_DIR", str(REPO_ROOT / ".stack"))),
            cache_dir=Path(os.environ.get("NOTIFIER_CACHE_DIR", str(REPO_ROOT / ".cache"))),
            database_url=os.environ.get("DATABASE_URL") or None,
            schema_registry_url=os.environ.get("SCHEMA_REGISTRY_URL") or None,
        )
