"""The Avro codec as a Faust codec, so Faust topics can read and write records directly."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from notifier.contracts.codec import AvroCodec

CODEC_NAME = "notifier-avro"


class FaustAvroCodec(codecs.Codec):
    """Faust codec over AvroCodec: dumps a record, loads framed Avro into a record."""

    def __init__(self, children: tuple[Any, ...] | None = None, *, avro: AvroCodec) -> None:
        super().__init__(children, avro=avro)
        self.avro = avro

    def _dumps(self, obj: Any) -> bytes:
        return self.avro.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.avro.decode(s)


def register_faust_codec(avro: AvroCodec, name: str = CODEC_NAME) -> str:
    """Register the codec with Faust under `name`; use it as a topic's value_serializer."""
    codecs.register(name, FaustAvroCodec(avro=avro))
    return name
