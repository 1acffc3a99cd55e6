"""Shared test fixtures."""
from __future__ import annotations

import pytest

from shared_data import shared_path


@pytest.fixture
def shared():
    """``shared("data", "flickrlogos27")`` -> Path, failing clearly when absent."""
    return shared_path
