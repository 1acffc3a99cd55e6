"""Issue 11 regressions for load_image: float TIFFs and float/int arrays keep their brightness,
PIL images are turned upright like paths, size limits, FIFOs and headers."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from os2d.data import images as images_module
from os2d.data.images import load_image, read_image_header
from os2d.errors import InputTooLargeError, InvalidInputError


def _rgb(img):
    return np.asarray(img)


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.25, 1.0], [0, 64, 255]),        # float TIFF in [0, 1]
    ([0.0, 64.0, 255.0], [0, 64, 255]),      # float TIFF in [0, 255]
])
def test_float_tiff_keeps_its_brightness(tmp_path, values, expected):
    Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "f.tif"))[0, :, 1], expected)


def test_32bit_integer_tiff(tmp_path):
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "i.tif"))[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.uint32])
def test_integer_arrays_keep_their_brightness(dtype):
    out = _rgb(load_image(np.array([[[0, 0, 0], [100, 100, 100], [255, 255, 255]]], dtype=dtype)))
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255])
    if np.iinfo(dtype).max >= 65535:
        deep = np.array([[0, 32768, 65535]], dtype=dtype)
        np.testing.assert_array_equal(_rgb(load_image(deep))[0, :, 0], [0, 128, 255])


def test_integer_and_float_arrays_out_of_range():
    np.testing.assert_array_equal(_rgb(load_image(np.array([[-5, 10, 200]], dtype=np.int32)))[0, :, 0],
                                  [0, 10, 200])  # negative values clipped
    np.testing.assert_array_equal(_rgb(load_image(np.array([[-0.5, 0.5, 1.0]])))[0, :, 0], [0, 128, 255])
    with pytest.raises(InvalidInputError, match="integer pixel values up to 70000"):
        load_image(np.array([[0, 70000]], dtype=np.int32))


def test_float_rgba_array_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.float32)  # black, fully transparent
    np.testing.assert_array_equal(_rgb(load_image(rgba)), np.full((2, 2, 3), 255, np.uint8))


def test_pil_image_honours_exif_orientation_like_a_path(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # red on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    from_path = load_image(tmp_path / "rot.jpg")
    with Image.open(tmp_path / "rot.jpg") as pil:
        from_pil = load_image(pil)
    assert from_path.size == from_pil.size == (20, 40)
    np.testing.assert_array_equal(_rgb(from_path), _rgb(from_pil))
    assert _rgb(from_pil)[2, 10, 0] > 200  # the red band is now at the top


def test_pil_and_array_inputs_respect_the_pixel_limit(monkeypatch):
    monkeypatch.setattr(images_module, "MAX_PIXELS", 24)
    with pytest.raises(InputTooLargeError, match=r"too large \(5x5 pixels, limit 24\)"):
        load_image(Image.new("RGB", (5, 5)))
    with pytest.raises(InputTooLargeError, match=r"too large \(5x5 pixels"):
        load_image(np.zeros((5, 5, 3), np.uint8))


def test_bomb_header_is_too_large_without_decoding(tmp_path):
    huge = tmp_path / "bomb.ppm"
    huge.write_bytes(b"P6\n30000 30000\n255\n" + bytes(64))
    with pytest.raises(InputTooLargeError, match="too large"):
        load_image(huge)
    with pytest.raises(InputTooLargeError, match="too large"):
        read_image_header(huge, what="background image")


def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "scene.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_image(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_image_header(fifo)


def test_read_image_header(tmp_path):
    Image.new("RGB", (7, 3)).save(tmp_path / "a.png")
    assert read_image_header(tmp_path / "a.png") == (7, 3)
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_image_header(tmp_path / "b.png")
