"""Starting the sandbox, a worker and the bridge as child processes, for the demo and the
benchmark."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def notifier_command(*args: str) -> list[str]:
    """argv for the installed `notifier` command of this interpreter."""
    return [str(Path(sys.executable).parent / "notifier"), *args]


@contextmanager
def child(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` with output to `log`; terminate it (then kill) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_http(url: str, timeout_s: float = 30) -> None:
    """Poll `url` until it answers; RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.1)


class Services(NamedTuple):
    """The started processes: where the sandbox and the bridge answer, the workers (the
    first of them as `worker`) and the projector, when it runs apart."""

    sandbox_url: str
    worker: subprocess.Popen[bytes]
    bridge_url: str | None
    workers: tuple[subprocess.Popen[bytes], ...] = ()
    projector: subprocess.Popen[bytes] | None = None


@contextmanager
def sandbox_and_worker(
    logs: Path,
    extra_env: dict[str, str] | None = None,
    bridge: bool = False,
    workers: int = 1,
    projector: bool = False,
) -> Iterator[Services]:
    """A sandbox and `workers` workers pointed at it, the webhook bridge if asked for, and
    with `projector` the projection in a process of its own rather than in each worker."""
    from adapters.sandbox.server import sandbox_env

    logs.mkdir(parents=True, exist_ok=True)
    port, smtp_port = free_port(), free_port()
    env = {**os.environ, **sandbox_env("127.0.0.1", port, smtp_port), **(extra_env or {})}
    bridge_url = None
    if bridge:
        bridge_port = free_port()
        bridge_url = f"http://127.0.0.1:{bridge_port}"
        env |= {"NOTIFIER_BRIDGE_PORT": str(bridge_port), "NOTIFIER_CALLBACK_BASE_URL": bridge_url}
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as started:
        started.enter_context(
            child(
                notifier_command("sandbox", "--port", str(port), "--smtp-port", str(smtp_port)),
                env,
                logs / "sandbox.log",
            )
        )
        wait_http(f"{url}/_sandbox/stats")
        if bridge_url:
            started.enter_context(child(notifier_command("bridge"), env, logs / "bridge.log"))
            wait_http(f"{bridge_url}/readyz")
        projector_proc = None
        if projector:
            env |= {"NOTIFIER_PROJECTION_ENABLED": "false"}
            projector_proc = started.enter_context(
                child(
                    notifier_command("projector", "--loglevel", "warn"),
                    {**env, "NOTIFIER_METRICS_PORT": str(free_port())},
                    logs / "projector.log",
                )
            )
        procs = tuple(
            started.enter_context(
                child(
                    notifier_command("worker", "--loglevel", "warn"),
                    # each worker serves its metrics on a port of its own
                    {**env, "NOTIFIER_METRICS_PORT": str(free_port())} if n else env,
                    logs / (f"worker-{n + 1}.log" if n else "worker.log"),
                )
            )
            for n in range(workers)
        )
        yield Services(url, procs[0], bridge_url, procs, projector_proc)
