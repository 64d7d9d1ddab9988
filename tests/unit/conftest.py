"""Fixtures shared by unit-test modules (their helpers live in tests/support)."""

from __future__ import annotations

import pytest

from tests.support.tls import self_signed_files


@pytest.fixture(scope="module")
def certfiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed server certificate and key for in-memory TLS handshakes."""
    return self_signed_files(tmp_path_factory.mktemp("tls"))
