"""The browser page in a real headless Chromium (Debian's, driven by playwright): upload a photo,
see the boxes and the counts, add a class by dragging a rectangle on the photo."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serve_helpers import ServerProcess, image_bytes, store_photo

from os2d.serve import db

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SERVE = ["--model", "untrained", "--scales", "256", "--class-size", "64", "--threshold", "-1", "--max-dets", "6"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path):
    with ServerProcess(["--catalog", str(tmp_path / "cat"), *SERVE]) as running:
        for i, name in enumerate(("milk", "juice")):
            response = httpx.post(f"{running.url}/classes", data={"name": name}, timeout=120,
                                  files=[("images", (f"{name}.png", image_bytes(seed=i), "image/png"))])
            assert response.status_code == 201
        yield running


def test_detect_draw_and_add_a_class_by_dragging(browser, server, shared, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url + "/")
    page.wait_for_selector('#class-list li[data-name="juice"]')
    assert page.locator("#class-list li").count() == 2

    page.set_input_files("#photo-input", str(store_photo(shared, "Arla-Sour-Milk")))
    page.wait_for_function("document.getElementById('photo').naturalWidth > 0")
    page.click("#detect-btn")
    page.wait_for_selector("#overlay g.det", timeout=120_000)
    boxes = page.locator("#overlay g.det")
    assert 1 <= boxes.count() <= 6
    assert page.locator("#overlay g.det text").count() == boxes.count()  # one label per box
    assert page.locator("#overlay g.det text").first.text_content().split()[0] in {"milk", "juice"}
    counted = sum(int(cell) for cell in page.locator("#counts tbody td.num:nth-child(2)").all_text_contents())
    assert counted == boxes.count()

    page.fill("#class-name", "dragged shelf label")
    page.click("#crop-mode-btn")
    photo = page.locator("#photo").bounding_box()
    scale = page.evaluate("document.getElementById('photo').naturalWidth") / photo["width"]
    page.mouse.move(photo["x"] + 20, photo["y"] + 30)
    page.mouse.down()
    page.mouse.move(photo["x"] + 120, photo["y"] + 110, steps=8)
    page.mouse.up()
    assert page.locator("#overlay rect.selection").count() == 1
    page.click("#add-crop-btn")
    page.wait_for_selector('#class-list li[data-name="dragged shelf label"]', timeout=120_000)
    assert "error" not in (page.locator("#message").get_attribute("class") or "")
    assert errors == []

    classes = {c["name"]: c for c in httpx.get(f"{server.url}/classes").json()}
    assert classes["dragged shelf label"]["images"] == 1
    folder = Path(server.args[server.args.index("--catalog") + 1])
    with db.opened(folder) as conn:
        crop = db.read_images(conn, "dragged shelf label")[0]
    assert crop.width == pytest.approx(100 * scale, abs=3) and crop.height == pytest.approx(80 * scale, abs=3)
    page.screenshot(path=str(tmp_path / "page.png"))
