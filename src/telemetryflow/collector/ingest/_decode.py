"""Request bodies to messages: bounded decompression, protobuf and OTLP/JSON parsing.

Every failure is a :class:`BadRequestError` carrying the HTTP status to answer (400, 413
or 415), so no malformed input can escape as an unexpected exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]

__all__ = ["BadRequestError", "decode_json", "inflate", "parse_otlp"]

_CHUNK = 64 * 1024
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

M = TypeVar("M", bound=Message)


class BadRequestError(Exception):
    """Input the collector refuses, with the status code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def inflate(
    body: bytes | bytearray,
    encoding: str,
    limit: int,
    reserve: Callable[[int], None] | None = None,
) -> bytes | bytearray:
    """Decode ``Content-Encoding`` (``gzip``/``deflate``/identity), never past ``limit``.

    Memory stays within ``limit`` plus one chunk whatever the compression ratio.
    ``reserve`` is told of every chunk before it is kept, so a caller holding a
    memory budget can refuse (by raising) before the output grows past it.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise BadRequestError(415, f"unsupported Content-Encoding {encoding!r}; use gzip")
    out = bytearray()
    data = body
    try:
        while data:
            chunk = inflater.decompress(data, _CHUNK)
            if reserve is not None:
                reserve(len(chunk))
            out += chunk
            if len(out) > limit:
                raise BadRequestError(413, f"decompressed body exceeds {limit} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        tail = inflater.flush(_CHUNK)
        if reserve is not None:
            reserve(len(tail))
        out += tail
    except zlib.error:
        raise BadRequestError(400, f"corrupt {encoding} body") from None
    if len(out) > limit:
        raise BadRequestError(413, f"decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise BadRequestError(400, f"truncated {encoding} body")
    return out


def decode_json(body: bytes | bytearray) -> Any:
    """Parse JSON, turning every failure (bad UTF-8, syntax, nesting) into a 400."""
    try:
        data = json.loads(body)
        # Escaped lone surrogates parse but cannot be stored or echoed as UTF-8.
        json.dumps(data, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise BadRequestError(400, "body is not valid JSON") from None
    return data


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _ID_KEYS and isinstance(value, str) and value:
                    try:
                        item[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError:
                        raise BadRequestError(400, f"{key} must be hex") from None
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


def parse_otlp(body: bytes | bytearray, is_json: bool, message: M) -> M:
    """Fill ``message`` from an OTLP protobuf or OTLP/JSON body."""
    if not is_json:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError):
            raise BadRequestError(400, "body is not a valid OTLP protobuf message") from None
        return message
    data = decode_json(body)
    if not isinstance(data, dict):
        raise BadRequestError(400, "OTLP/JSON body must be an object")
    _hex_ids_to_base64(data)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError, binascii.Error):
        raise BadRequestError(400, "body is not a valid OTLP/JSON message") from None
    return message
