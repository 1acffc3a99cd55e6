"""Reading user images robustly: EXIF rotation, grayscale/RGBA/16-bit/float, clear errors."""
from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from os2d.errors import InputNotFoundError, InputTooLargeError, InvalidInputError, InvalidTypeError

logger = logging.getLogger(__name__)

ImageLike = Union[str, Path, Image.Image, np.ndarray]

#: Refuse images with more pixels than this (decompression-bomb guard), ~ 24k x 24k.
MAX_PIXELS = 600_000_000
_EXIF_ORIENTATION = 0x0112


def load_image(image: ImageLike, *, what: str = "image") -> Image.Image:
    """Return an 8-bit RGB PIL image from a path, a PIL image or an array.

    Paths and PIL images: the EXIF orientation is applied (the image comes upright, as viewers
    show it). Grayscale and palette images become RGB; transparency is composited on white.

    Pixel values (files, PIL modes and numpy arrays alike):

    * ``uint8`` / 8-bit modes: taken as they are (0..255).
    * floats (``float32``/``float64`` arrays, float TIFFs, PIL mode ``F``): values in [0, 1]
      (the maximum is at most 1) are scaled to 0..255; otherwise they are taken as 0..255.
      Negative values are clipped to 0, values above 255 to 255; NaN/inf are an error.
    * other integers (``uint16``/``int32``/... arrays, 16- and 32-bit PIL modes): taken as 0..255
      when the maximum is at most 255, else as 16-bit (0..65535, scaled by 255/65535); negative
      values are clipped to 0; values above 65535 are an error.
    * ``bool`` arrays are refused (use ``arr.astype(np.uint8) * 255``).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a corrupt, empty or
    unusual image and :class:`~os2d.errors.InputTooLargeError` for more than ``MAX_PIXELS``
    pixels; the message names ``what`` and the offending value.
    """
    if isinstance(image, (str, Path)):
        pil = _open_path(Path(image), what=what)
    elif isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, what=what, path=None)
        pil = _upright(image, what=what)
    elif isinstance(image, np.ndarray):
        pil = _from_array(image, what=what)
    else:
        raise InvalidTypeError(f"{what}: expected a path, PIL image or numpy array, got {type(image).__name__}")
    pil = _to_rgb8(pil, what=what)
    if pil.width < 1 or pil.height < 1:
        raise InvalidInputError(f"{what} is empty (size {pil.width}x{pil.height})")
    return pil


def _upright(pil: Image.Image, *, what: str) -> Image.Image:
    """``pil`` with its EXIF orientation applied (the same object when there is none)."""
    try:
        orientation = pil.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation in (1, None):
            return pil
        return ImageOps.exif_transpose(pil)
    except (OSError, ValueError, SyntaxError, TypeError, struct.error) as err:
        logger.warning("%s: unreadable EXIF orientation ignored (%s)", what, err)
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


def _check_pixels(width: int, height: int, *, what: str, path: Optional[Path]) -> None:
    if width * height > MAX_PIXELS:
        where = f": {path}" if path is not None else ""
        raise InputTooLargeError(f"{what} is too large ({width}x{height} pixels, limit {MAX_PIXELS}){where}")


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
            upright = _upright(img, what=what)
            return upright.copy() if upright is img else upright
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
    _check_pixels(array.shape[1], array.shape[0], what=what, path=None)
    if array.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(array))
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating)
                                       or np.issubdtype(array.dtype, np.integer)):
        raise InvalidTypeError(f"{what}: unsupported array dtype {array.dtype}")
    return Image.fromarray(to_uint8(array, what=what))


def to_uint8(values: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Float or integer pixel values -> ``uint8`` by the conventions of :func:`load_image`."""
    if np.issubdtype(values.dtype, np.floating):
        data = values.astype(np.float64)
        if not np.isfinite(data).all():
            raise InvalidInputError(f"{what}: array contains NaN or infinite values")
        scale = 255.0 if data.max() <= 1.0 else 1.0
        return np.clip(data * scale, 0, 255).round().astype(np.uint8)
    top = int(values.max())
    if top > 65535:
        raise InvalidInputError(f"{what}: integer pixel values up to {top}; expected 0..255 or 0..65535 (16 bits)")
    data = values.astype(np.float64)
    if top > 255:
        data = data * (255.0 / 65535.0)
    return np.clip(data, 0, 255).round().astype(np.uint8)


def _to_rgb8(pil: Image.Image, *, what: str) -> Image.Image:
    mode = pil.mode
    if mode == "RGB":
        return pil
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(to_uint8(np.asarray(pil), what=what)).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return pil.convert("RGB")
    except (ValueError, OSError) as err:
        raise InvalidInputError(f"{what}: cannot convert image mode {mode!r} to RGB") from err
