"""Shared test fixtures."""
from __future__ import annotations

import pytest

from shared_data import shared_path


@pytest.fixture
def shared():
    """``shared("data", "flickrlogos27")`` -> Path, failing clearly when absent."""
    return shared_path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for every test: on a shared 2-core machine two spinning OpenMP threads
    make model tests several times slower, and results do not depend on the thread count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
