"""Tests of os2d.data.images.load_image: every input kind and every refusal."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from os2d.data import images as images_module
from os2d.data.images import load_image


def _rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img)


# ------------------------------------------------------------------------------------------- files
def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    for path in (tmp_path / "a.png", str(tmp_path / "a.png")):
        np.testing.assert_array_equal(_rgb(load_image(path)), arr)


def test_exif_rotated_jpeg_is_transposed(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    img.paste((20, 20, 220), (0, 0, 10, 20))  # left quarter blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.size == (20, 40)
    arr = _rgb(loaded).astype(int)
    # clockwise rotation: the blue left quarter becomes the top quarter
    assert arr[2, 10, 2] > 150 and arr[2, 10, 0] < 100
    assert arr[37, 10, 0] > 150 and arr[37, 10, 2] < 100


def test_grayscale_L(tmp_path):
    arr = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    out = _rgb(load_image(tmp_path / "g.png"))
    np.testing.assert_array_equal(out, np.repeat(arr[:, :, None], 3, axis=2))


def test_LA_is_composited_on_white(tmp_path):
    img = Image.new("LA", (2, 1))
    img.putpixel((0, 0), (50, 255))  # opaque gray
    img.putpixel((1, 0), (50, 0))  # fully transparent -> white
    img.save(tmp_path / "la.png")
    out = _rgb(load_image(tmp_path / "la.png"))
    np.testing.assert_array_equal(out[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0  # palette index 0 (red) is transparent
    img.save(tmp_path / "p.png", transparency=0)
    out = _rgb(load_image(tmp_path / "p.png"))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (1, 1))
    img.putpalette([10, 20, 30] + [0] * 765)
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(_rgb(load_image(tmp_path / "p.png"))[0, 0], [10, 20, 30])


def test_rgba_composited_on_white(tmp_path):
    arr = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "rgba.png")
    out = _rgb(load_image(tmp_path / "rgba.png")).astype(int)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    # black at alpha 128/255 over white: 255 * (1 - 128/255) = 127
    assert np.all(np.abs(out[0, 2] - 127) <= 1)


def test_16bit_png(tmp_path):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = _rgb(load_image(tmp_path / "deep.png"))
    # scaled by 255 / 65535: 32768 -> 127.5 -> 128
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    assert np.all(out[..., 0] == out[..., 2])


def test_16bit_image_with_8bit_range_is_not_darkened():
    img = Image.fromarray(np.array([[0, 17, 255]], dtype=np.uint16))
    assert img.mode.startswith("I;16")
    np.testing.assert_array_equal(_rgb(load_image(img))[0, :, 1], [0, 17, 255])


def test_pil_input_passthrough_and_conversion():
    rgb = Image.new("RGB", (3, 2), (1, 2, 3))
    assert load_image(rgb) is rgb
    cmyk = Image.new("CMYK", (3, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(_rgb(load_image(cmyk))[0, 0], [255, 255, 255])


# ------------------------------------------------------------------------------------------ arrays
def test_uint8_arrays():
    arr = np.random.default_rng(1).integers(0, 256, (4, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_rgb(load_image(arr)), arr)
    gray = arr[:, :, :1]  # HxWx1 is squeezed to grayscale
    np.testing.assert_array_equal(_rgb(load_image(gray)), np.repeat(gray, 3, axis=2))
    rgba = np.concatenate([arr, np.zeros((4, 3, 1), np.uint8)], axis=2)  # transparent -> white
    np.testing.assert_array_equal(_rgb(load_image(rgba)), np.full((4, 3, 3), 255, np.uint8))


def test_float_arrays_in_unit_range_and_0_255():
    unit = np.array([[0.0, 0.2, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(_rgb(load_image(unit))[0, :, 0], [0, 51, 255])
    wide = np.array([[0.0, 51.0, 300.0]], dtype=np.float64)  # max > 1: already 0..255, clipped
    np.testing.assert_array_equal(_rgb(load_image(wide))[0, :, 0], [0, 51, 255])


def test_uint16_arrays():
    deep = np.array([[0, 257, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(_rgb(load_image(deep))[0, :, 0], [0, 1, 255])
    small = np.array([[0, 7, 255]], dtype=np.uint16)  # values fit 8 bits: taken as they are
    np.testing.assert_array_equal(_rgb(load_image(small))[0, :, 0], [0, 7, 255])


def test_array_errors():
    with pytest.raises(ValueError, match="array shape \\(0, 0\\)"):
        load_image(np.zeros((0, 0), np.uint8))
    with pytest.raises(ValueError, match="array shape \\(0, 5, 3\\)"):
        load_image(np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match="got shape \\(4, 4, 2\\)"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="got shape \\(4,\\)"):
        load_image(np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.array([[0.5, np.nan]]))
    with pytest.raises(TypeError, match="dtype bool"):
        load_image(np.ones((2, 2), bool))


def test_unsupported_input_type():
    with pytest.raises(TypeError, match="class image.*got int"):
        load_image(42, what="class image")


def test_empty_pil_image():
    with pytest.raises(ValueError, match="empty \\(size 0x5\\)"):
        load_image(Image.new("RGB", (0, 5)))


# ------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="scene image not found.*nope.jpg"):
        load_image(tmp_path / "nope.jpg", what="scene image")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        load_image(tmp_path / "empty.jpg")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_image(tmp_path)


def test_corrupt_bytes(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"definitely not an image" * 20)
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "junk.png")


def test_truncated_jpeg(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated.*cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_too_many_pixels(tmp_path, monkeypatch):
    Image.new("RGB", (5, 5)).save(tmp_path / "big.png")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 24)
    with pytest.raises(ValueError, match="too large \\(5x5 pixels, limit 24\\)"):
        load_image(tmp_path / "big.png")
