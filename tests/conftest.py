"""Shared test fixtures."""
from __future__ import annotations

import pytest

from shared_data import PROJECT_ROOT, SHARED, shared_path  # noqa: F401  (re-exported for tests)


@pytest.fixture
def shared():
    """``shared("data", "flickrlogos27")`` -> Path, failing clearly when absent."""
    return shared_path
