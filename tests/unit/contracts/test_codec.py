"""The Confluent wire format codec: round trips, and one clear error for every bad input."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import pytest
from fastavro import schemaless_writer
from faust.serializers import codecs

from notifier.contracts.codec import AvroCodec
from notifier.contracts.convert import from_json
from notifier.contracts.errors import ContractError
from notifier.contracts.faust_codec import FaustAvroCodec, register_faust_codec
from notifier.contracts.records import (
    TOP_LEVEL_RECORDS,
    IncidentOpened,
    Priority,
    Record,
    UserProfile,
)
from notifier.contracts.registry import LocalSchemaRegistry, local_schema_id
from notifier.contracts.schemas import load_schemas, parse_schema_text
from tests.samples import FIXED_TIME, sample


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec(LocalSchemaRegistry())


@pytest.mark.parametrize("cls", TOP_LEVEL_RECORDS, ids=lambda c: c.__name__)
def test_every_record_round_trips(codec: AvroCodec, cls: type[Record]) -> None:
    record = sample(cls)
    data = codec.encode(record)
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == local_schema_id(load_schemas()[cls.AVRO_NAME])
    assert codec.decode(data) == record


def test_minimal_record_keeps_its_defaults(codec: AvroCodec) -> None:
    record = IncidentOpened(
        event_id="e1",
        occurred_at=FIXED_TIME,
        incident_id="i1",
        title="t",
        priority=Priority.CRITICAL,
        escalation_level=1,
        user_ids=["u1"],
    )
    decoded = codec.decode(codec.encode(record))
    assert decoded == record
    assert isinstance(decoded, IncidentOpened)
    assert decoded.channels is None and decoded.skip_tiers is False


def test_local_ids_are_stable_and_distinct() -> None:
    first, second = LocalSchemaRegistry(), LocalSchemaRegistry()
    names = sorted(load_schemas())
    ids = [first.id_of(n) for n in names]
    assert ids == [second.id_of(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**31 for i in ids)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"\x00\x00\x01", "too short"),
        (b'{"incident_id": "x"}', "magic byte 0x7b"),
        (b"\x01" + b"\x00" * 10, "magic byte 0x01"),
        (b"\x00\x7f\xff\xff\xfe\x02", "unknown schema id 2147483646"),
        (None, "tombstone"),
    ],
    ids=["empty", "short", "json", "bad-magic", "unknown-id", "tombstone"],
)
def test_bad_frames_raise_contract_error_with_reason(
    codec: AvroCodec, data: bytes | None, reason: str
) -> None:
    with pytest.raises(ContractError) as caught:
        codec.decode(data)
    assert reason in caught.value.reason
    with pytest.raises(ContractError) as peeked:
        codec.record_name(data)
    assert reason in peeked.value.reason


@pytest.mark.parametrize("cls", TOP_LEVEL_RECORDS, ids=lambda c: c.__name__)
def test_the_record_name_is_read_from_the_frame_alone(codec: AvroCodec, cls: type[Record]) -> None:
    encoded = codec.encode(sample(cls))
    assert codec.record_name(encoded) == cls.AVRO_NAME
    # the body is not read: a cut-off body still names its record
    assert codec.record_name(encoded[:5]) == cls.AVRO_NAME


def test_garbage_body_with_a_valid_header(codec: AvroCodec) -> None:
    schema_id = codec.registry.id_of(IncidentOpened.AVRO_NAME)
    with pytest.raises(ContractError) as caught:
        codec.decode(struct.pack(">bI", 0, schema_id) + b"\xff\xff\xff\xff\xff\xff\xff")
    assert "does not decode as notifier.IncidentOpened" in caught.value.reason
    assert caught.value.schema_id == schema_id


def test_trailing_bytes_are_refused(codec: AvroCodec) -> None:
    data = codec.encode(sample(IncidentOpened)) + b"junk"
    with pytest.raises(ContractError, match="4 bytes left over"):
        codec.decode(data)


def test_data_missing_a_required_field_is_refused() -> None:
    """A writer whose schema lacks `title` (required, no default) cannot be read as ours."""
    schema = json.loads(load_schemas()[IncidentOpened.AVRO_NAME].text)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "title"]
    old_writer = parse_schema_text(json.dumps(schema))
    registry = LocalSchemaRegistry()
    old_id = registry.add(old_writer)
    codec = AvroCodec(registry)
    body = io.BytesIO()
    datum = {
        f["name"]: v
        for f, v in zip(
            schema["fields"],
            ["e", FIXED_TIME, "i", None, "HIGH", None, None, 1, ["u"], None, False, False]
            + [None] * 4,
            strict=True,
        )
    }
    schemaless_writer(body, old_writer.parsed, datum)
    with pytest.raises(ContractError) as caught:
        codec.decode(struct.pack(">bI", 0, old_id) + body.getvalue())
    assert "title" in caught.value.reason


def test_encoding_a_dict_missing_a_required_field(codec: AvroCodec) -> None:
    with pytest.raises(ContractError, match=r"notifier\.IncidentResolved does not fit"):
        codec.encode_dict("notifier.IncidentResolved", {"event_id": "e", "incident_id": "i"})


def test_json_input_names_the_missing_and_unknown_fields() -> None:
    with pytest.raises(ContractError, match="missing required field name"):
        from_json(UserProfile, {"user_id": "u", "updated_at": "2026-01-01T00:00:00Z"})
    with pytest.raises(ContractError, match="unknown field"):
        from_json(UserProfile, {"user_id": "u", "name": "n", "updated_at": 0, "nick": "x"})
    with pytest.raises(ContractError, match=r"preferences\[0\].channel: 'FAX' is not one of"):
        from_json(
            UserProfile,
            {
                "user_id": "u",
                "name": "n",
                "updated_at": 0,
                "preferences": [{"channel": "FAX", "enabled": True, "order": 1}],
            },
        )


def test_faust_codec_plugs_into_faust(codec: AvroCodec) -> None:
    name = register_faust_codec(codec)
    record = sample(UserProfile)
    data = codecs.dumps(name, record)
    assert codec.decode(data) == record
    assert codecs.loads(name, data) == record
    # Faust clones codecs when chaining; the clone must keep the Avro codec
    assert isinstance(codecs.get_codec(name).clone(), FaustAvroCodec)


def _previous_incident_opened() -> dict[str, Any]:
    """IncidentOpened as it was before INFO and the incident details."""
    schema: dict[str, Any] = json.loads(load_schemas()[IncidentOpened.AVRO_NAME].text)
    added = {"team_name", "alert_count", "triggered_at", "dashboard_url"}
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in added]
    enum = next(f for f in schema["fields"] if f["name"] == "priority")["type"]
    enum["symbols"] = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    return schema


def _written(schema: dict[str, Any], priority: str) -> tuple[LocalSchemaRegistry, bytes]:
    writer = parse_schema_text(json.dumps(schema))
    registry = LocalSchemaRegistry()
    writer_id = registry.add(writer)
    body = io.BytesIO()
    datum = {
        "event_id": "e",
        "occurred_at": FIXED_TIME,
        "incident_id": "i",
        "title": "db down",
        "priority": priority,
        "escalation_level": 1,
        "user_ids": ["u"],
    }
    schemaless_writer(body, writer.parsed, datum)
    return registry, struct.pack(">bI", 0, writer_id) + body.getvalue()


def test_an_incident_written_before_the_details_reads_without_them() -> None:
    registry, data = _written(_previous_incident_opened(), "LOW")
    event = AvroCodec(registry).decode(data)
    assert isinstance(event, IncidentOpened)
    assert event.priority is Priority.LOW
    assert (event.team_name, event.alert_count, event.triggered_at, event.dashboard_url) == (
        None,
        None,
        None,
        None,
    )


def test_a_priority_this_reader_does_not_know_is_refused_by_name() -> None:
    """No enum default: an unknown symbol is a clear error (a dead letter), never misread
    as another priority; and the registry keeps refusing the removal of a symbol."""
    schema = json.loads(load_schemas()[IncidentOpened.AVRO_NAME].text)
    enum = next(f for f in schema["fields"] if f["name"] == "priority")["type"]
    enum["symbols"] = [*enum["symbols"], "PAGE_EVERYONE"]
    registry, data = _written(schema, "PAGE_EVERYONE")
    with pytest.raises(ContractError) as caught:
        AvroCodec(registry).decode(data)
    assert "PAGE_EVERYONE" in caught.value.reason


def test_info_round_trips(codec: AvroCodec) -> None:
    info = sample(IncidentOpened, priority=Priority.INFO)
    assert codec.decode(codec.encode(info)) == info
