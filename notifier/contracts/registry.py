"""Where schema ids come from: a Schema Registry, or a local one built from schemas/.

Ids are resolved when the registry is built, never per message; the codec asks
`id_of(name)` and `schema_of(id)`, both dict look-ups once warm.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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

    def close(self) -> None:
        """Release connections to the registry, if any."""
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

    def close(self) -> None:
        """Nothing to release: local ids need no connection."""


def topic_record_subject(topic: str, record_name: str) -> str:
    """TopicRecordNameStrategy: one subject per (topic, record type), e.g.
    `incidents-notifier.IncidentOpened`; several record types share a topic."""
    return f"{topic}-{record_name}"


class RegistryUnavailableError(RuntimeError):
    """The Schema Registry cannot be reached or lacks a subject this process needs."""


def _client(url: str) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": url, "timeout": 10})


class ConfluentSchemaRegistry:
    """Ids from a Confluent-compatible Schema Registry, through confluent-kafka's client.

    Every (topic, record) subject is looked up once, at construction: the hot path never
    calls the registry. An id seen for the first time (a newer writer) is fetched once.
    """

    def __init__(
        self,
        url: str,
        subjects: Iterable[tuple[str, str]],
        schemas: Mapping[str, AvroSchema] | None = None,
    ) -> None:
        self.url = url
        self._client = _client(url)
        self._schemas = dict(schemas or load_schemas())
        self._by_name: dict[str, int] = {}
        self._by_id: dict[int, AvroSchema] = {}
        try:
            self._look_up(subjects)
        except BaseException:
            self._client.close()
            raise

    def _look_up(self, subjects: Iterable[tuple[str, str]]) -> None:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        url = self.url
        for topic, name in subjects:
            schema = self._schemas[name]
            subject = topic_record_subject(topic, name)
            try:
                found = self._client.lookup_schema(subject, Schema(schema.text, "AVRO"))
            except SchemaRegistryError as exc:
                raise RegistryUnavailableError(
                    f"schema registry {url} has no {subject} matching schemas/"
                    f"{schema.path.name if schema.path else name} ({exc.error_message}): "
                    "run `notifier schemas register`"
                ) from None
            except Exception as exc:  # connection refused, DNS, timeout: all mean unreachable
                raise RegistryUnavailableError(
                    f"schema registry {url} is not reachable: {exc}"
                ) from None
            self._by_name[name] = found.schema_id
            self._by_id[found.schema_id] = schema

    def id_of(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise ContractError(f"no subject looked up for record {name}") from None

    def schema_of(self, schema_id: int) -> AvroSchema:
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            fetched = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise ContractError(
                f"unknown schema id {schema_id} (registry {self.url}: {exc.error_message})",
                schema_id=schema_id,
            ) from None
        schema = parse_schema_text(str(fetched.schema_str))
        self._by_id[schema_id] = schema
        return schema

    def close(self) -> None:
        """Close the HTTP connections of the registry client."""
        self._client.close()


@dataclass(frozen=True)
class Registration:
    """What `register_subjects` did for one subject."""

    subject: str
    schema_id: int
    version: int
    new: bool


def register_subjects(
    url: str,
    subjects: Iterable[tuple[str, str]],
    schemas: Mapping[str, AvroSchema] | None = None,
    compatibility: str = "BACKWARD",
) -> list[Registration]:
    """Register every (topic, record) subject and set its compatibility; re-running adds
    nothing. An incompatible change fails with the registry's own message."""

    known = dict(schemas or load_schemas())
    done: list[Registration] = []
    with _client(url) as client:
        _register_each(client, subjects, known, compatibility, done)
    return done


def _register_each(
    client: Any,
    subjects: Iterable[tuple[str, str]],
    known: Mapping[str, AvroSchema],
    compatibility: str,
    done: list[Registration],
) -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    for topic, name in subjects:
        subject = topic_record_subject(topic, name)
        schema = Schema(known[name].text, "AVRO")
        try:
            found = client.lookup_schema(subject, schema)
            done.append(Registration(subject, found.schema_id, found.version, new=False))
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
            try:
                current = client.get_compatibility(subject)
            except SchemaRegistryError:
                current = None
            if current != compatibility:
                client.set_compatibility(subject, compatibility)
            client.register_schema(subject, schema)
            found = client.lookup_schema(subject, schema)
            done.append(Registration(subject, found.schema_id, found.version, new=True))
