"""End to end: a real ``os2d serve`` with the default model, real packshots and a real store photo;
a restart finds the catalog and gives the same detections. Then two workers share one catalog."""
from __future__ import annotations

import pytest
from serve_helpers import ServerProcess, image_bytes, packshot, store_photo

from os2d.catalog import Catalog

PRODUCTS = ("Alpro-Fresh-Soy-Milk", "Tropicana-Apple-Juice", "Arla-Sour-Milk")
PHOTO = ("Alpro-Fresh-Soy-Milk", 2)  # photos/test/Alpro-Fresh-Soy-Milk/Alpro-Fresh-Soy-Milk_003.jpg
# threshold in calibrated units (the default model reports calibrated scores; this photo: 0.025 for its product)
SERVE = ["--model", "default", "--scales", "400", "--threshold", "0.01", "--max-dets", "10"]


def detect(client, photo):
    response = client.post("/detect", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    return response.json()


def test_catalog_and_detections_survive_a_restart(tmp_path, shared):
    folder = tmp_path / "shop"
    photo = store_photo(shared, *PHOTO)
    with ServerProcess(["--catalog", str(folder), *SERVE]) as server:
        client = server.client()
        for name in PRODUCTS:
            path = packshot(shared, name)
            response = client.post("/classes", data={"name": name},
                                   files=[("images", (path.name, path.read_bytes(), "image/jpeg"))])
            assert response.status_code == 201, response.text
        first = detect(client, photo)
        assert server.stop() == 0
    assert first["image"] == {"width": 348, "height": 348}
    assert first["detections"] and first["detections"][0]["class"] == PHOTO[0]  # the photo's product ranks first

    with ServerProcess(["--catalog", str(folder), *SERVE]) as server:
        client = server.client()
        assert [c["name"] for c in client.get("/classes").json()] == list(PRODUCTS)
        assert client.get("/health").json()["classes"] == len(PRODUCTS)
        again = detect(client, photo)
    assert [d["class"] for d in again["detections"]] == [d["class"] for d in first["detections"]]
    for mine, before in zip(again["detections"], first["detections"]):
        assert mine["score"] == pytest.approx(before["score"], abs=1e-5)
        assert mine["bbox"] == pytest.approx(before["bbox"], abs=1e-3)
    assert Catalog.open(folder).names == list(PRODUCTS)  # also an os2d catalog folder


def test_two_workers_share_the_catalog_and_the_metrics(tmp_path):
    args = ["--catalog", str(tmp_path / "cat"), "--workers", "2", "--model", "untrained", "--scales", "256",
            "--class-size", "64", "--threshold", "-1"]
    with ServerProcess(args) as server:
        client = server.client()
        for i in range(4):  # requests land on either worker; every worker sees every change
            response = client.post("/classes", data={"name": f"c{i}"},
                                   files=[("images", ("c.png", image_bytes(seed=i), "image/png"))])
            assert response.status_code == 201
            scene = client.post("/detect", data={"classes": f"c{i}"},
                                files={"image": ("s.jpg", image_bytes((320, 240), "JPEG", seed=9), "image/jpeg")})
            assert scene.status_code == 200 and {d["class"] for d in scene.json()["detections"]} == {f"c{i}"}
        assert {client.get("/health").json()["classes"] for _ in range(6)} == {4}
        text = client.get("/metrics").text
        assert 'os2d_requests_total{method="POST",route="/classes",status="201"} 4.0' in text
        assert server.stop() == 0
