"""Where schema ids come from: a Schema Registry, or a local one built from schemas/.

Ids are resolved when the registry is built, never per message; the codec asks
`id_of(name)` and `schema_of(id)`, both dict look-ups once warm.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Protocol

from notifier.contracts.errors import ContractError
from notifier.contracts.schemas import AvroSchema, load_schemas, parse_schema_text


class SchemaRegistry(Protocol):
    """Schema ids for the codec: the writer id of each record, the schema behind each id."""

    def id_of(self, name: str) -> int:
        """The id the codec writes for record `name`."""
        ...

    def schema_of(self, schema_id: int) -> AvroSchema:
        """The writer schema behind `schema_id`; ContractError when nobody knows it."""
        ...


def local_schema_id(schema: AvroSchema) -> int:
    """Stable id of a schema: CRC-32 of its canonical form, kept positive for the wire format."""
    return zlib.crc32(schema.canonical.encode()) & 0x7FFFFFFF


class LocalSchemaRegistry:
    """Ids derived from the schemas themselves; for when no Schema Registry is configured.

    The same schema text always gets the same id, on every machine. It knows only the
    schemas it was given: data written by an older schema version needs a real registry.
    """

    def __init__(self, schemas: Mapping[str, AvroSchema] | None = None) -> None:
        self._by_name: dict[str, int] = {}
        self._by_id: dict[int, AvroSchema] = {}
        for schema in (schemas or load_schemas()).values():
            self.add(schema)

    def add(self, schema: AvroSchema) -> int:
        """Make `schema` known (as a writer), returning its id."""
        schema_id = local_schema_id(schema)
        known = self._by_id.get(schema_id)
        if known is not None and known.canonical != schema.canonical:
            raise ValueError(f"schema id collision between {known.name} and {schema.name}")
        self._by_id[schema_id] = schema
        self._by_name.setdefault(schema.name, schema_id)
        return schema_id

    def id_of(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise ContractError(f"no schema for record {name}") from None

    def schema_of(self, schema_id: int) -> AvroSchema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise ContractError(f"unknown schema id {schema_id}", schema_id=schema_id) from None


def topic_record_subject(topic: str, record_name: str) -> str:
    """TopicRecordNameStrategy: one subject per (topic, record type)."""
    return f"{topic}-{record_name}"


class ConfluentSchemaRegistry:
    """Ids from a Confluent-compatible Schema Registry, through confluent-kafka's client.

    Subjects follow TopicRecordNameStrategy because several record types share a topic.
    Every (topic, record) subject is registered or looked up once, at construction.
    """

    def __init__(
        self,
        url: str,
        subjects: Iterable[tuple[str, str]],
        schemas: Mapping[str, AvroSchema] | None = None,
    ) -> None:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        self.url = url
        self._client = SchemaRegistryClient({"url": url})
        self._schemas = dict(schemas or load_schemas())
        self._by_name: dict[str, int] = {}
        self._by_id: dict[int, AvroSchema] = {}
        for topic, name in subjects:
            schema = self._schemas[name]
            schema_id = self._client.register_schema(
                topic_record_subject(topic, name), Schema(schema.text, "AVRO")
            )
            self._by_name[name] = schema_id
            self._by_id[schema_id] = schema

    def id_of(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise ContractError(f"no subject registered for record {name}") from None

    def schema_of(self, schema_id: int) -> AvroSchema:
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            fetched = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise ContractError(
                f"unknown schema id {schema_id} (registry {self.url}: {exc})", schema_id=schema_id
            ) from None
        schema = parse_schema_text(str(fetched.schema_str))
        self._by_id[schema_id] = schema
        return schema
