"""Build the codec on the Schema Registry: SCHEMA_REGISTRY_URL, or the local stack's."""

from __future__ import annotations

from notifier.contracts.codec import AvroCodec
from notifier.contracts.registry import ConfluentSchemaRegistry
from notifier.settings import Settings
from notifier.topics import subjects


class RegistryNotConfiguredError(RuntimeError):
    """Neither SCHEMA_REGISTRY_URL nor a running local registry."""


def registry_url(settings: Settings) -> str:
    """SCHEMA_REGISTRY_URL when set, else the registry that `make up` started."""
    if settings.schema_registry_url:
        return settings.schema_registry_url
    url_file = settings.stack_dir / "registry.url"
    if url_file.exists():
        return url_file.read_text().strip()
    raise RegistryNotConfiguredError(
        f"no SCHEMA_REGISTRY_URL and no schema registry for stack '{settings.stack}' "
        f"({url_file} is missing): run `make up` or set SCHEMA_REGISTRY_URL"
    )


def build_codec(settings: Settings) -> AvroCodec:
    """The codec every producer and agent of this process shares; ids resolved now."""
    return AvroCodec(ConfluentSchemaRegistry(registry_url(settings), subjects(settings)))
