"""Trimming a class image's uniform margin (a packshot's white studio background).

Retail packshots are often square pictures with the product in the middle: a milk carton of the
grocery-store dataset fills 37 % of its 198 x 198 picture's width. Matched as it is, the class
feature map is mostly white margin, which a real photo (a product held in hand, on a shelf) does not
have around the object, and the box drawn is the margin's. :func:`trim_uniform_border` cuts such a
margin away before the class features are computed (``DetectSettings.trim_class_images``, on by
default for os2d models): on the 424 grocery-store test photos it moved the default model's top-1
from 58.5 % to 73.1 % (exact mode, docs/scores.md). Class images without a uniform border (logo crops, in-store crops) are
left as they are.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from PIL import Image

from os2d.data.preprocess import MIN_CLASS_IMAGE_SIDE

#: A border pixel within this many levels (0-255, every channel) of the border's median colour is "uniform".
TRIM_TOLERANCE = 30
#: The border counts as a margin when at least this fraction of its pixels is uniform.
TRIM_UNIFORM = 0.9
#: A row or column belongs to the content when at least this fraction of its pixels differs from the margin.
TRIM_LINE = 0.005
#: No trimming when the content covers less than this fraction of the image (a blank picture, noise).
TRIM_MIN_CONTENT = 0.02
#: The margin kept around the content on each side, as a fraction of the content's width (left, right) or
#: height (top, bottom): context for the backbone, and a logo's clear space is left alone.
TRIM_KEEP = 0.1

Box = Tuple[int, int, int, int]


def content_box(image: Image.Image, *, tolerance: int = TRIM_TOLERANCE) -> Optional[Box]:
    """``(x0, y0, x1, y1)`` (exclusive ends) of what lies inside a uniform margin, with ``TRIM_KEEP`` of the
    content's size kept as margin on each side, or None.

    None when the border is not uniform (fewer than ``TRIM_UNIFORM`` of its pixels within ``tolerance``
    of their median colour), when the content is tiny (< ``TRIM_MIN_CONTENT`` of the image), or when
    there is no margin to cut.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    # [h, w, 3]
    height, width = pixels.shape[:2]
    if height < 3 or width < 3:
        return None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]], axis=0)
    # [2w + 2h, 3]
    colour = np.median(border, axis=0)
    if (np.abs(border - colour).max(axis=1) <= tolerance).mean() < TRIM_UNIFORM:
        return None
    content = np.abs(pixels - colour).max(axis=2) > tolerance
    # [h, w]
    if content.mean() < TRIM_MIN_CONTENT:
        return None
    rows = np.flatnonzero(content.sum(axis=1) >= max(1.0, TRIM_LINE * width))
    cols = np.flatnonzero(content.sum(axis=0) >= max(1.0, TRIM_LINE * height))
    if rows.size == 0 or cols.size == 0:
        return None
    box = _keep_margin((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1), width=width, height=height)
    return None if box == (0, 0, width, height) else box


def _keep_margin(box: Box, *, width: int, height: int) -> Box:
    """``box`` grown by ``TRIM_KEEP`` of its width / height on each side, within the image."""
    x0, y0, x1, y1 = box
    dx, dy = int(TRIM_KEEP * (x1 - x0) + 0.5), int(TRIM_KEEP * (y1 - y0) + 0.5)
    return max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)


def trim_uniform_border(image: Image.Image, *, min_side: int = MIN_CLASS_IMAGE_SIDE) -> Image.Image:
    """``image`` cropped to its :func:`content_box`; unchanged when there is none or when the crop
    would have a side below ``min_side`` pixels."""
    box = content_box(image)
    if box is None or min(box[2] - box[0], box[3] - box[1]) < min_side:
        return image
    return image.crop(box)
