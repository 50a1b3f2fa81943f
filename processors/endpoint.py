"""The worker's HTTP endpoint: /metrics, /healthz, /readyz, and the consumer lag sampler.

  GET /metrics   Prometheus text format (every metric of processors/metrics.py)
  GET /healthz   200 while the process answers
  GET /readyz    200 once the users directory has caught up and the Faust consumer has
                 partitions assigned; 503 with the reason otherwise

It runs on aiohttp inside the worker's event loop rather than prometheus_client's threaded
server: readiness reads the directory and the Faust consumer where they live, and the lag
sampler awaits the aiokafka consumers of the projection and the retry scheduler, which
belong to this loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from notifier.settings import Settings
from processors.directory import UserDirectory
from processors.metrics import CONSUMER_LAG
from processors.offsets import resume_offset, skipped

log = logging.getLogger("notifier.endpoint")
LAG_EVERY_S = 5.0
# a partition whose fetch position is being reset is skipped rather than waited for
POSITION_TIMEOUT_S = 1.0
Offsets = dict[tuple[str, int], tuple[int | None, int | None]]  # (topic, p) -> (hw, offset)


def lag(highwater: int | None, offset: int | None) -> int | None:
    """Messages behind the end of a partition; None while either end is unknown."""
    if highwater is None or offset is None:
        return None
    return max(0, highwater - offset)


def faust_offsets(consumer: Any) -> Offsets:
    """(highwater, committed offset) of each partition assigned to the Faust consumer.

    Faust runs its aiokafka consumer in a thread of its own: only its synchronous reads are
    used here. Its highwater is the last stable offset (it reads read_committed:
    processors/kafka_transport.py), and its committed offset moves past trailing markers.
    A partition not yet committed by this worker falls back to the next offset to read; a
    changelog partition (neither) is left out.
    """
    found: Offsets = {}
    for tp in consumer.assignment():
        offset = resume_offset(consumer, tp)
        if offset is None:
            continue
        found[(tp.topic, tp.partition)] = (consumer.highwater(tp), offset)
    return found


def partition_states(consumer: Any) -> dict[str, Any]:
    """Faust's and aiokafka's bookkeeping of each assigned partition: committed and read
    offsets, acknowledged offsets, whether it is active or paused, and the fetcher's
    position (read without locks from the consumer thread: a snapshot, maybe torn)."""
    found: dict[str, Any] = {"flow_active": bool(getattr(consumer, "flow_active", False))}
    active = getattr(consumer, "_active_partitions", None)
    paused: set[Any] = getattr(consumer, "_paused_partitions", set())
    buffered: set[Any] = getattr(consumer, "_buffered_partitions", set())
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    subscription = getattr(getattr(client, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    waiting_skips = {str(tp) for tp in skipped(consumer)}
    rows: dict[str, Any] = {}
    for tp in sorted(consumer.assignment()):
        acked = list(getattr(consumer, "_acked", {}).get(tp) or [])
        row: dict[str, Any] = {
            "committed": consumer._committed_offset.get(tp),
            "read": consumer._read_offset.get(tp),
            "acked": len(acked),
            "acked_min": min(acked) if acked else None,
            "gaps": len(getattr(consumer, "_gap", {}).get(tp) or []),
            "active": active is not None and tp in active,
            "paused": tp in paused,
            "buffered": tp in buffered,
            "skipped": str(tp) in waiting_skips,
        }
        state = None if assignment is None else assignment.state_value(tp)
        if state is not None:
            row["position"] = state.position if state.has_valid_position else None
            row["fetch_paused"] = state.paused
            row["awaiting_reset"] = state.awaiting_reset
        rows[f"{tp.topic}[{tp.partition}]"] = row
    found["partitions"] = rows
    return found


def readable_end(highwater: int | None, last_stable: int | None) -> int | None:
    """The end of what a read_committed consumer can read: the last stable offset when the
    broker gave one (an open transaction's records are not readable yet), else the
    highwater. Lag is measured against it and the consumer's position, which moves past
    transaction markers: a trailing marker does not leave a lag of 1."""
    if last_stable is not None and last_stable >= 0:
        return last_stable
    return highwater


async def aiokafka_offsets(consumer: AIOKafkaConsumer) -> Offsets:
    """(end, position) of each partition assigned to an aiokafka consumer of this loop
    (`readable_end`); the ends come with each fetch response, so are None before the first."""
    found: Offsets = {}
    for tp in consumer.assignment():
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_S)
        except Exception:  # revoked meanwhile, or its position is being reset
            continue
        end = readable_end(consumer.highwater(tp), consumer.last_stable_offset(tp))
        found[(tp.topic, tp.partition)] = (end, position)
    return found


class WorkerEndpoint(Service):
    """Serves the worker's metrics and probes, and samples consumer lag every few seconds."""

    def __init__(
        self, settings: Settings, app: Any, directory: UserDirectory, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.app = app
        self.directory = directory
        self._lagging: dict[str, Any] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self._runner: web.AppRunner | None = None

    def lag_of(self, name: str, service: Any) -> Any:
        """Sample the lag of `service`'s own aiokafka consumer as `name`; returns `service`."""
        self._lagging[name] = service
        return service

    def readiness(self) -> str | None:
        """Why the worker is not ready, or None when it is."""
        if self.should_stop:
            return "stopping"
        if not self.directory.ready.is_set():
            return "users directory still catching up"
        try:
            assigned = self.app.consumer.assignment()
        except Exception as exc:  # the consumer thread has not started yet
            return f"Faust consumer not started ({type(exc).__name__})"
        if not assigned:
            return (
                "Faust consumer has no partitions assigned "
                "(rebalancing, or more workers than partitions)"
            )
        return None

    def build_app(self) -> web.Application:
        """The endpoint's aiohttp application."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/partitions", self.partitions)
        return app

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        host, port = self.settings.metrics_host, self.settings.metrics_port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            # a second worker on one host (local runs, tests): it works on, unobserved,
            # rather than refusing to start; in a pod the port is the worker's own
            log.warning(
                "metrics endpoint not started on %s:%s (%s): set NOTIFIER_METRICS_PORT",
                host,
                port,
                exc.strerror or exc,
            )
            return
        log.info("metrics endpoint on http://%s:%s", host, port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """Liveness: the process (and its event loop) answers."""
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """Readiness: 200, or 503 with the reason."""
        reason = self.readiness()
        if reason is not None:
            return web.Response(status=503, text=f"not ready: {reason}")
        return web.Response(text="ready")

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """Prometheus text format."""
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def partitions(self, request: web.Request) -> web.StreamResponse:
        """What the Faust consumer holds of each assigned partition (JSON), for finding out
        why a partition does not move."""
        try:
            states = partition_states(self.app.consumer)
        except Exception as exc:  # the consumer has not started, or is rebalancing
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=503)
        return web.json_response(states)

    @Service.timer(LAG_EVERY_S)
    async def _sample_lag(self) -> None:
        await self.sample_lag()

    async def sample_lag(self) -> None:
        """Set the lag gauge of every assigned partition; drop partitions no longer here."""
        sampled: dict[str, Offsets] = {}
        try:
            sampled["faust"] = faust_offsets(self.app.consumer)
        except Exception as exc:  # not started, or rebalancing: next time
            log.debug("Faust consumer lag not sampled: %s", exc)
        for name, service in self._lagging.items():
            consumer = getattr(service, "_consumer", None)
            if consumer is None:
                continue
            try:
                sampled[name] = await aiokafka_offsets(consumer)
            except Exception as exc:
                log.debug("%s consumer lag not sampled: %s", name, exc)
        reported: set[tuple[str, str, str]] = set()
        for name, offsets in sampled.items():
            for (topic, partition), (highwater, offset) in offsets.items():
                behind = lag(highwater, offset)
                if behind is None:
                    continue
                labels = (name, topic, str(partition))
                CONSUMER_LAG.labels(*labels).set(behind)
                reported.add(labels)
        for labels in self._reported - reported:
            if labels[0] in sampled:  # a consumer not sampled this time keeps its last value
                CONSUMER_LAG.remove(*labels)
            else:
                reported.add(labels)
        self._reported = reported
