"""The protobuf wire format, by hand: varints, length-delimited fields, ``AnyValue``,
a log body with the scrub rules applied, and the grouping of a request's items.

The pieces :mod:`telemetryflow._exporting.encode` writes OTLP requests with; each
mirrors what the official ``opentelemetry-proto`` encoder produces for the same value.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from telemetryflow._scrubbing.scrubber import Scrubber, _Kind

__all__ = [
    "EMPTY_STATUS",
    "FLAGS_LOCAL",
    "FLAGS_REMOTE",
    "KINDS",
    "KIND_BYTES",
    "LINK_FLAGS_LOCAL",
    "LINK_FLAGS_REMOTE",
    "UnencodableError",
    "any_value",
    "body_value",
    "field",
    "group_of",
    "key_value",
    "pack_d",
    "pack_q",
    "pack_times",
    "text",
    "varint",
]

pack_q = struct.Struct("<Q").pack
pack_d = struct.Struct("<d").pack
pack_times = struct.Struct("<BQBQ").pack
"""A span's start (field 7) and end (field 8) times, tags included, in one call."""
_ONE_BYTE = [bytes((i,)) for i in range(128)]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
KINDS = {1: b"\x30\x01", 2: b"\x30\x02", 3: b"\x30\x03", 4: b"\x30\x04", 5: b"\x30\x05"}
KIND_BYTES = {kind: KINDS[kind.value + 1] for kind in SpanKind}
FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)  # span flags: has-is-remote
FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)  # ... and is-remote
LINK_FLAGS_LOCAL = b"\x35" + struct.pack("<I", 0x100)
LINK_FLAGS_REMOTE = b"\x35" + struct.pack("<I", 0x300)
EMPTY_STATUS = b"\x7a\x00"


class UnencodableError(Exception):
    """A value protobuf would refuse; the official encoder skips that attribute."""


def varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value] if value >= 0 else varint(value + (1 << 64))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


def text(tag: bytes, value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnencodableError from None
    return tag + varint(len(raw)) + raw


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message body, mirroring the official ``_encode_value``."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return text(b"\x0a", value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise UnencodableError
        return b"\x18" + varint(int(value))
    if isinstance(value, float):
        return b"\x21" + pack_d(value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if isinstance(value, Sequence):
        items = b"".join(field(b"\x0a", any_value(item)) for item in value)
        return field(b"\x2a", items)
    if isinstance(value, Mapping):
        pairs = b"".join(field(b"\x0a", key_value(str(k), v)) for k, v in value.items())
        return field(b"\x32", pairs)
    raise UnencodableError


def key_value(key: str, value: Any) -> bytes:
    if not isinstance(key, str):
        raise UnencodableError
    return text(b"\x0a", key) + field(b"\x12", any_value(value))


def body_value(scrubber: Scrubber | None, body: Any) -> bytes:
    """The body ``AnyValue``; a body protobuf refuses fails the batch, as officially."""
    if type(body) is str:  # the usual body: what _scrubbed does with a string, inline
        encoded = text(b"\x0a", body)
        if scrubber is None:
            return encoded
        new = scrubber.text(body)
        return encoded if new is body else text(b"\x0a", new)
    encoded = any_value(body)
    if scrubber is None or body is None or isinstance(body, (bool, int, float, bytes)):
        return encoded
    if isinstance(body, str) or (isinstance(body, Sequence) and not isinstance(body, Mapping)):
        new = scrubber.scrub_value(_Kind.PLAIN, body, 0)
    elif isinstance(body, Mapping):
        new = scrubber.scrub_mapping(body, 0)
    else:
        return encoded
    return encoded if new is body else any_value(new)


def group_of(
    groups: list[tuple[Any, list[tuple[Any, list[bytes]]]]], resource: Any, scope: Any
) -> list[bytes]:
    """The item list of ``resource`` and ``scope`` in ``groups``, added in order of first
    appearance, equal resources and scopes together (as the official encoder groups)."""
    scopes = next(
        (known for owner, known in groups if owner is resource or owner == resource), None
    )
    if scopes is None:
        scopes = []
        groups.append((resource, scopes))
    for known_scope, items in scopes:
        if known_scope is scope or (known_scope is not None and known_scope == scope):
            return items
    items = []
    scopes.append((scope, items))
    return items
