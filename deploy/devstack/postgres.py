"""PostgreSQL for the local stack: embedded through pgserver unless DATABASE_URL is set."""

from __future__ import annotations

import signal
import time
import warnings
from pathlib import Path

from devstack.config import StackConfig, StackError
from devstack.processes import read_pid, running, stop_many, tail, wait_until


def data_dir(config: StackConfig) -> Path:
    """PGDATA of the embedded server."""
    return config.state_dir / "postgres"


def url_file(config: StackConfig) -> Path:
    """Where `up` writes the embedded server's URL for `notifier` commands to find."""
    return config.state_dir / "postgres.url"


def postmaster_pid(config: StackConfig) -> int | None:
    """Pid of the embedded postmaster, when it runs."""
    pid = read_pid(data_dir(config) / "postmaster.pid")
    return pid if running(pid, str(data_dir(config))) else None


def start(config: StackConfig) -> str:
    """Start (or find) the server and return a URL that accepts connections."""
    if config.database_url:
        _check(config.database_url)
        return config.database_url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs nags about XDG_RUNTIME_DIR
        import pgserver

        pgdata = data_dir(config)
        pgdata.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            raise StackError(
                f"embedded PostgreSQL did not start in {pgdata}: {exc}\n{tail(pgdata / 'log')}"
            ) from exc
        url = str(server.get_uri())
    _check(url)
    url_file(config).write_text(url)
    print(f"[stack] postgres ready at {url} ({time.monotonic() - started:.1f} s)", flush=True)
    return url


def _check(url: str, timeout_s: float = 30.0) -> None:
    import psycopg

    last: list[Exception] = []

    def accepts() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error as exc:
            last[:] = [exc]
            return False

    if not wait_until(accepts, timeout_s, every_s=0.3):
        raise StackError(f"PostgreSQL does not accept connections: {last[0] if last else '?'}")


def stop(config: StackConfig) -> bool:
    """Fast-shut-down the embedded server (SIGINT); returns whether it was running."""
    url_file(config).unlink(missing_ok=True)
    pid = postmaster_pid(config)
    if pid is None:
        return False
    stop_many([(pid, str(data_dir(config)))], sig=signal.SIGINT, grace_s=30.0)
    return True


def restart(config: StackConfig) -> str:
    """Start the embedded server again after `stop`, on the same data and socket (the URL
    does not change); for outage drills. Returns the URL."""
    if config.database_url:
        raise StackError("DATABASE_URL points at an outside server: the stack does not run it")
    return start(config)
