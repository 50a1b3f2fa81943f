"""Apicurio Registry, whose Confluent-compatible API (/apis/ccompat/v7) confluent-kafka's
client speaks; fetched from Maven Central, schemas kept in the stack's own Kafka."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.config import StackConfig, StackError
from devstack.kafka import require_java, say
from devstack.processes import (
    exited,
    read_pid,
    require_free,
    running,
    spawn_detached,
    stop_many,
    tail,
    wait_until,
)

VERSION = "3.0.9"  # 3.1+ needs Java 21; this one runs on the machine's Java 17
ARTIFACT = f"io.apicurio:apicurio-registry-app:{VERSION}:tar.gz:all"
RUNNER = f"apicurio-registry-app-{VERSION}-runner.jar"
CCOMPAT = "/apis/ccompat/v7"


def home(config: StackConfig) -> Path:
    """The registry's folder in the stack: pid and log."""
    return config.state_dir / "registry"


def url_file(config: StackConfig) -> Path:
    """Where `up` writes the registry's Confluent-compatible URL."""
    return config.state_dir / "registry.url"


def url(config: StackConfig) -> str:
    """The Confluent-compatible API of this stack's registry."""
    return f"http://127.0.0.1:{config.registry_port}{CCOMPAT}"


def dist_dir(config: StackConfig) -> Path:
    """Unpacked runnable build, fetched with mvn on first use."""
    dist = config.cache_dir / f"apicurio-registry-{VERSION}"
    if (dist / "complete").exists():
        return dist
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "no mvn on PATH: Apicurio Registry is fetched from Maven Central with "
            "Maven (Debian: apt-get install maven)"
        )
    say(f"fetching Apicurio Registry {VERSION} from Maven Central (first run only, ~110 MB)...")
    started = time.monotonic()
    staging = dist.with_name(dist.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "dependency:copy",
        f"-Dartifact={ARTIFACT}",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=staging)
    archives = list(staging.glob("*.tar.gz"))
    if result.returncode != 0 or not archives:
        out = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(f"download failed: `{' '.join(cmd)}` exited {result.returncode}\n{out}")
    size = archives[0].stat().st_size
    with tarfile.open(archives[0]) as archive:
        archive.extractall(staging, filter="data")
    archives[0].unlink()
    if not (staging / RUNNER).exists():
        raise StackError(f"the Apicurio archive has no {RUNNER}")
    shutil.rmtree(dist, ignore_errors=True)
    staging.rename(dist)
    (dist / "complete").write_text(str(size))
    say(f"fetched Apicurio Registry, {size / 1e6:.0f} MB, in {time.monotonic() - started:.1f} s")
    return dist


def pid(config: StackConfig) -> int | None:
    """Pid of the running registry of this stack, if any."""
    found = read_pid(home(config) / "pid")
    return found if running(found, str(home(config))) else None


def _ready(port: int) -> bool:
    # /health/ready turns UP only once the kafkasql journal has been replayed; the API
    # itself answers earlier, with subjects missing
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as not_ready:  # 503 while DOWN; it holds the socket open
        not_ready.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


def start(config: StackConfig, *, wait: bool = True) -> str:
    """Start the registry on the stack's Kafka unless it runs; `wait` until it answers."""
    address = url(config)
    if pid(config) is None:
        java = require_java()
        dist = dist_dir(config)
        require_free(config.registry_port, "Schema Registry")
        folder = home(config)
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": "/usr/bin:/bin",
            "APICURIO_STORAGE_KIND": "kafkasql",
            "APICURIO_KAFKASQL_BOOTSTRAP_SERVERS": config.bootstrap,
        }
        launched = spawn_detached(
            [
                java,
                "-Xms64m",
                "-Xmx384m",
                "-XX:+UseSerialGC",
                # names the stack on the command line, so its pid is told from other stacks'
                f"-Dnotifier.stack.home={folder}",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={config.registry_port}",
                "-jar",
                str(dist / RUNNER),
            ],
            log=folder / "registry.log",
            cwd=folder,
            env=env,
        )
        (folder / "pid").write_text(str(launched))
        say(f"schema registry starting on 127.0.0.1:{config.registry_port} (pid {launched})")
    if wait:
        wait_ready(config)
    return address


def wait_ready(config: StackConfig, timeout_s: float = 120.0) -> None:
    """Wait until the Confluent-compatible API answers; StackError with the log tail if not."""
    log = home(config) / "registry.log"

    def ready() -> bool:
        if exited(read_pid(home(config) / "pid")):
            raise StackError(
                f"the schema registry exited during start-up; last lines of {log}:\n{tail(log)}"
            )
        return _ready(config.registry_port)

    started = time.monotonic()
    if not wait_until(ready, timeout_s, every_s=0.3):
        raise StackError(
            f"the schema registry did not answer at {url(config)} within "
            f"{timeout_s:.0f} s; last lines of {log}:\n{tail(log)}"
        )
    url_file(config).write_text(url(config))
    say(f"schema registry ready at {url(config)} ({time.monotonic() - started:.1f} s)")


def stop(config: StackConfig) -> bool:
    """Stop the registry; returns whether it was running. Call before stopping Kafka."""
    url_file(config).unlink(missing_ok=True)
    found = pid(config)
    if found is None:
        return False
    stop_many([(found, str(home(config)))], grace_s=20.0)
    (home(config) / "pid").unlink(missing_ok=True)
    return True
