"""Class colours for drawings: distinct, bright on photos, with a readable text colour."""
from __future__ import annotations

import colorsys
from typing import Tuple

from os2d.errors import InvalidInputError

RGB = Tuple[int, int, int]

#: Well-separated bright colours (after Sasha Trubetskoy's "20 simple distinct colours", without
#: white, black, grey and the pale tones that vanish on photos); used first, in this order.
PALETTE: Tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (0, 0, 128), (250, 190, 212),
)


def class_color(index: int) -> RGB:
    """A distinct colour per class index: the palette first, then golden-ratio hues."""
    if index < 0:
        raise InvalidInputError(f"class index must be >= 0, got {index}")
    if index < len(PALETTE):
        return PALETTE[index]
    k = index - len(PALETTE)
    value = (1.0, 0.75)[k % 2]
    r, g, b = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def luminance(color: RGB) -> float:
    """Relative luminance in [0, 1] of an sRGB colour (WCAG definition)."""

    def linear(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_color(background: RGB) -> RGB:
    """Black or white, whichever contrasts more with ``background``."""
    lum = luminance(background)
    # contrast with black (lum + 0.05) / 0.05 vs with white 1.05 / (lum + 0.05)
    return (0, 0, 0) if (lum + 0.05) ** 2 > 0.05 * 1.05 else (255, 255, 255)
