from __future__ import annotations

import time

from sidecar.headers import client_headers, new_request_id, upstream_headers


def test_connection_named_headers_are_removed_both_ways() -> None:
    out, _, _ = upstream_headers(
        [(b"connection", b"X-A, x-b"), (b"x-a", b"1"), (b"x-b", b"2"), (b"x-c", b"3")], None, "https"
    )
    names = [k for k, _ in out]
    assert "x-a" not in names and "x-b" not in names and "x-c" in names
    response = client_headers([(b"Connection", b"x-a"), (b"X-A", b"1"), (b"X-C", b"3")], "id")
    assert response == [(b"x-c", b"3"), (b"x-request-id", b"id")]


def test_forwarded_headers_from_an_ingress_are_kept() -> None:
    out, request_id, client_sent = upstream_headers(
        [(b"host", b"api.example.com"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"api.example.com")],
        ("10.1.2.3", 5555),
        "http",
    )
    assert dict(out)["x-forwarded-proto"] == "https"
    assert [v for k, v in out if k == "x-forwarded-host"] == ["api.example.com"]
    assert dict(out)["x-forwarded-for"] == "10.1.2.3"
    assert not client_sent and len(request_id) == 32


def test_repeated_x_forwarded_for_headers_are_joined_in_order() -> None:
    out, _, _ = upstream_headers(
        [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")], ("3.3.3.3", 1), "http"
    )
    assert dict(out)["x-forwarded-for"] == "1.1.1.1, 2.2.2.2, 3.3.3.3"


def test_upstream_request_id_is_not_duplicated() -> None:
    assert client_headers([(b"X-Request-ID", b"up")], "ours") == [(b"x-request-id", b"up")]


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
