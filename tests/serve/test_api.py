"""Every endpoint of the service and its error paths, through FastAPI's TestClient."""
from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import pytest
from PIL import Image
from serve_helpers import FAST, image_bytes, packshot, png_bomb, store_photo

from os2d.catalog import Catalog
from os2d.serve.logs import JsonFormatter


def add(client, name, *blobs, content_type="image/png"):
    files = [("images", (f"{name}-{i}.png", blob, content_type)) for i, blob in enumerate(blobs)]
    return client.post("/classes", data={"name": name}, files=files)


def detect(client, blob, content_type="image/jpeg", **fields):
    return client.post("/detect", data={k: str(v) for k, v in fields.items()},
                       files={"image": ("scene.jpg", blob, content_type)})


@pytest.fixture
def scene():
    return image_bytes((320, 240), "JPEG", seed=5)


def test_health_reports_model_and_class_count(client):
    add(client, "a", image_bytes(seed=1))
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["classes"] == 1
    assert body["model"]["name"] == "untrained" and body["model"]["identity"].startswith("os2d-")


def test_add_list_extend_delete_round_trip(client):
    first = add(client, "cereal", image_bytes(seed=1))
    assert first.status_code == 201 and first.headers["location"] == "/classes/cereal"
    assert first.json()["images"] == 1
    extended = add(client, "cereal", image_bytes(seed=2), image_bytes(seed=3))
    assert extended.status_code == 201 and extended.json()["images"] == 3 and extended.json()["entries"] == 3
    assert add(client, "milk", image_bytes(seed=4)).status_code == 201
    assert [(c["name"], c["images"]) for c in client.get("/classes").json()] == [("cereal", 3), ("milk", 1)]
    assert client.delete("/classes/cereal").status_code == 204
    assert [c["name"] for c in client.get("/classes").json()] == ["milk"]


def test_delete_unknown_class_is_404(client):
    response = client.delete("/classes/nothing")
    assert response.status_code == 404 and "nothing" in response.json()["detail"]


def test_detect_answers_boxes_in_original_pixels(client, scene):
    add(client, "a", image_bytes(seed=1))
    add(client, "b", image_bytes(seed=2))
    response = detect(client, scene)
    assert response.status_code == 200
    body = response.json()
    assert body["image"] == {"width": 320, "height": 240}
    assert 0 < len(body["detections"]) <= 5 and set(body["timing_ms"]) == {"queue", "compute"}
    for det in body["detections"]:
        x1, y1, x2, y2 = det["bbox"]
        assert det["class"] in {"a", "b"} and 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
        assert isinstance(det["score"], float)


def test_detect_options_subset_threshold_max_detections(client, scene):
    add(client, "a", image_bytes(seed=1))
    add(client, "b", image_bytes(seed=2))
    every_b = detect(client, scene, classes="b", max_detections=100).json()["detections"]
    assert {d["class"] for d in every_b} == {"b"} and len(every_b) >= 2
    top_2 = detect(client, scene, classes="b", max_detections=2).json()["detections"]
    assert top_2 == every_b[:2]
    assert detect(client, scene, threshold=2.0).json()["detections"] == []  # OS2D scores are <= 1


def test_detect_unknown_class_in_subset_is_404_naming_it(client, scene):
    add(client, "a", image_bytes(seed=1))
    response = detect(client, scene, classes="a,ghost")
    assert response.status_code == 404 and "ghost" in response.json()["detail"]


def test_detect_on_empty_catalog_is_409_with_advice(client, scene):
    response = detect(client, scene)
    assert response.status_code == 409 and "POST /classes" in response.json()["detail"]


@pytest.mark.parametrize("fields", [{"max_detections": 0}, {"max_detections": 10 ** 6}, {"mode": "turbo"},
                                    {"threshold": "nan"}, {"threshold": "high"}])
def test_detect_bad_options_are_422(client, scene, fields):
    add(client, "a", image_bytes(seed=1))
    response = detect(client, scene, **fields)
    assert response.status_code == 422 and response.json()["detail"]


def test_bad_image_is_422(client):
    add(client, "a", image_bytes(seed=1))
    truncated = image_bytes((200, 200), "JPEG")[:300]
    response = detect(client, truncated)
    assert response.status_code == 422 and "corrupt" in response.json()["detail"]


def test_not_an_image_is_415(client):
    add(client, "a", image_bytes(seed=1))
    response = detect(client, b"%PDF-1.4 definitely not an image", content_type="application/octet-stream")
    assert response.status_code == 415


def test_wrong_content_type_is_415(client):
    response = add(client, "a", image_bytes(seed=1), content_type="text/plain")
    assert response.status_code == 415 and "text/plain" in response.json()["detail"]


def test_empty_upload_is_422(client):
    add(client, "a", image_bytes(seed=1))
    assert detect(client, b"").status_code == 422


@pytest.mark.parametrize("side", [8_000, 30_000])  # over the service's limit; over Pillow's own guard too
def test_decompression_bomb_is_413_before_decoding(client, side):
    add(client, "a", image_bytes(seed=1))
    bomb = png_bomb(side, side)
    assert len(bomb) < 200  # the pixels were never there: only the header was read
    response = detect(client, bomb, content_type="image/png")
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_image_over_the_pixel_limit_is_413(make_client):
    client = make_client(max_pixels=10_000)
    response = add(client, "big", image_bytes((200, 100)))
    assert response.status_code == 413 and "limit 10000" in response.json()["detail"]


def test_oversized_upload_is_413(make_client):
    client = make_client(max_upload_bytes=4096)
    response = add(client, "big", image_bytes((400, 400), seed=9))  # ~hundreds of kB of PNG
    assert response.status_code == 413 and "4096" in response.json()["detail"]


def test_oversized_chunked_upload_is_413(make_client):
    client = make_client(max_upload_bytes=4096)
    body = (b"--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n--x\r\n"
            b"Content-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
            + image_bytes((400, 400), seed=9) + b"\r\n--x--\r\n")

    def chunks():
        for start in range(0, len(body), 1024):
            yield body[start:start + 1024]

    response = client.post("/classes", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    assert client.get("/classes").json() == []


def test_too_many_images_in_one_request_is_413(make_client):
    client = make_client(max_images_per_class=2)
    response = add(client, "a", *[image_bytes(seed=i) for i in range(3)])
    assert response.status_code == 413


def test_catalog_full_is_409(make_client):
    client = make_client(max_classes=1)
    assert add(client, "a", image_bytes(seed=1)).status_code == 201
    assert add(client, "b", image_bytes(seed=2)).status_code == 409
    assert add(client, "a", image_bytes(seed=3)).status_code == 201  # extending is still allowed


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", "tab\there", "a,b", " padded", "x" * 101, "..",
                                  "zero\u200bwidth"])
def test_bad_class_names_are_422_and_write_nothing(client, tmp_path, name):
    response = add(client, name, image_bytes(seed=1))
    assert response.status_code == 422
    assert client.get("/classes").json() == []
    assert not any((tmp_path / "catalog" / "images").glob("*"))


def test_unicode_and_url_unsafe_names_work(client):
    for name in ("Café crème 250 g", "50% off?", "Ça#1"):
        assert add(client, name, image_bytes(seed=1)).status_code == 201
    assert client.delete(f"/classes/{quote('50% off?')}").status_code == 204
    assert [c["name"] for c in client.get("/classes").json()] == ["Café crème 250 g", "Ça#1"]


def test_missing_form_fields_are_422(client):
    assert client.post("/classes", data={"name": "a"}).status_code == 422
    assert client.post("/detect").status_code == 422


def test_request_id_is_returned_and_taken_from_the_client(client):
    assert len(client.get("/health").headers["x-request-id"]) == 32
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/health", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_access_log_is_one_json_object_per_request(client, scene, caplog):
    add(client, "a", image_bytes(seed=1))
    with caplog.at_level(logging.INFO, logger="os2d.serve.access"):
        response = detect(client, scene)
    record = [r for r in caplog.records if r.name == "os2d.serve.access"][-1]
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200 and line["route"] == "/detect" and line["classes"] == 1
    assert line["detections"] == len(response.json()["detections"]) > 0
    assert line["latency_ms"] > 0 and line["request_id"] == response.headers["x-request-id"]


def test_metrics_count_requests_latency_and_catalog_size(client, scene):
    add(client, "a", image_bytes(seed=1))
    detect(client, scene)
    detect(client, scene, classes="ghost")
    text = client.get("/metrics").text
    assert 'os2d_requests_total{method="POST",route="/detect",status="200"} 1.0' in text
    assert 'os2d_requests_total{method="POST",route="/detect",status="404"} 1.0' in text
    assert 'os2d_request_duration_seconds_bucket{le="+Inf",route="/detect"} 2.0' in text
    assert "os2d_catalog_classes 1.0" in text


def test_unexpected_error_is_a_generic_500(client, scene, monkeypatch):
    add(client, "a", image_bytes(seed=1))
    service = client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "detect", broken)
    response = detect(client, scene)
    assert response.status_code == 500
    assert "secret" not in response.json()["detail"] and response.headers["x-request-id"] in response.json()["detail"]


def test_page_docs_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/classes", "/classes/{name}", "/detect", "/metrics"} <= set(paths)


def test_catalog_folder_is_an_os2d_catalog(client, tmp_path, untrained, scene):
    add(client, "a", image_bytes(seed=1))
    add(client, "b", image_bytes(seed=2))
    served = detect(client, scene).json()["detections"]
    detector = untrained.with_settings(**FAST)
    catalog = Catalog.open(tmp_path / "catalog", detector)
    assert catalog.names == ["a", "b"]
    direct = detector.detect(Image.open(io.BytesIO(scene)), catalog.bank()).to_records()
    assert [(d["class"], round(d["score"], 5)) for d in served] == [(d["class"], round(d["score"], 5)) for d in direct]


def test_restart_keeps_the_catalog(make_client, tmp_path, scene):
    first = make_client()
    add(first, "a", image_bytes(seed=1))
    before = detect(first, scene).json()["detections"]
    second = make_client()
    assert [c["name"] for c in second.get("/classes").json()] == ["a"]
    assert detect(second, scene).json()["detections"] == before


def test_fast_mode_detects(client, shared):
    for name in ("Oatly-Natural-Oatghurt", "Arla-Sour-Milk"):
        add(client, name, packshot(shared, name).read_bytes())
    photo = store_photo(shared, "Oatly-Natural-Oatghurt").read_bytes()
    response = detect(client, photo, mode="fast")
    assert response.status_code == 200 and response.json()["mode"] == "fast"
    assert response.json()["detections"]
