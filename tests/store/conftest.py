"""The store's fixtures: ``place`` runs a test once on SQLite and once on a fresh PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import Postgres
from tests.store.support import Place


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "sqlite":
        return Place(tmp_path)
    postgres: Postgres = request.getfixturevalue("postgres")  # the session's server, started on first use
    return Place(tmp_path, postgres.database())


@pytest.fixture
def database(postgres: Postgres, tmp_path: Path) -> Place:
    """A fresh PostgreSQL database, for the tests of that backend alone."""
    return Place(tmp_path, postgres.database())
