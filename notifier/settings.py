"""One settings object, read from the environment (prefix NOTIFIER_) and validated at start.

DATABASE_URL and SCHEMA_REGISTRY_URL are also read without the prefix, as most tools name them.
`notifier config` prints the resolved values with secrets masked.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Every setting of the notifier; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    topic_prefix: str = Field("", description="Prefix put before every topic name.")
    topic_partitions: int = Field(6, ge=1, description="Partitions of each topic at creation.")
    replication_factor: int = Field(
        0, ge=0, description="Replicas of each topic; 0 takes min(3, brokers in the cluster)."
    )
    # NoDecode: read "30,60" as text, not JSON
    retry_delays_s: Annotated[tuple[int, ...], NoDecode] = Field(
        (30, 60, 120, 240), description="Backoff schedule in seconds, one delay topic each."
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "NOTIFIER_DATABASE_URL"),
        description="PostgreSQL URL; unset uses the embedded server started by `make up`.",
    )
    schema_registry_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "NOTIFIER_SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible Schema Registry; unset derives ids from schemas/.",
    )
    stack: str = Field("dev", description="Name of the local stack (dev, test, ...).")
    state_dir: Path = Field(
        REPO_ROOT / ".stack", description="Where the local stack keeps data, logs and URLs."
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        return value

    @field_validator("retry_delays_s")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("needs one or more positive delays, e.g. 30,60,120,240")
        return value

    @property
    def stack_dir(self) -> Path:
        """State folder of the local stack this process belongs to."""
        return self.state_dir / self.stack

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets and URL passwords masked."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = mask_url(value.get_secret_value())
            elif isinstance(value, tuple):
                text = ",".join(str(v) for v in value)
            else:
                text = "" if value is None else str(value)
            shown[name] = text
        return shown


def mask_url(url: str) -> str:
    """Hide the password of a URL (scheme://user:secret@host -> scheme://user:***@host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon and password else colon}@{host}"


@cache
def get_settings() -> Settings:
    """The settings of this process, built once."""
    return Settings()
