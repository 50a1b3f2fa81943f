"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from notifier.contracts.convert import from_avro, to_avro
from notifier.contracts.errors import ContractError
from notifier.contracts.records import TOP_LEVEL_RECORDS, Record
from notifier.contracts.registry import SchemaRegistry
from notifier.contracts.schemas import AvroSchema, load_schemas

MAGIC = 0
_HEADER = struct.Struct(">bI")


class AvroCodec:
    """Encodes records to Confluent-framed Avro and decodes them back, checking each step."""

    def __init__(
        self,
        registry: SchemaRegistry,
        schemas: Mapping[str, AvroSchema] | None = None,
        records: tuple[type[Record], ...] = TOP_LEVEL_RECORDS,
    ) -> None:
        self.registry = registry
        self._schemas = dict(schemas or load_schemas())
        self._classes = {cls.AVRO_NAME: cls for cls in records}
        # schema id -> (record name, writer schema, reader schema or None when they match)
        self._readers: dict[int, tuple[str, Any, Any]] = {}

    def close(self) -> None:
        """Release the registry's connections."""
        self.registry.close()

    def encode(self, record: Record) -> bytes:
        """Frame and encode `record` with the id of its schema."""
        return self.encode_dict(record.AVRO_NAME, to_avro(record))

    def encode_dict(self, name: str, data: Mapping[str, Any]) -> bytes:
        """Encode a plain dict as record `name`; ContractError when it does not fit."""
        schema = self._schemas.get(name)
        if schema is None:
            raise ContractError(f"no schema for record {name}")
        schema_id = self.registry.id_of(name)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, schema_id))
        try:
            schemaless_writer(buf, schema.parsed, data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ContractError(
                f"{name} does not fit its schema: {exc}", schema_id=schema_id
            ) from exc
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Record:
        """Decode framed Avro into its record; ContractError says why it cannot."""
        schema_id, name, body = self._read(data)
        cls = self._classes.get(name)
        if cls is None:
            raise ContractError(
                f"schema id {schema_id} is {name}, which has no record type here",
                schema_id=schema_id,
            )
        try:
            return from_avro(cls, body)
        except (TypeError, ValueError) as exc:
            raise ContractError(
                f"{name} (schema id {schema_id}): {exc}", schema_id=schema_id
            ) from exc

    def decode_dict(self, data: bytes | None) -> tuple[str, dict[str, Any]]:
        """Decode framed Avro into (record name, plain dict), for tools that print records."""
        _, name, body = self._read(data)
        return name, body

    def record_name(self, data: bytes | None) -> str:
        """The record name a message's schema id stands for, without decoding its body (for
        agents that pass most types by); ContractError when the frame is not ours."""
        return self._reader_for(self._schema_id(data))[0]

    def _schema_id(self, data: bytes | None) -> int:
        if data is None:
            raise ContractError("message has no value (tombstone)")
        if len(data) < _HEADER.size:
            raise ContractError(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ContractError(
                f"not the Confluent wire format: magic byte {magic & 0xFF:#04x}, expected 0x00"
            )
        return int(schema_id)

    def _read(self, data: bytes | None) -> tuple[int, str, dict[str, Any]]:
        schema_id = self._schema_id(data)
        assert data is not None  # _schema_id refuses tombstones
        name, writer, reader = self._reader_for(schema_id)
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            body = schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types on bad bytes; all mean the same here
            raise ContractError(
                f"Avro body does not decode as {name} (schema id {schema_id}): "
                f"{type(exc).__name__}: {exc}",
                schema_id=schema_id,
            ) from exc
        if buf.tell() != len(data):
            raise ContractError(
                f"{len(data) - buf.tell()} bytes left over after the {name} body "
                f"(schema id {schema_id})",
                schema_id=schema_id,
            )
        if not isinstance(body, dict):
            raise ContractError(
                f"schema id {schema_id} does not describe a record", schema_id=schema_id
            )
        return schema_id, name, body

    def _reader_for(self, schema_id: int) -> tuple[str, Any, Any]:
        cached = self._readers.get(schema_id)
        if cached is not None:
            return cached
        writer = self.registry.schema_of(schema_id)
        reader = self._schemas.get(writer.name)
        if reader is None:
            raise ContractError(
                f"schema id {schema_id} is {writer.name}, which this version does not know",
                schema_id=schema_id,
            )
        same = writer.canonical == reader.canonical
        entry = (writer.name, writer.parsed, None if same else reader.parsed)
        self._readers[schema_id] = entry
        return entry
