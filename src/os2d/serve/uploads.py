"""Checking what clients send: class names, image uploads (size, type, pixels before decoding).

Class names are only ever stored in SQLite and JSON, never used as file names (files get random
ids), but they are still restricted to text that is safe to show, log and put in a URL path.
"""
from __future__ import annotations

import contextlib
import io
import unicodedata
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from PIL import Image, ImageOps, UnidentifiedImageError

from os2d.errors import InputTooLargeError, InvalidInputError, UserError
from os2d.serve.errors import UnsupportedMediaError

MAX_NAME_LENGTH = 100
#: Image formats the service decodes (Pillow format names).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")
#: Declared content types accepted for an image part (the bytes are then sniffed).
GENERIC_TYPES = ("application/octet-stream", "")
_FORBIDDEN_CHARS = "/\\,"


def check_class_name(name: str) -> str:
    """``name`` if it is a valid class name, else :class:`InvalidInputError` saying why.

    Valid: 1..100 characters, no leading/trailing spaces, no ``/``, ``\\``, ``,`` (the ``classes``
    field of ``/detect`` is comma-separated), no ``..``, no control or format characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError("class name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"class name is too long ({len(name)} characters, limit {MAX_NAME_LENGTH}): "
                                f"{name[:40]!r}...")
    if name != name.strip():
        raise InvalidInputError(f"class name must not start or end with spaces: {name!r}")
    bad = [c for c in name if c in _FORBIDDEN_CHARS or unicodedata.category(c).startswith("C")]
    if bad:
        raise InvalidInputError(f"class name {name!r} contains forbidden characters {sorted(set(bad))!r} "
                                f"(no '/', '\\', ',' or control characters)")
    if ".." in name:
        raise InvalidInputError(f"class name must not contain '..': {name!r}")
    return name


def parse_class_list(text: Optional[str]) -> Optional[list]:
    """``"a, b"`` -> ``["a", "b"]`` (None or blank: all classes); duplicates are an error."""
    if text is None or not text.strip():
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"classes are named twice in 'classes': {duplicates}")
    return names


@dataclass(frozen=True)
class DecodedImage:
    """An uploaded image: RGB pixels (EXIF orientation applied), its format and encoded bytes."""

    image: Image.Image
    format: str
    data: bytes

    @property
    def size(self) -> tuple:
        return self.image.size


def check_content_type(content_type: Optional[str], *, what: str) -> None:
    """Refuse a part whose declared type is neither an image type nor generic binary (415)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith("image/") or kind in GENERIC_TYPES:
        return
    raise UnsupportedMediaError(f"{what} must be an image (image/jpeg, image/png, ...), got content type {kind!r}")


def probe_image(data: bytes, *, what: str, max_pixels: int) -> Tuple[str, int, int]:
    """(format, width, height) from the header only; the checks of :func:`decode_image` but no pixels decoded."""
    if not data:
        raise InvalidInputError(f"{what} is empty (0 bytes)")
    with _reading(what):
        with Image.open(io.BytesIO(data)) as probe:  # lazy: reads the header only
            _check_header(probe.format or "", *probe.size, what=what, max_pixels=max_pixels)
            return probe.format, probe.size[0], probe.size[1]


def decode_image(data: bytes, *, what: str, max_pixels: int) -> DecodedImage:
    """Decode uploaded bytes after checking format and pixel count from the header.

    Raises:
        UnsupportedMediaError: not an image Pillow knows, or a format the service does not accept (415).
        InputTooLargeError: more than ``max_pixels`` pixels (before any pixel is decoded) (413).
        InvalidInputError: empty, corrupt or truncated data (422).
    """
    if not data:
        raise InvalidInputError(f"{what} is empty (0 bytes)")
    with _reading(what):
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            _check_header(fmt, *probe.size, what=what, max_pixels=max_pixels)
            probe.load()
            rgb = ImageOps.exif_transpose(probe).convert("RGB")
    return DecodedImage(image=rgb, format=fmt, data=data)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Pillow's errors while reading an upload as user errors (bombs: 413, unknown format: 415, else 422)."""
    try:
        yield
    except UserError:
        raise
    except Image.DecompressionBombError as err:
        raise InputTooLargeError(f"{what} is too large ({err})") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaError(f"{what} is not an image in a known format "
                                    f"({', '.join(IMAGE_FORMATS[:6])})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidInputError(f"{what} is corrupt or truncated ({err})") from None


def _check_header(fmt: str, width: int, height: int, *, what: str, max_pixels: int) -> None:
    if fmt not in IMAGE_FORMATS:
        raise UnsupportedMediaError(f"{what}: image format {fmt or 'unknown'!r} is not accepted; "
                                    f"use one of {list(IMAGE_FORMATS[:6])}")
    if width < 1 or height < 1:
        raise InvalidInputError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise InputTooLargeError(f"{what} is too large ({width}x{height} = {width * height} pixels, "
                                 f"limit {max_pixels})")
