"""The codec on a real Schema Registry (Apicurio, Confluent-compatible API): interop with
confluent-kafka's AvroSerializer/AvroDeserializer, idempotent registration, compatibility
enforced by the registry, ids that survive a registry restart."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import (
    MessageField,
    SerializationContext,
)

from devstack import registry as devregistry
from devstack.config import StackConfig
from notifier.contracts.codec import AvroCodec
from notifier.contracts.compatibility import backward_problems, changed_schemas
from notifier.contracts.errors import ContractError
from notifier.contracts.factory import build_codec
from notifier.contracts.records import IncidentOpened, Priority
from notifier.contracts.registry import register_subjects, topic_record_subject
from notifier.contracts.schemas import SCHEMAS_DIR, load_schemas, parse_schema_text
from notifier.settings import Settings
from notifier.topics import full_name, subjects
from tests.samples import FIXED_TIME, sample

pytestmark = pytest.mark.integration
REPO = SCHEMAS_DIR.parent


@pytest.fixture
def client(registered: Settings) -> Iterator[SchemaRegistryClient]:
    assert registered.schema_registry_url is not None
    with SchemaRegistryClient({"url": registered.schema_registry_url}) as opened:
        yield opened


@pytest.fixture
def codec(registered: Settings) -> Iterator[AvroCodec]:
    built = build_codec(registered)
    yield built
    built.close()


def test_registering_again_adds_nothing(registered: Settings, client: SchemaRegistryClient) -> None:
    assert registered.schema_registry_url is not None
    again = register_subjects(registered.schema_registry_url, subjects(registered))
    assert again and not any(r.new for r in again)
    subject = topic_record_subject(full_name(registered, "incidents"), IncidentOpened.AVRO_NAME)
    assert client.get_versions(subject) == [1]
    assert client.get_compatibility(subject) == "BACKWARD"


def test_avro_serializer_and_the_codec_read_each_other(
    registered: Settings, client: SchemaRegistryClient, codec: AvroCodec
) -> None:
    topic = full_name(registered, "incidents")
    subject = topic_record_subject(topic, IncidentOpened.AVRO_NAME)
    schema_str = client.get_latest_version(subject).schema.schema_str
    ctx = SerializationContext(topic, MessageField.VALUE)

    serializer = AvroSerializer(
        client,
        schema_str,
        conf={
            "auto.register.schemas": False,
            "use.latest.version": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    theirs = serializer(
        {
            "event_id": "e1",
            "occurred_at": FIXED_TIME,
            "incident_id": "i1",
            "title": "from another service",
            "priority": "HIGH",
            "escalation_level": 1,
            "user_ids": ["alice"],
        },
        ctx,
    )
    decoded = codec.decode(theirs)
    assert isinstance(decoded, IncidentOpened)
    assert decoded.title == "from another service" and decoded.priority is Priority.HIGH

    ours = codec.encode(sample(IncidentOpened, incident_id="i2"))
    read_back = AvroDeserializer(client)(ours, ctx)
    assert read_back["incident_id"] == "i2" and read_back["priority"] == "CRITICAL"
    assert struct.unpack(">I", theirs[1:5]) == struct.unpack(">I", ours[1:5])


def test_an_incompatible_schema_is_refused_with_409(
    registered: Settings, client: SchemaRegistryClient
) -> None:
    subject = topic_record_subject(full_name(registered, "incidents"), IncidentOpened.AVRO_NAME)
    breaking = json.loads(load_schemas()[IncidentOpened.AVRO_NAME].text)
    breaking["fields"].append({"name": "team", "type": "string", "doc": "no default"})
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, Schema(json.dumps(breaking), "AVRO"))
    assert caught.value.http_status_code == 409


def _variant(change: str) -> str:
    schema = json.loads(load_schemas()[IncidentOpened.AVRO_NAME].text)
    if change == "add-optional":
        schema["fields"].append(
            {"name": "team", "type": ["null", "string"], "default": None, "doc": "added"}
        )
    elif change == "add-required":
        schema["fields"].append({"name": "team", "type": "string", "doc": "added"})
    elif change == "remove-enum-symbol":
        for f in schema["fields"]:
            if f["name"] == "priority":
                f["type"]["symbols"] = ["LOW", "MEDIUM", "HIGH"]
    elif change == "change-type":
        for f in schema["fields"]:
            if f["name"] == "escalation_level":
                f["type"] = "string"
    return json.dumps(schema)


@pytest.mark.parametrize(
    ("change", "compatible"),
    [
        ("add-optional", True),
        ("add-required", False),
        ("remove-enum-symbol", False),
        ("change-type", False),
    ],
)
def test_the_registry_judges_schema_changes(
    registered: Settings, change: str, compatible: bool
) -> None:
    assert registered.schema_registry_url is not None
    previous = load_schemas()[IncidentOpened.AVRO_NAME]
    problem = backward_problems(
        registered.schema_registry_url, previous, parse_schema_text(_variant(change))
    )
    assert (problem is None) is compatible, problem
    if not compatible:
        assert problem is not None and "409" in problem


def test_every_schema_reads_its_previous_committed_version(registered: Settings) -> None:
    """The CI guard: a schema change that breaks readers of existing data fails here."""
    assert registered.schema_registry_url is not None
    failures = {
        change.path.name: (change.previous_commit[:10], problem)
        for change in changed_schemas(REPO, SCHEMAS_DIR)
        if (
            problem := backward_problems(
                registered.schema_registry_url, change.previous, change.current
            )
        )
    }
    assert failures == {}, f"schema changes that break existing data: {failures}"


def test_an_unknown_schema_id_is_a_contract_error(codec: AvroCodec) -> None:
    with pytest.raises(ContractError) as caught:
        codec.decode(struct.pack(">bI", 0, 987654) + b"\x02")
    assert "unknown schema id 987654" in caught.value.reason
    assert caught.value.schema_id == 987654


def test_ids_survive_a_registry_restart(registered: Settings) -> None:
    config = StackConfig.from_env("test")
    before = _ids(registered)
    assert devregistry.stop(config)
    devregistry.start(config)
    assert _ids(registered) == before


def _ids(settings: Settings) -> dict[str, int]:
    assert settings.schema_registry_url is not None
    known = load_schemas()
    with SchemaRegistryClient({"url": settings.schema_registry_url}) as client:
        return {
            topic_record_subject(t, n): client.lookup_schema(
                topic_record_subject(t, n), Schema(known[n].text, "AVRO")
            ).schema_id
            for t, n in subjects(settings)
        }
