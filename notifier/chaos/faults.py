"""The drill's actions: workers killed with SIGKILL and started again, one Kafka node stopped
and started, PostgreSQL stopped and started, each on its own thread, each step written to a
journal with its time."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import kafka, postgres
from devstack.config import StackConfig
from notifier.localprocs import free_port, notifier_command


@dataclass
class Journal:
    """What the drill did and when (seconds since the drill started, and the wall clock as
    `epoch` to set against the sandbox's request times), shared by threads."""

    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    entries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, action: str, **details: Any) -> None:
        """Record one step and print it."""
        at = round(time.monotonic() - self.started, 1)
        with self._lock:
            self.entries.append(
                {"at_s": at, "epoch": round(time.time(), 3), "action": action, **details}
            )
        extra = ", ".join(f"{k}={v}" for k, v in details.items())
        self.say(f"  [{at:7.1f} s] {action}" + (f" ({extra})" if extra else ""))

    def count(self, action: str) -> int:
        """How many steps of one kind were taken."""
        with self._lock:
            return sum(e["action"] == action for e in self.entries)


class Workers:
    """`notifier worker` processes, each with its own metrics port and log."""

    def __init__(self, count: int, env: dict[str, str], logs: Path, journal: Journal) -> None:
        self.env = env
        self.logs = logs
        self.journal = journal
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.lock = threading.Lock()
        self.unexpected_exits: list[dict[str, Any]] = []
        self.started_at = [0.0] * count
        self.checked_at = 0.0  # when `revive` last found every worker running
        self.stuck_at_start: list[dict[str, Any]] = []

    def start(self, n: int) -> None:
        """Start worker `n` (its log is appended to)."""
        env = {**self.env, "NOTIFIER_METRICS_PORT": str(self.ports[n])}
        self.started_at[n] = time.monotonic()
        with (self.logs / f"worker-{n + 1}.log").open("ab") as out:
            self.procs[n] = subprocess.Popen(
                notifier_command("worker", "--loglevel", "warn"),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_all(self) -> None:
        """Start every worker."""
        for n in range(len(self.procs)):
            self.start(n)

    def kill_and_restart(self, n: int) -> None:
        """SIGKILL worker `n` (nothing flushed, nothing committed) and start it again."""
        with self.lock:
            proc = self.procs[n]
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                self.journal.note("SIGKILL worker", worker=n + 1, pid=proc.pid)
            self.start(n)

    def revive(self) -> None:
        """Start again any worker that exited on its own (and remember it: it should not).
        The journal says within how many seconds before it was found it exited."""
        with self.lock:
            for n, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    self.unexpected_exits.append(
                        {"worker": n + 1, "pid": proc.pid, "code": proc.returncode}
                    )
                    alive = max(self.checked_at, self.started_at[n])
                    self.journal.note(
                        "worker exited on its own",
                        worker=n + 1,
                        code=proc.returncode,
                        within_s=round(time.monotonic() - alive, 1),
                    )
                    self.start(n)
            self.checked_at = time.monotonic()

    def _get(self, n: int, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ports[n]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:  # a 503 says why in its body
            return int(exc.code), exc.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def restart_stuck(self, after_s: float = 60.0) -> None:
        """Start again (SIGKILL first) any worker still not ready `after_s` after it was
        started, and remember it: a worker that never becomes ready is a finding of the
        drill, reported in the summary, not a reason to stop it."""
        for n, proc in enumerate(self.procs):
            if proc is None or proc.poll() is not None:
                continue
            if time.monotonic() - self.started_at[n] < after_s:
                continue
            status, why = self._get(n, "/readyz")
            if status == 200:
                continue
            self.stuck_at_start.append({"worker": n + 1, "pid": proc.pid, "readyz": why.strip()})
            self.journal.note("worker not ready in time, restarted", worker=n + 1, why=why.strip())
            self.kill_and_restart(n)

    def revive_or_restart(self) -> None:
        """While waiting for the workers: start again those that exited or hang."""
        self.revive()
        self.restart_stuck()

    def ready(self) -> bool:
        """Every worker answers /readyz with 200."""
        return all(self._get(n, "/readyz")[0] == 200 for n in range(len(self.procs)))

    def describe(self) -> str:
        """Each worker's /readyz answer and the end of its log, for errors."""
        lines = []
        for n, proc in enumerate(self.procs):
            status, text = self._get(n, "/readyz")
            state = "running" if proc is not None and proc.poll() is None else "exited"
            log = (self.logs / f"worker-{n + 1}.log").read_text(errors="replace")
            tail = "\n    ".join(log.splitlines()[-8:])
            lines.append(f"worker {n + 1} ({state}): /readyz {status} {text.strip()}\n    {tail}")
        return "\n".join(lines)

    def lag(self) -> dict[str, int]:
        """Partitions the workers' consumers report behind (the lag gauge, not zero)."""
        behind: dict[str, int] = {}
        for n in range(len(self.procs)):
            status, text = self._get(n, "/metrics")
            for line in text.splitlines() if status == 200 else []:
                if line.startswith("notifier_consumer_lag_messages{"):
                    labels, value = line.rsplit(" ", 1)
                    if float(value):
                        behind[f"worker {n + 1} {labels[31:]}"] = int(float(value))
        return behind

    def stop_all(self) -> None:
        """SIGTERM every worker, SIGKILL what has not exited after 30 s."""
        with self.lock:
            live = [p for p in self.procs if p is not None and p.poll() is None]
            for proc in live:
                proc.terminate()
            for proc in live:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def kill_loop(
    workers: Workers, every_s: float, kills: int, first_s: float, stop: threading.Event
) -> None:
    """SIGKILL the workers in turn every `every_s` (the first after `first_s`), `kills` times,
    each started again at once."""
    if stop.wait(first_s):
        return
    for k in range(kills):
        workers.kill_and_restart(k % len(workers.procs))
        if k + 1 < kills and stop.wait(every_s):
            return


def broker_outage(
    config: StackConfig,
    node: int,
    at_s: float,
    down_s: float,
    journal: Journal,
    stop: threading.Event,
) -> None:
    """Stop Kafka node `node` at `at_s` for `down_s`, then start it and wait for the cluster."""
    if stop.wait(at_s):
        return
    started = time.monotonic()
    if not kafka.stop_node(config, node):
        journal.note("broker was not running", node=node)
        return
    journal.note("broker stopped", node=node, took_s=round(time.monotonic() - started, 1))
    down_since = time.monotonic()
    stop.wait(down_s)  # cut short when the drill is aborted, but always start it again
    kafka.start_node(config, node)
    journal.note("broker started", node=node, down_s=round(time.monotonic() - down_since, 1))


def postgres_outage(
    config: StackConfig, at_s: float, down_s: float, journal: Journal, stop: threading.Event
) -> None:
    """Stop the embedded PostgreSQL at `at_s` for `down_s`, then start it on its data."""
    if stop.wait(at_s):
        return
    started = time.monotonic()
    if not postgres.stop(config):
        journal.note("postgres was not running")
        return
    journal.note("postgres stopped", took_s=round(time.monotonic() - started, 1))
    down_since = time.monotonic()
    stop.wait(down_s)
    postgres.restart(config)
    journal.note("postgres started", down_s=round(time.monotonic() - down_since, 1))


class Drill:
    """The drill's threads; `finish` waits for them (every outage ends with a start)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        """Run `target(*args, self.stop)` on a thread; an exception is kept as an error."""

        def body() -> None:
            try:
                target(*args, self.stop)
            except Exception as exc:  # reported in the summary; the drill goes on
                self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=body, name=f"chaos-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def running(self) -> bool:
        """Whether any action is still under way."""
        return any(t.is_alive() for t in self.threads)

    def finish(self, abort: bool = False, timeout_s: float = 180.0) -> None:
        """Wait for every action (after cutting waits short when `abort`)."""
        if abort:
            self.stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.stop.set()
