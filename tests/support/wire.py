"""Protobuf wire format by hand, for requests no well-behaved client would serialise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

SERVICE = "mailaccounts.v1.AccountService"
WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class RawVarint:
    """A varint field value sent as is, whatever the field's range (wraps at 64 bits)."""

    value: int


@dataclass(frozen=True)
class RawBytes:
    """A length-delimited field value sent as is: e.g. invalid UTF-8 in a string field."""

    value: bytes


def varint(value: int) -> bytes:
    """Base-128 varint of `value` as protobuf encodes it (negatives in 10 bytes)."""
    value &= _U64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """A field key: number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32;
    3 and 4 are the deprecated groups)."""
    return varint((number << 3) | wire_type)


def varint_field(number: int, value: int) -> bytes:
    return tag(number, WIRE_VARINT) + varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return tag(number, WIRE_LEN) + varint(len(payload)) + payload


def encode(message_type: type[Message], values: Mapping[str, Any]) -> bytes:
    """A `message_type` request with `values` by field name. What the protobuf runtime refuses
    to hold (lone surrogates, numbers out of the field's range) and RawVarint/RawBytes values
    are appended as raw fields; on the wire the last occurrence of a field wins."""
    message = message_type()
    raw: list[bytes] = []
    fields = message_type.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        number = fields[name].number
        if isinstance(value, RawVarint):
            raw.append(varint_field(number, value.value))
        elif isinstance(value, RawBytes):
            raw.append(bytes_field(number, value.value))
        elif isinstance(value, str):
            try:
                setattr(message, name, value)
            except (UnicodeEncodeError, ValueError):
                raw.append(bytes_field(number, value.encode("utf-8", "surrogatepass")))
        else:
            try:
                setattr(message, name, value)
            except (ValueError, TypeError):
                raw.append(varint_field(number, int(value)))
    return message.SerializeToString() + b"".join(raw)


def string_field_numbers(message_type: type[Message]) -> list[int]:
    return [
        f.number for f in message_type.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING
    ]


def varint_field_numbers(message_type: type[Message]) -> list[int]:
    varint_types = {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_ENUM,
    }
    return [f.number for f in message_type.DESCRIPTOR.fields if f.type in varint_types]


@dataclass(frozen=True)
class Outcome:
    """How a raw call ended: the status code, its details, and the reply's bytes when OK."""

    code: grpc.StatusCode
    details: str
    reply: bytes


def call_raw(
    channel: grpc.Channel,
    method: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
    *,
    timeout: float = 30.0,
) -> Outcome:
    """Sends `payload` as the request of AccountService/`method`, bytes in and bytes out."""
    stub = channel.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        reply = stub(payload, metadata=metadata, timeout=timeout)
    except grpc.RpcError as err:
        return Outcome(err.code(), err.details() or "", b"")
    return Outcome(grpc.StatusCode.OK, "", bytes(reply))
