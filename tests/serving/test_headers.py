from __future__ import annotations

import time

from sidecar.serving.headers import client_headers, new_request_id, upstream_headers


def _forwarded(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, scheme: str
) -> tuple[list[tuple[str, str]], str, bool, bytes | None]:
    """upstream_headers() with its header lines parsed back into (name, value) pairs."""
    lines, count, request_id, client_sent, length = upstream_headers(headers, client, scheme)
    assert lines.endswith(b"\r\n") and lines.count(b"\r\n") == count
    pairs = [line.split(": ", 1) for line in lines.decode("latin-1").split("\r\n")[:-1]]
    return [(k, v) for k, v in pairs], request_id.decode(), client_sent, length


def test_connection_named_headers_are_removed_both_ways() -> None:
    out, _, _, _ = _forwarded(
        [(b"connection", b"X-A, x-b"), (b"x-a", b"1"), (b"x-b", b"2"), (b"x-c", b"3")], None, "https"
    )
    names = [k for k, _ in out]
    assert "x-a" not in names and "x-b" not in names and "x-c" in names
    response = client_headers([(b"Connection", b"x-a"), (b"X-A", b"1"), (b"X-C", b"3")], b"id")
    assert response == [(b"x-c", b"3"), (b"x-request-id", b"id")]


def test_forwarded_headers_from_an_ingress_are_kept() -> None:
    out, request_id, client_sent, _ = _forwarded(
        [(b"host", b"api.example.com"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"api.example.com")],
        ("10.1.2.3", 5555),
        "http",
    )
    assert dict(out)["x-forwarded-proto"] == "https"
    assert [v for k, v in out if k == "x-forwarded-host"] == ["api.example.com"]
    assert dict(out)["x-forwarded-for"] == "10.1.2.3"
    assert "host" not in dict(out)  # the client library sets the upstream's own
    assert not client_sent and len(request_id) == 32


def test_framing_headers_are_left_to_the_client_library() -> None:
    out, _, _, length = _forwarded(
        [(b"content-length", b"42"), (b"transfer-encoding", b"chunked"), (b"x-a", b"1")], None, "http"
    )
    assert [k for k, _ in out] == ["x-a", "x-request-id", "x-forwarded-proto"]
    assert length == b"42"


def test_repeated_x_forwarded_for_headers_are_joined_in_order() -> None:
    out, _, _, _ = _forwarded(
        [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")], ("3.3.3.3", 1), "http"
    )
    assert dict(out)["x-forwarded-for"] == "1.1.1.1, 2.2.2.2, 3.3.3.3"


def test_proxy_headers_are_dropped_and_other_names_kept_on_every_call() -> None:
    # The second call takes the learned-name path of the first.
    for _ in range(2):
        out, _, _, _ = _forwarded([(b"proxy-authorization", b"x"), (b"x-kept", b"1")], None, "http")
        assert [k for k, _ in out][:1] == ["x-kept"] and "proxy-authorization" not in dict(out)
        response = client_headers([(b"Proxy-Authenticate", b"x"), (b"X-Kept", b"1"), (b"Keep-Alive", b"t=5")], b"i")
        assert response == [(b"x-kept", b"1"), (b"x-request-id", b"i")]


def test_upstream_request_id_is_not_duplicated() -> None:
    assert client_headers([(b"X-Request-ID", b"up")], b"ours") == [(b"x-request-id", b"up")]


def test_request_ids_are_unique_hex_across_random_buffer_refills() -> None:
    # 1,000 ids of 10 random bytes span three refills of the 4 KiB random buffer.
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_request_ids_sort_by_the_millisecond_they_were_made() -> None:
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert first[:12] < second[:12] and first < second
    assert abs(int(second[:12], 16) - time.time() * 1000) < 1000


def test_a_request_id_made_for_a_request_carries_its_arrival_millisecond() -> None:
    # The proxy passes the arrival time it read anyway, rather than the id reading the clock again.
    arrival = 1_765_000_000.1231
    lines, _, request_id, client_sent, _ = upstream_headers([(b"x-a", b"1")], None, "https", arrival)
    assert not client_sent
    assert request_id[:12] == b"%012x" % 1_765_000_000_123
    assert lines == b"x-a: 1\r\nx-request-id: " + request_id + b"\r\nx-forwarded-proto: https\r\n"
    later = upstream_headers([], None, "http", arrival + 0.0005)[2]
    assert later[:12] == request_id[:12] and later != request_id
