"""Reading user images robustly: EXIF rotation, grayscale/RGBA/16-bit, clear errors."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from os2d.errors import InputNotFoundError, InputTooLargeError, InvalidInputError, InvalidTypeError

logger = logging.getLogger(__name__)

ImageLike = Union[str, Path, Image.Image, np.ndarray]

#: Refuse images with more pixels than this (decompression-bomb guard), ~ 24k x 24k.
MAX_PIXELS = 600_000_000


def load_image(image: ImageLike, *, what: str = "image") -> Image.Image:
    """Return an 8-bit RGB PIL image from a path, a PIL image or an array.

    Handles EXIF orientation, grayscale, palette, RGBA (composited on white), 16-bit and float
    inputs. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a corrupt,
    empty or oversized image; the message names ``what`` and the offending value.
    """
    if isinstance(image, (str, Path)):
        pil = _open_path(Path(image), what=what)
    elif isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = _from_array(image, what=what)
    else:
        raise InvalidTypeError(f"{what}: expected a path, PIL image or numpy array, got {type(image).__name__}")
    pil = _to_rgb8(pil, what=what)
    if pil.width < 1 or pil.height < 1:
        raise InvalidInputError(f"{what} is empty (size {pil.width}x{pil.height})")
    return pil


def check_image_file(path: Path, *, what: str = "image") -> None:
    """Refuse a path that is not a regular, non-empty file before anything opens it.

    FIFOs and devices would block ``open()`` forever; folders and empty files fail late with
    unclear messages.
    """
    if not path.exists():
        raise InputNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise InvalidInputError(f"{what} is a directory, not an image file: {path}")
    if not path.is_file():
        raise InvalidInputError(f"{what} is not a regular file (a FIFO, socket or device?): {path}")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{what} is an empty file: {path}")


def _check_pixels(width: int, height: int, *, what: str, path: Path) -> None:
    if width * height > MAX_PIXELS:
        raise InputTooLargeError(
            f"{what} is too large ({width}x{height} pixels, limit {MAX_PIXELS}): {path}")


def read_image_header(path: Path, *, what: str = "image") -> Tuple[int, int]:
    """(width, height) of an image file from its header (pixels are not decoded).

    Raises the same errors as :func:`load_image` for a missing, non-regular, empty, unreadable
    or oversized file.
    """
    path = Path(path)
    check_image_file(path, what=what)
    try:
        with Image.open(path) as img:
            size = (int(img.width), int(img.height))
    except Image.DecompressionBombError as err:
        raise InputTooLargeError(f"{what} is too large ({err}): {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{what} is not a readable image: {path}") from err
    _check_pixels(*size, what=what, path=path)
    return size


def _open_path(path: Path, *, what: str) -> Image.Image:
    check_image_file(path, what=what)
    try:
        with Image.open(path) as img:
            _check_pixels(img.width, img.height, what=what, path=path)
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.copy()
    except InvalidInputError:
        raise
    except UnidentifiedImageError as err:
        raise InvalidInputError(f"{what} is not a readable image: {path}") from err
    except Image.DecompressionBombError as err:
        raise InputTooLargeError(f"{what} is too large ({err}): {path}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InvalidInputError(f"{what} is corrupt or truncated ({err}): {path}") from err


def _from_array(array: np.ndarray, *, what: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidInputError(f"{what}: expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")
    if array.size == 0:
        raise InvalidInputError(f"{what} is empty (array shape {array.shape})")
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{what}: array contains NaN or infinite values")
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).round().astype(np.uint8))
    if np.issubdtype(array.dtype, np.integer):
        top = 65535.0 if array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8))
    raise InvalidTypeError(f"{what}: unsupported array dtype {array.dtype}")


def _to_rgb8(pil: Image.Image, *, what: str) -> Image.Image:
    mode = pil.mode
    if mode == "RGB":
        return pil
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return pil.convert("RGB")
    except (ValueError, OSError) as err:
        raise InvalidInputError(f"{what}: cannot convert image mode {mode!r} to RGB") from err
