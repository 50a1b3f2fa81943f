"""Background processes of the stack: pid files, liveness, ports, stopping, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from devstack.config import StackError


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file`, or None when there is no such file or it is garbage."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def spawn_detached(argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a service in its own session, output appended to `log`; returns its pid.

    posix_spawn instead of Popen: the service outlives us, and a Popen object would warn
    at garbage collection that its child is still running.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # coreutils' env -C sets the working directory, which posix_spawn cannot
    return os.posix_spawn(
        "/usr/bin/env",
        ["env", "-C", str(cwd), *argv],
        dict(os.environ) if env is None else env,
        file_actions=actions,
        setsid=True,
    )


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def exited(pid: int | None) -> bool:
    """True when `pid` is gone (or a zombie). Unlike running(), it does not read the command
    line, which is briefly empty while a just-spawned process execs: a start-up check on it
    can mistake a starting service for a dead one."""
    if pid is None:
        return True
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def running(pid: int | None, marker: str) -> bool:
    """True when `pid` is alive and its command line mentions `marker` (not a reused pid)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)  # our own exited child: collect it
            return False
        return any(marker in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def port_owner(port: int) -> str:
    """Who listens on `port`, as 'pid N (name)' when it can be told."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            addr = conn.laddr
            listening = conn.status == psutil.CONN_LISTEN
            if listening and isinstance(addr, tuple) and addr and addr[1] == port and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return "another process"


def stop_many(
    targets: list[tuple[int, str]], sig: int = signal.SIGTERM, grace_s: float = 30.0
) -> None:
    """Send `sig` to every (pid, marker), wait up to `grace_s` for all to exit, kill the rest."""
    live = [(pid, marker) for pid, marker in targets if running(pid, marker)]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    wait_until(lambda: not any(running(p, m) for p, m in live), grace_s)
    for pid, marker in live:
        if running(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(running(p, m) for p, m in live), 10.0)


def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)


def tail(path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def require_free(port: int, what: str) -> None:
    """StackError naming the owner when `port` is taken."""
    if not port_free(port):
        raise StackError(
            f"port {port} ({what}) is in use by {port_owner(port)}; stop it or pick "
            "other ports with NOTIFIER_STACK_KAFKA_PORT"
        )
