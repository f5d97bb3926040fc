"""The store's bounded buffer, alone: what it takes, what it refuses, and rows that come back."""

from __future__ import annotations

from typing import Any

from sidecar.store.buffer import Buffer


def size(row: tuple[Any, ...]) -> int:
    return 100


def rows(*names: str) -> list[tuple[Any, ...]]:
    return [(name,) for name in names]


def test_rows_taken_still_count_until_done() -> None:
    buffer = Buffer(4, 10_000, size)
    assert buffer.offer(rows("a", "b", "c"), [0, 1, 2]) == 0
    batch = buffer.take(2)
    assert batch == rows("a", "b")
    assert (len(buffer), buffer.waiting, buffer.bytes) == (3, 1, 300)
    # In flight, the batch still holds its place: two more rows would pass the bound of four.
    assert buffer.offer(rows("d", "e"), [0, 1]) == 1
    buffer.done(batch)
    assert (len(buffer), buffer.waiting, buffer.bytes) == (2, 2, 200)


def test_rows_put_back_come_first_and_in_order() -> None:
    buffer = Buffer(10, 10_000, size)
    buffer.offer(rows("a", "b", "c", "d"), [0, 1, 2, 3])
    batch = buffer.take(3)
    buffer.offer(rows("e"), [0])
    buffer.put_back(batch)
    assert (len(buffer), buffer.bytes) == (5, 500)
    assert buffer.take(10) == rows("a", "b", "c", "d", "e")


def test_a_whole_exchange_is_refused_or_taken() -> None:
    buffer = Buffer(5, 10_000, size)
    # Exchanges of 3 and 2 rows fill it; then neither one of 2 rows nor one of 1 fits, each refused whole.
    assert buffer.offer(rows("x0", "x1", "x2", "y0", "y1"), [0, 3]) == 0
    assert buffer.offer(rows("z0", "z1", "w0"), [0, 2]) == 3
    assert len(buffer) == 5


def test_an_exchange_over_the_byte_bound_passes_only_an_empty_buffer() -> None:
    buffer = Buffer(100, 250, size)
    assert buffer.offer(rows("a", "b", "c"), [0]) == 0  # 300 bytes > 250, but nothing else is buffered
    assert buffer.offer(rows("d"), [0]) == 1
    buffer.done(buffer.take(3))
    assert (len(buffer), buffer.bytes) == (0, 0)
    assert buffer.offer(rows("d"), [0]) == 0


def test_drain_takes_every_waiting_row_but_not_those_in_flight() -> None:
    buffer = Buffer(10, 10_000, size)
    buffer.offer(rows("a", "b", "c"), [0, 1, 2])
    batch = buffer.take(1)
    assert buffer.drain() == rows("b", "c")
    assert (len(buffer), buffer.bytes) == (1, 100)
    buffer.done(batch)
    assert (len(buffer), buffer.bytes) == (0, 0)
