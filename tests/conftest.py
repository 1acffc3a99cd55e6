"""Shared test fixtures: locating ../shared and small generated images."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared; fails the test with a clear message when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"shared test data not found: {path} (tests expect the project's shared/ folder "
            f"beside the project root, i.e. {SHARED})",
            pytrace=False,
        )
    return path


@pytest.fixture
def shared():
    """``shared("data", "flickrlogos27")`` -> Path, failing clearly when absent."""
    return shared_path
