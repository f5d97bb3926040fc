"""Bodies as captured on the wire, decoded for reading.

- ``Content-Encoding: gzip`` (or ``x-gzip``, ``deflate``, or a list of them) is
  undone here, for capture only: the client already got the original bytes.
  Decoding stops at ``max_bytes`` so a small "zip bomb" cannot exhaust memory.
- The Open Inference Protocol binary-data extension puts a JSON header first and
  raw tensor bytes after it; ``Inference-Header-Content-Length`` gives the JSON
  part's length in the decoded body. Only that part is ever parsed.
- JSON is read with orjson. TensorFlow Serving writes ``NaN``, ``Infinity`` and
  ``-Infinity``, which are not JSON, so a body orjson rejects is read again with
  the standard library when it contains one of those tokens.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from sidecar.protocols.base import PayloadError, PayloadTooLarge

__all__ = ["Body", "header", "loads"]

HeaderList = Sequence[tuple[bytes, bytes]]

BINARY_HEADER = b"inference-header-content-length"

# Only these three tokens make the fallback worth trying: anything else orjson
# rejects is broken for every reader.
_NON_JSON_TOKENS = (b"NaN", b"Infinity")
_MAX_ENCODINGS = 4  # "gzip, gzip" is legal; a long chain is an attack
_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_UNPARSED: Any = object()  # Body.json() not called yet; JSON null parses to None


def header(headers: HeaderList, name: bytes) -> bytes | None:
    """First value of the header ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


class Body:
    """One message body, content-decoded, with its JSON part parsed on first use.

    ``media_type`` is the lower-case ``Content-Type`` without parameters, e.g.
    ``text/csv``; ``binary`` says the OIP binary-data extension split the body;
    ``empty`` says there is nothing to read (whitespace only counts as nothing).
    ``json()`` parses once and caches, so detection and the adapter share one parse.
    """

    __slots__ = ("data", "binary", "empty", "_content_type", "_json_part", "_parsed")

    def __init__(self, headers: HeaderList, raw: bytes, max_bytes: int) -> None:
        # One pass over the headers for the three this needs: bodies are read twice per captured exchange.
        encoding: bytes | None = None
        content_type: bytes | None = None
        length: bytes | None = None
        for key, value in headers:
            if key == b"content-type":
                if content_type is None:
                    content_type = value
            elif key == b"content-encoding":
                if encoding is None:
                    encoding = value
            elif key == BINARY_HEADER and length is None:
                length = value
        self.data = raw if encoding is None else _decode(raw, encoding, max_bytes)
        self._content_type = content_type
        self.binary = length is not None  # the OIP binary-data extension is in use
        self._json_part = data = self.data if length is None else _json_part(self.data, length)
        # Set here rather than a property, since every reader asks. isspace() is False for b"" and
        # checks the bytes strip() would remove, without copying.
        self.empty = not data or data.isspace()
        self._parsed: Any = _UNPARSED

    @property
    def media_type(self) -> str:
        """The lower-case ``Content-Type`` without parameters, e.g. ``text/csv``; empty when absent."""
        # Only CSV detection asks, so a JSON body never pays for it.
        content_type = self._content_type or b""
        return content_type.split(b";", 1)[0].strip().lower().decode("latin-1")

    @property
    def text(self) -> str:
        """The body as UTF-8 text (a leading byte-order mark dropped)."""
        try:
            return self.data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None

    def json(self) -> Any:
        """The JSON part, parsed. Raises ``PayloadError`` when it is not JSON."""
        parsed = self._parsed
        if parsed is _UNPARSED:
            try:
                parsed = orjson.loads(self._json_part)
            except orjson.JSONDecodeError:
                # A byte-order mark, TensorFlow Serving's tokens, or not JSON: loads() tells which.
                parsed = loads(self._json_part)
            self._parsed = parsed
        return parsed


def loads(data: bytes) -> Any:
    """Parse JSON with orjson, accepting TensorFlow Serving's NaN/Infinity tokens."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # orjson refuses a byte-order mark; some Windows clients send one
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not any(token in data for token in _NON_JSON_TOKENS):
            raise PayloadError(f"body is not JSON: {exc}") from None
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError(f"body is not JSON: {exc}") from None
    _check_strings(value)
    return value


def _parse_int(text: str) -> int | float:
    # orjson reads integers beyond 64 bits as floats, and writes none: do the same,
    # so a record from this path can still be logged.
    if len(text) <= 19:
        number = int(text)
        if _INT64_MIN <= number <= _UINT64_MAX:
            return number
    return float(text)


def _check_strings(value: Any) -> None:
    # The standard library accepts lone surrogates ("\ud800") that orjson would
    # refuse to write later; reject them here, where the error is counted.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise PayloadError("body has a string that is not valid Unicode") from None


def _decode(raw: bytes, encoding: bytes | None, max_bytes: int) -> bytes:
    if encoding is None:
        return raw
    codings = [c.strip().lower() for c in encoding.split(b",") if c.strip()]
    if len(codings) > _MAX_ENCODINGS:
        raise PayloadError(f"too many content codings ({len(codings)})")
    data = raw
    # Codings are listed in the order they were applied, so undo them last first.
    for coding in reversed(codings):
        if coding in (b"gzip", b"x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, max_bytes)
        elif coding == b"deflate":
            data = _inflate(data, zlib.MAX_WBITS, max_bytes)
        elif coding != b"identity":
            raise PayloadError(f"content-encoding {coding.decode('latin-1')!r} is not supported for capture")
    return data


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    out = bytearray()
    pending = data
    try:
        # A gzip stream may hold several members back to back (RFC 1952 §2.2).
        while pending:
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(pending, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise PayloadTooLarge(f"decoded body is larger than max_bytes={max_bytes}")
            if not inflater.eof:
                raise PayloadError("compressed body is truncated")
            pending = inflater.unused_data
    except zlib.error as exc:
        raise PayloadError(f"compressed body is corrupt: {exc}") from None
    return bytes(out)


def _json_part(data: bytes, length: bytes | None) -> bytes:
    if length is None:
        return data
    text = length.strip()
    if not text.isdigit() or len(text) > 18 or int(text) > len(data):
        raise PayloadError(f"Inference-Header-Content-Length {length.decode('latin-1')!r} does not fit the body")
    return data[: int(text)]
