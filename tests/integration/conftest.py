"""Fixtures over :mod:`tests.integration.stack`: a webhook receiver and an Alertmanager routing to it.

``alertmanager`` runs the deploy configuration (``deploy/alertmanager/alertmanager.yml``) made
hermetic: every receiver (paging, chat, tickets) posts to ``webhook`` under its own name, and
groups wait 1 s. A test that needs Prometheus too starts it with
:func:`~tests.integration.stack.run_prometheus`, since Prometheus needs the test's scrape targets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.stack import (
    ALERTMANAGER_CONFIG,
    Alertmanager,
    WebhookReceiver,
    hermetic_alertmanager_config,
    run_alertmanager,
    run_webhook_receiver,
)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with run_webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def alertmanager(tmp_path: Path, webhook: WebhookReceiver) -> AsyncIterator[Alertmanager]:
    config = hermetic_alertmanager_config(ALERTMANAGER_CONFIG, webhook.url)
    async with run_alertmanager(tmp_path / "alertmanager", config) as running:
        yield running
