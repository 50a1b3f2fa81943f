"""Shared fixtures: one real test stack per session (Kafka + PostgreSQL), isolated by a
topic prefix and a fresh database so sessions never see each other's data."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from devstack import stack as devstack
from devstack.config import StackConfig
from notifier.settings import Settings


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Start the test stack unless `make test` already did (up is idempotent)."""
    return devstack.up(StackConfig.from_env("test"))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def scratch_database(base: str, name: str) -> Iterator[str]:
    """A new empty database `name` on the server of `base`; its URL; dropped on exit."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def database_url(stack_env: dict[str, str]) -> Iterator[str]:
    """A database of its own for this session, dropped at the end."""
    with scratch_database(stack_env["DATABASE_URL"], f"notifier_test_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str], database_url: str) -> Iterator[Settings]:
    """Settings pointing at the test stack, with topics under a prefix of this session."""
    prefix = f"t{os.getpid()}."
    yield Settings(
        kafka_bootstrap=stack_env["NOTIFIER_KAFKA_BOOTSTRAP"],
        topic_prefix=prefix,
        database_url=database_url,
        schema_registry_url=stack_env["SCHEMA_REGISTRY_URL"],
        stack="test",
        retry_delays_s=(1, 2),
    )
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": stack_env["NOTIFIER_KAFKA_BOOTSTRAP"]})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if ours:
        for fut in admin.delete_topics(ours, operation_timeout=30).values():
            fut.result()


@pytest.fixture(scope="session")
def registered(settings: Settings) -> Settings:
    """Settings whose topics exist and whose subjects are registered."""
    from notifier.contracts.registry import register_subjects
    from notifier.topics import ensure_topics, subjects

    assert settings.schema_registry_url is not None
    ensure_topics(settings.kafka_bootstrap, settings)
    register_subjects(settings.schema_registry_url, subjects(settings))
    return settings


@pytest.fixture(scope="session")
def cli_env(registered: Settings) -> dict[str, str]:
    """Environment for running `notifier` as a user would, against the test stack."""
    settings = registered
    assert settings.database_url is not None and settings.schema_registry_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        {
            "NOTIFIER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "NOTIFIER_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFIER_RETRY_DELAYS_S": ",".join(str(d) for d in settings.retry_delays_s),
            "NOTIFIER_STACK": "test",
            "DATABASE_URL": settings.database_url.get_secret_value(),
        }
    )
    env["SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    return env


@pytest.fixture(scope="session")
def notifier_bin() -> Path:
    """The installed `notifier` console script."""
    return Path(sys.executable).parent / "notifier"


def vonage_application(sandbox_url: str, folder: Path) -> dict[str, str]:
    """A fresh Vonage application: its private key written to `folder`, its public key
    registered with the sandbox; the settings that make voice calls through it."""
    import json
    import urllib.request
    import uuid

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "vonage-private.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    application_id = str(uuid.uuid4())
    request = urllib.request.Request(
        f"{sandbox_url}/_sandbox/vonage/applications",
        data=json.dumps(
            {"application_id": application_id, "public_key_pem": public.decode()}
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    return {
        "NOTIFIER_VONAGE_APPLICATION_ID": application_id,
        "NOTIFIER_VONAGE_PRIVATE_KEY_FILE": str(path),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox(
    notifier_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The provider sandbox (`notifier sandbox`, its own process) on free loopback ports.

    Yields the notifier settings (env names) that point every adapter at it, plus
    SANDBOX_URL for its control API.
    """
    import subprocess
    import time
    import urllib.request

    from adapters.sandbox.server import sandbox_env

    port, smtp_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(notifier_bin),
                "sandbox",
                "--port",
                str(port),
                "--smtp-port",
                str(smtp_port),
                "--webhook-secret",
                "sandbox-webhook-secret",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sandbox did not start: {log.read_text()}") from None
            time.sleep(0.1)
    env = sandbox_env("127.0.0.1", port, smtp_port)
    env.update(vonage_application(url, tmp_path_factory.mktemp("vonage")))
    env["NOTIFIER_WEBHOOK_SIGNING_SECRET"] = "sandbox-webhook-secret"
    env["SANDBOX_URL"] = url
    yield env
    proc.terminate()
    proc.wait(10)
