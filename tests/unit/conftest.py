"""Fixtures shared by unit-test modules (their helpers live in tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.tls import self_signed_files
from tests.support.webui import UI, build_ui, sign_in


@pytest.fixture(scope="module")
def certfiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed server certificate and key for in-memory TLS handshakes."""
    return self_signed_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def ui(tmp_path: Path) -> UI:
    return build_ui(tmp_path / "state")


@pytest.fixture
def admin(ui: UI) -> Iterator[FlaskClient]:
    """A client that is signed in as the wizard's admin."""
    client = ui.client()
    response = sign_in(client)
    assert response.status_code == 303, response.get_data(as_text=True)
    yield client
