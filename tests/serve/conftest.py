"""Fixtures of the service tests: one untrained detector, apps on temporary catalogs."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serve_helpers import FAST

from os2d import Detector
from os2d.serve import Limits, ServeSettings, create_app


@pytest.fixture(scope="session")
def untrained():
    return Detector.load("untrained")


@pytest.fixture
def make_client(tmp_path, untrained):
    """``make_client(**limits)`` -> a started TestClient on a fresh catalog in ``tmp_path``."""
    clients = []

    def make(folder=None, **limits):
        settings = ServeSettings(catalog=folder or tmp_path / "catalog", model="untrained", threads=1,
                                 limits=Limits(**limits), **FAST)
        client = TestClient(create_app(settings, detector=untrained))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()
