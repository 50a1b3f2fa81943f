"""Apache Kafka in KRaft combined mode: jars from Maven Central, one or three nodes."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from devstack.config import KAFKA_VERSION, StackConfig, StackError
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

HERE = Path(__file__).resolve().parent
MAIN_CLASS = "kafka.Kafka"


def say(message: str) -> None:
    """Progress for people watching `make up`."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def require_java() -> str:
    """Path of a Java 17+ runtime, or a StackError saying what is missing."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "no java on PATH: Kafka needs Java 17+ "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match and int(match.group(1)) < 17:
        raise StackError(f"java at {java} is version {match.group(1)}; Kafka 4 needs 17+")
    return java


def jars_dir(config: StackConfig) -> Path:
    """Cached class path of the broker, fetched with mvn on first use."""
    libs = config.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs.parent / "complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "no mvn on PATH: the Kafka jars are fetched from Maven Central with "
            "Maven (Debian: apt-get install maven)"
        )
    say(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central (first run only)...")
    started = time.monotonic()
    staging = libs.parent / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(HERE / "kafka-pom.xml"),
        f"-Dkafka.version={KAFKA_VERSION}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    jars = list(staging.glob("*.jar"))
    if result.returncode != 0 or not jars:
        out = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(f"download failed: `{' '.join(cmd)}` exited {result.returncode}\n{out}")
    size = sum(j.stat().st_size for j in jars)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs.parent / "complete").write_text(json.dumps({"jars": len(jars), "bytes": size}))
    say(f"fetched {len(jars)} jars, {size / 1e6:.0f} MB, in {time.monotonic() - started:.1f} s")
    return libs


def node_dir(config: StackConfig, node: int) -> Path:
    """Folder of one node: server.properties, data/, broker.log, pid."""
    return config.state_dir / f"kafka-{node}"


def _properties(config: StackConfig, node: int) -> str:
    voters = ",".join(
        f"{n}@127.0.0.1:{config.controller_port(n)}" for n in range(1, config.brokers + 1)
    )
    replicas = min(3, config.brokers)
    data = node_dir(config, node) / "data"
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{config.broker_port(node)},"
        f"CONTROLLER://127.0.0.1:{config.controller_port(node)}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{config.broker_port(node)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "6",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": "2" if replicas >= 3 else "1",
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": "2" if replicas >= 3 else "1",
        # consumers in tests and demos join at once; the default 3 s delay only slows them
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def _cluster_id(config: StackConfig) -> str:
    path = config.state_dir / "kafka-cluster-id"
    if path.exists():
        return path.read_text().strip()
    while True:  # Kafka's own ids never start with '-', which its CLI would take for a flag
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            break
    path.write_text(cid)
    return cid


def recorded_brokers(config: StackConfig) -> int | None:
    """Broker count the stack's Kafka data was laid out for, if it has any."""
    layout = config.state_dir / "kafka-layout.json"
    if not layout.exists():
        return None
    return int(json.loads(layout.read_text())["brokers"])


def _layout_matches(config: StackConfig) -> bool:
    layout = config.state_dir / "kafka-layout.json"
    wanted = {"brokers": config.brokers, "port": config.kafka_port}
    if layout.exists() and json.loads(layout.read_text()) == wanted:
        return True
    return not any(config.state_dir.glob("kafka-*/data"))


def running_nodes(config: StackConfig) -> list[int]:
    """Nodes of this stack whose broker process is alive (checked against the state folders)."""
    alive = []
    for path in sorted(config.state_dir.glob("kafka-*/pid")):
        node = int(path.parent.name.split("-")[1])
        if running(read_pid(path), str(path.parent / "server.properties")):
            alive.append(node)
    return alive


def start(config: StackConfig) -> None:
    """Start every node that is not running yet and wait until the cluster answers."""
    alive = running_nodes(config)
    if alive and recorded_brokers(config) not in (None, config.brokers):
        raise StackError(
            f"stack '{config.name}' runs {recorded_brokers(config)} broker(s); "
            f"run `make down` before switching to {config.brokers}"
        )
    java = require_java()
    libs = jars_dir(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if not alive and not _layout_matches(config):
        say("broker layout changed: resetting Kafka data of this stack")
        for old in config.state_dir.glob("kafka-*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    (config.state_dir / "kafka-layout.json").write_text(
        json.dumps({"brokers": config.brokers, "port": config.kafka_port})
    )
    cluster_id = _cluster_id(config)
    for node in range(1, config.brokers + 1):
        if node in alive:
            continue
        require_free(config.broker_port(node), f"Kafka node {node}")
        require_free(config.controller_port(node), f"Kafka controller {node}")
        home = node_dir(config, node)
        home.mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text(_properties(config, node))
        if not (home / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise StackError(
                    f"formatting storage of node {node} failed:\n{fmt.stdout}{fmt.stderr}"
                )
        pid = spawn_detached(
            [
                java,
                f"-Xms{config.heap}",
                f"-Xmx{config.heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                "-cp",
                f"{libs}/*",
                MAIN_CLASS,
                str(props),
            ],
            log=home / "broker.log",
            cwd=home,
        )
        (home / "pid").write_text(str(pid))
        say(f"kafka node {node} starting on 127.0.0.1:{config.broker_port(node)} (pid {pid})")
    wait_ready(config)


def wait_ready(config: StackConfig, timeout_s: float = 90.0) -> None:
    """Wait until every broker answers a metadata request; StackError with the log tail if not."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {"bootstrap.servers": config.bootstrap, "logger": _quiet_logger()}
    admin = AdminClient(conf)

    def ready() -> bool:
        for node in range(1, config.brokers + 1):
            home = node_dir(config, node)
            if exited(read_pid(home / "pid")):
                raise StackError(
                    f"kafka node {node} exited during start-up; last lines of "
                    f"{home / 'broker.log'}:\n{tail(home / 'broker.log')}"
                )
        try:
            return len(admin.list_topics(timeout=2).brokers) >= config.brokers
        except Exception:  # not answering yet is what we are waiting out
            return False

    started = time.monotonic()
    if not wait_until(ready, timeout_s, every_s=0.3):
        log = node_dir(config, 1) / "broker.log"
        raise StackError(
            f"kafka did not answer a metadata request at {config.bootstrap} within "
            f"{timeout_s:.0f} s; last lines of {log}:\n{tail(log)}"
        )
    say(
        f"kafka ready at {config.bootstrap} ({config.brokers} node(s), "
        f"{time.monotonic() - started:.1f} s)"
    )


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("devstack.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def stop_all(config: StackConfig) -> list[int]:
    """Stop every node of the stack at once; returns the nodes that were running."""
    nodes = running_nodes(config)
    targets = []
    for node in nodes:
        home = node_dir(config, node)
        pid = read_pid(home / "pid")
        if pid is not None:
            targets.append((pid, str(home / "server.properties")))
    # signal every node before waiting: one by one, the last nodes lose their quorum and hang
    stop_many(targets, grace_s=30.0)
    for node in nodes:
        (node_dir(config, node) / "pid").unlink(missing_ok=True)
    return nodes


def stop_node(config: StackConfig, node: int, grace_s: float = 60.0) -> bool:
    """Stop one node (SIGTERM: a controlled shutdown, its data kept), for failure drills;
    returns whether it was running. The others keep the quorum of a three-node cluster."""
    if not 1 <= node <= config.brokers:
        raise StackError(f"stack '{config.name}' has nodes 1..{config.brokers}, not {node}")
    home = node_dir(config, node)
    pid = read_pid(home / "pid")
    if node not in running_nodes(config) or pid is None:
        return False
    stop_many([(pid, str(home / "server.properties"))], grace_s=grace_s)
    (home / "pid").unlink(missing_ok=True)
    say(f"kafka node {node} stopped")
    return True


def start_node(config: StackConfig, node: int) -> bool:
    """Start a stopped node again on its data and wait until every broker answers; returns
    whether it had to be started. Like `start`, it starts any other stopped node too."""
    if not 1 <= node <= config.brokers:
        raise StackError(f"stack '{config.name}' has nodes 1..{config.brokers}, not {node}")
    if node in running_nodes(config):
        return False
    start(config)
    return True
