"""Build the codec the settings call for: on a Schema Registry, or on local ids."""

from __future__ import annotations

from notifier.contracts.codec import AvroCodec
from notifier.contracts.registry import (
    ConfluentSchemaRegistry,
    LocalSchemaRegistry,
    SchemaRegistry,
)
from notifier.settings import Settings
from notifier.topics import subjects


def build_registry(settings: Settings) -> SchemaRegistry:
    """The Schema Registry at SCHEMA_REGISTRY_URL, or ids derived from schemas/."""
    if settings.schema_registry_url:
        return ConfluentSchemaRegistry(settings.schema_registry_url, subjects(settings))
    return LocalSchemaRegistry()


def build_codec(settings: Settings) -> AvroCodec:
    """The codec every producer and agent of this process shares."""
    return AvroCodec(build_registry(settings))
