"""Trimming a class image's uniform margin: known answers, what is left alone, real packshots."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared_data import shared_path
from os2d.data.trim import TRIM_KEEP, content_box, trim_uniform_border


def _picture(width=120, height=80, box=(30, 10, 70, 60), background=(255, 255, 255), colour=(200, 20, 40)):
    pixels = np.full((height, width, 3), background, dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = colour
    return Image.fromarray(pixels)


#: The 40 x 50 product of ``_picture()`` with TRIM_KEEP (0.1) of its width / height kept on each side.
KEPT = (26, 5, 74, 65)


def test_content_box_of_a_product_on_white_is_its_rectangle_with_a_kept_margin():
    assert TRIM_KEEP == 0.1
    assert content_box(_picture()) == KEPT


def test_a_margin_narrower_than_the_kept_one_is_left_alone():
    logo = _picture(width=100, height=100, box=(4, 4, 96, 96))  # a logo's clear space: 4 px of 100
    assert content_box(logo) is None
    assert trim_uniform_border(logo) is logo


def test_the_kept_margin_stops_at_the_image_edge():
    assert content_box(_picture(box=(30, 2, 70, 60))) == (26, 0, 74, 66)


def test_any_uniform_border_colour_is_a_margin():
    assert content_box(_picture(background=(20, 30, 25), colour=(240, 240, 240))) == KEPT


def test_white_inside_the_product_does_not_split_it():
    picture = np.asarray(_picture()).copy()
    picture[20:50, 40:60] = 255  # a white label in the middle of the pack
    assert content_box(Image.fromarray(picture)) == KEPT


def test_jpeg_noise_in_the_margin_is_ignored():
    rng = np.random.default_rng(0)
    picture = np.asarray(_picture()).astype(np.int16)
    picture = np.clip(picture + rng.integers(-12, 13, size=picture.shape), 0, 255).astype(np.uint8)
    assert content_box(Image.fromarray(picture)) == KEPT


def test_a_few_stray_pixels_in_the_margin_do_not_widen_the_box():
    picture = np.asarray(_picture(width=400, height=300, box=(100, 50, 300, 250))).copy()
    picture[5, 5] = (0, 0, 0)  # one dust pixel: 1 of 300 in its column, 1 of 400 in its row
    assert content_box(Image.fromarray(picture)) == (80, 30, 320, 270)


def test_a_photo_crop_without_a_uniform_border_is_left_alone():
    rng = np.random.default_rng(1)
    crop = Image.fromarray(rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8))
    assert content_box(crop) is None
    assert trim_uniform_border(crop) is crop


def test_no_margin_blank_or_tiny_content_gives_none():
    assert content_box(_picture(box=(0, 0, 120, 80))) is None  # content reaches every side
    assert content_box(Image.new("RGB", (50, 50), "white")) is None  # nothing but margin
    assert content_box(_picture(box=(60, 40, 62, 42))) is None  # 4 pixels: noise, not a product


def test_trim_crops_to_the_content_and_refuses_slivers():
    trimmed = trim_uniform_border(_picture())
    assert trimmed.size == (48, 60)
    assert np.asarray(trimmed).reshape(-1, 3).tolist().count([200, 20, 40]) == 40 * 50
    sliver = _picture(width=200, height=100, box=(20, 45, 180, 55))  # 10 px high, 12 with the kept margin
    assert trim_uniform_border(sliver) is sliver
    assert trim_uniform_border(sliver, min_side=8).size == (192, 12)


def test_grocery_packshot_loses_its_white_sides():
    with Image.open(shared_path("data", "grocery-store", "iconic", "Arla-Sour-Milk.jpg")) as image:
        image.load()
    x0, y0, x1, y1 = content_box(image)
    assert image.size == (198, 198)
    assert 0.3 < (x1 - x0) / image.width < 0.6 and (y1 - y0) / image.height > 0.95


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_image_modes_are_read_as_rgb(mode):
    assert content_box(_picture().convert(mode)) == KEPT
