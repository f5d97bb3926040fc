"""Body decoding: content codings and their size cap, the NaN fallback, the binary-data split."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable

import pytest

from sidecar.protocols import PayloadError, PayloadTooLarge
from sidecar.protocols.bodies import Body, loads

JSON = b'{"instances": [[1, 2]]}'


def _body(raw: bytes, **headers: str) -> Body:
    pairs = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return Body(pairs, raw, max_bytes=1 << 20)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
        ("identity", lambda data: data),
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
    ],
)
def test_content_codings_are_undone(encoding: str, encode: Callable[[bytes], bytes]) -> None:
    body = _body(encode(JSON), content_encoding=encoding)
    assert body.json() == {"instances": [[1, 2]]}


def test_multi_member_gzip() -> None:
    raw = gzip.compress(b'{"instances": ') + gzip.compress(b"[[1, 2]]}")
    assert _body(raw, content_encoding="gzip").json() == {"instances": [[1, 2]]}


def test_decoded_size_is_capped() -> None:
    bomb = gzip.compress(b"[" + b"0," * 1_000_000 + b"0]")
    assert len(bomb) < 10_000
    with pytest.raises(PayloadTooLarge, match="max_bytes=1000"):
        Body([(b"content-encoding", b"gzip")], bomb, max_bytes=1000)


def test_a_body_exactly_at_the_cap_is_accepted() -> None:
    assert Body([(b"content-encoding", b"gzip")], gzip.compress(JSON), max_bytes=len(JSON)).data == JSON


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (gzip.compress(JSON)[:-12], "gzip", "truncated"),
        (b"definitely not gzip", "gzip", "corrupt"),
        (gzip.compress(JSON) + b"trailing junk", "gzip", "corrupt"),
        (JSON, "br", "not supported"),
        (JSON, "gzip, gzip, gzip, gzip, gzip", "too many"),
    ],
)
def test_bad_codings_are_payload_errors(raw: bytes, encoding: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        _body(raw, content_encoding=encoding)


def test_media_type_drops_parameters() -> None:
    assert _body(b"a,b\n1,2\n", content_type="Text/CSV; charset=utf-8").media_type == "text/csv"


def test_whitespace_only_body_is_empty() -> None:
    assert _body(b" \r\n\t").empty
    assert not _body(b"{}").empty


def test_byte_order_mark_is_dropped() -> None:
    assert loads(b"\xef\xbb\xbf[1]") == [1]


def test_tensorflow_non_finite_tokens() -> None:
    value = loads(b'{"predictions": [NaN, Infinity, -Infinity, 1.5]}')
    nan, inf, minus_inf, plain = value["predictions"]
    assert math.isnan(nan) and inf == math.inf and minus_inf == -math.inf and plain == 1.5


def test_fallback_reads_big_integers_as_orjson_does() -> None:
    assert loads(b"[NaN, 18446744073709551616, -3]")[1:] == [1.8446744073709552e19, -3]


def test_fallback_rejects_lone_surrogates() -> None:
    # orjson refuses these itself; the stdlib fallback would let one through.
    with pytest.raises(PayloadError, match="not valid Unicode"):
        loads(b'[NaN, "\\ud800"]')


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[1,]", b"NaN-ish {", b'{"a": NaN', b"\xff\xfe", b"[" * 5000 + b"NaN" + b"]" * 5000],
)
def test_invalid_json_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        loads(raw)


def test_binary_extension_reads_the_json_part_only() -> None:
    header = b'{"inputs": []}'
    body = _body(header + b"\x00\x01\x02\x03", inference_header_content_length=str(len(header)))
    assert body.binary
    assert body.json() == {"inputs": []}


@pytest.mark.parametrize("length", ["-1", "abc", "999", "1" * 30, ""])
def test_binary_extension_length_must_fit(length: str) -> None:
    with pytest.raises(PayloadError, match="Inference-Header-Content-Length"):
        _body(b"{}", inference_header_content_length=length)


def test_json_is_parsed_once() -> None:
    body = _body(JSON)
    assert body.json() is body.json()


def test_text_must_be_utf8() -> None:
    with pytest.raises(PayloadError, match="not UTF-8"):
        _ = _body(b"a,b\n\xff,1\n").text
