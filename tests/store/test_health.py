"""When a failing database is tried again, and what is logged: the backoff by a hand-moved clock."""

from __future__ import annotations

import logging

import pytest

from sidecar.store.backend import Refused, Unavailable
from sidecar.store.health import BACKOFF_MAX_SECONDS, ON_DEMAND_SECONDS, Health


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unreachable_backs_off_from_half_a_second_doubling_to_thirty(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.store")
    clock = Monotonic()
    health = Health("postgresql://u:***@db/x", "SIDECAR_STATE_URL", buffer_rows=10, clock=clock)
    assert health.available and health.due(on_demand=False)
    waits = []
    for _ in range(9):
        health.failed(Unavailable("connection refused"))
        wait = 0.0
        while not health.due(on_demand=False):
            clock.now += 0.25
            wait += 0.25
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS]
    assert not health.available
    health.succeeded()
    assert health.available
    health.failed(Unavailable("connection refused"))  # a new outage starts from half a second again
    assert not health.due(on_demand=False)
    clock.now += 0.5
    assert health.due(on_demand=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "SIDECAR_STATE_URL" in warnings[0].getMessage()  # once per outage
    assert [r.getMessage().endswith("has recovered") for r in caplog.records if r.levelno == logging.INFO] == [True]


def test_a_caller_waiting_for_an_answer_may_try_once_a_second() -> None:
    clock = Monotonic()
    health = Health("db", "SIDECAR_STATE_URL", buffer_rows=10, clock=clock)
    for _ in range(6):
        health.failed(Unavailable("down"))  # the backoff is now 16 s
    assert not health.due(on_demand=True)
    clock.now += ON_DEMAND_SECONDS
    assert health.due(on_demand=True) and not health.due(on_demand=False)
    health.attempt()
    assert not health.due(on_demand=True)


def test_a_refusal_is_logged_but_puts_nothing_off(caplog: pytest.LogCaptureFixture) -> None:
    health = Health("predictions.db", "SIDECAR_STATE_DIR", buffer_rows=10, clock=Monotonic())
    health.failed(Refused("database is locked"))
    assert not health.available and health.due(on_demand=False)
    assert "is failing (database is locked)" in caplog.text


def test_a_bug_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    health = Health("predictions.db", "SIDECAR_STATE_DIR", buffer_rows=10, clock=Monotonic())
    try:
        raise KeyError("oops")
    except KeyError as exc:
        health.failed(exc)
    [warning] = caplog.records
    assert warning.exc_info is not None and warning.exc_info[0] is KeyError
