"""Every fixture in ``fixtures/`` through its protocol, through ``auto``, and gzip-encoded.

A fixture is one JSON file: the path, the request and response (a ``json`` value
or a ``text`` body, with headers), the adapter options, and the rows expected.
JSON cannot hold NaN or infinities, so the expected rows spell them "NaN",
"Infinity" and "-Infinity", and the actual rows are spelled the same way.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.protocols import AdapterOptions, parse_exchange
from sidecar.records import Exchange, Parsed

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    fixture: dict[str, Any] = orjson.loads(path.read_bytes())
    return fixture


def _body(message: dict[str, Any]) -> bytes:
    if "text" in message:
        text: str = message["text"]
        return text.encode()
    return orjson.dumps(message["json"])


def _headers(message: dict[str, Any], extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    headers = {**message.get("headers", {}), **extra}
    return [(key.encode(), value.encode()) for key, value in headers.items()]


def _exchange(fixture: dict[str, Any], *, gzipped: bool = False) -> Exchange:
    request, response = fixture["request"], fixture["response"]
    request_body, response_body = _body(request), _body(response)
    extra = {"content-encoding": "gzip"} if gzipped else {}
    if gzipped:
        request_body, response_body = gzip.compress(request_body), gzip.compress(response_body)
    return Exchange(
        request_id="from-x-request-id",
        timestamp=1_700_000_000.0,
        method="POST",
        path=fixture["path"],
        request_headers=_headers(request, extra),
        request_body=request_body,
        status_code=response["status"],
        response_headers=_headers(response, extra),
        response_body=response_body,
        latency_seconds=0.012,
        variant="main",
        strategy="random",
        probability=1.0,
    )


def _options(fixture: dict[str, Any], protocol: str) -> AdapterOptions:
    options = dict(fixture["options"])
    if "feature_names" in options:
        options["feature_names"] = tuple(options["feature_names"])
    return AdapterOptions(protocol=protocol, **options)


def _spell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_spell(item) for item in value]
    if isinstance(value, dict):
        return {key: _spell(item) for key, item in value.items()}
    return value


def _check(parsed: Parsed, expected: dict[str, Any]) -> None:
    assert parsed.model_version == expected["model_version"]
    assert parsed.request_id == expected["request_id"]
    assert len(parsed.rows) == len(expected["rows"])
    for row, want in zip(parsed.rows, expected["rows"], strict=True):
        assert _spell(row.features) == want["features"]
        assert _spell(row.prediction) == want["prediction"]
        assert row.confidence == (None if want["confidence"] is None else pytest.approx(want["confidence"]))
        if want["scores"] is None or any(isinstance(s, str) for s in want["scores"]):
            assert _spell(row.scores) == want["scores"]
        else:
            assert row.scores == pytest.approx(want["scores"])


def test_there_are_fixtures_for_every_protocol() -> None:
    protocols = {_load(path)["protocol"] for path in FIXTURES}
    assert protocols == {"kserve-v1", "open-inference-v2", "tfserving", "mlflow", "json"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_with_its_protocol(path: Path) -> None:
    fixture = _load(path)
    _check(parse_exchange(_exchange(fixture), _options(fixture, fixture["protocol"])), fixture["expected"])


@pytest.mark.parametrize("path", [p for p in FIXTURES if _load(p)["auto"]], ids=lambda p: p.stem)
def test_fixture_with_auto(path: Path) -> None:
    fixture = _load(path)
    _check(parse_exchange(_exchange(fixture), _options(fixture, "auto")), fixture["expected"])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_gzipped(path: Path) -> None:
    fixture = _load(path)
    exchange = _exchange(fixture, gzipped=True)
    _check(parse_exchange(exchange, _options(fixture, fixture["protocol"])), fixture["expected"])


@pytest.mark.parametrize("path", [p for p in FIXTURES if not _load(p)["auto"]], ids=lambda p: p.stem)
def test_generic_json_is_not_guessed_by_auto(path: Path) -> None:
    fixture = _load(path)
    assert parse_exchange(_exchange(fixture), _options(fixture, "auto")).rows == []
