"""What the sandbox remembers: every request it served, and the faults it was told to inject."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Fault:
    """Failure injection for one provider; applied before the provider's own handling."""

    fail_next: int = 0  # the next N requests fail
    fail_rate: float = 0.0  # then this share of requests fails at random
    status: int = 503
    code: str | None = None  # provider error code for the failure body
    latency_ms: int = 0  # added to every request
    hang: bool = False  # never answer (the client times out)
    drop: bool = False  # close the connection without answering
    retry_after: int | None = None  # Retry-After seconds on injected failures

    def should_fail(self, rng: random.Random) -> bool:
        """Consume one 'fail next' or draw against the fail rate."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.fail_rate > 0 and rng.random() < self.fail_rate


@dataclass
class Recorded:
    """One request as the sandbox saw it (secrets left out)."""

    seq: int
    provider: str
    path: str
    started_at: float
    finished_at: float = 0.0
    status: int = 0
    to: str | None = None
    notification_id: str | None = None
    incident_id: str | None = None
    message_id: str | None = None
    fault: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class SandboxState:
    """Recordings and faults, shared by the HTTP and SMTP servers."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self.requests: list[Recorded] = []
        # kept as requests arrive: the bench polls the counts while thousands are recorded
        self.by_provider: collections.Counter[str] = collections.Counter()
        self.faults: dict[str, Fault] = {}
        self.rng = random.Random(seed)
        self.released = asyncio.Event()  # set to let hung requests go (reset, shutdown)

    def start(self, provider: str, path: str) -> Recorded:
        """Record the arrival of a request."""
        with self._lock:
            self._seq += 1
            rec = Recorded(self._seq, provider, path, time.time())
            self.requests.append(rec)
            self.by_provider[provider] += 1
            return rec

    def counts(self) -> tuple[int, dict[str, int]]:
        """How many requests were recorded, in all and per provider."""
        with self._lock:
            return len(self.requests), dict(self.by_provider)

    def fault(self, provider: str) -> Fault:
        """The fault plan of `provider` (an empty one if none was set)."""
        return self.faults.get(provider) or Fault()

    def as_json(
        self, provider: str | None = None, notification_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Recorded requests, optionally filtered."""
        with self._lock:
            return [
                asdict(r)
                for r in self.requests
                if (provider is None or r.provider == provider)
                and (notification_id is None or r.notification_id == notification_id)
            ]

    def reset(self) -> None:
        """Forget every request and fault."""
        with self._lock:
            self.requests.clear()
            self.by_provider.clear()
            self.faults.clear()
        self.release_hangs()

    def release_hangs(self) -> None:
        """End every request held by a 'hang' fault (it then fails with 503)."""
        self.released.set()
        self.released = asyncio.Event()

    async def hang(self, limit_s: float) -> None:
        """Hold a request until released or `limit_s` passes."""
        released = self.released
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), limit_s)
