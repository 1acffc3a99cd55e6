"""Image pyramids: which sizes the scene is resized to, and the resized images.

Three ways to choose the levels (:func:`level_sizes`):

* explicit ``scales`` -- the scene's longer side (or ``sqrt(h*w)`` with ``resize_rule="area"``)
  in pixels, one per level;
* ``pyramid_rule="paper"`` -- the paper's factors (0.5 .. 1.6) times ``base_size``;
* ``pyramid_rule="auto"`` -- from the scene's own size (:func:`auto_scales`): levels from the one
  where an object of ``auto_max_object`` (1.0) times the scene's shorter side becomes anchor-sized
  (240 px) up to the one where an object of ``auto_min_object`` (0.1) times the shorter side does,
  in steps of ``auto_step`` counted down from the largest level, never upscaling by more than
  ``auto_max_upscale`` (2) nor past ``auto_max_side`` (2048) pixels; a crop too small for two levels
  gets one, where the whole crop becomes anchor-sized. Measured on a FlickrLogos val-new-cl subset,
  dropping the levels for objects larger than 0.75 of the shorter side cost 3.7 mAP points: keep them.

``pyramid_from="original"`` resizes every level from the original image (the default);
``"base"`` first resizes it to ``base_size`` and builds every level from that image with the
reference's truncating size rule, as the reference evaluation pipeline does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Tuple

from PIL import Image

from os2d.data.preprocess import resize, size_by_area, size_by_longer_side
from os2d.errors import InputTooLargeError, InvalidInputError
from os2d.inference.settings import MAX_LEVEL_PIXELS, MAX_LEVEL_SIDE, DetectSettings

#: Levels with a side below this are skipped (the backbone needs a few cells).
MIN_LEVEL_SIDE = 32

Size = Tuple[int, int]


@dataclass(frozen=True)
class Level:
    """One pyramid level: the network input size (w, h) and the factors mapping it to the original."""

    size: Size
    scale: Tuple[float, float]  # (original w / level w, original h / level h)


def auto_scales(width: int, height: int, *, anchor: float, settings: DetectSettings) -> List[float]:
    """Longer side (px) of each level chosen from the scene's size (see the module docstring)."""
    short, long = min(width, height), max(width, height)
    low = anchor / (settings.auto_max_object * short)  # the largest object considered becomes anchor-sized
    high = anchor / (min(settings.auto_min_object, settings.auto_max_object) * short)
    high = min(high, settings.auto_max_upscale, settings.auto_max_side / long)
    if high <= low:  # a small crop: one level where the whole crop becomes anchor-sized
        return [round(min(anchor / short * long, MAX_LEVEL_SIDE), 3)]
    count = int(math.floor(math.log(high / low) / math.log(settings.auto_step) + 1e-9)) + 1
    factors = [high / settings.auto_step ** i for i in range(count)][::-1]
    return [round(f * long, 3) for f in factors]


def level_sizes(width: int, height: int, settings: DetectSettings, *, anchor: float = 240.0) -> List[Size]:
    """(w, h) of the network input at each level for a ``width x height`` scene (small ones dropped).

    Raises:
        InputTooLargeError: a level beyond ``MAX_LEVEL_SIDE`` px or ``MAX_LEVEL_PIXELS`` pixels.
        InvalidInputError: no level of at least ``MIN_LEVEL_SIDE`` px.
    """
    if settings.pyramid_from == "base":
        base = _base_size(width, height, settings)
        sizes = [(int(base[0] * f), int(base[1] * f)) for f in _base_factors(settings)]
    else:
        rule = size_by_longer_side if settings.resize_rule == "longer-side" else size_by_area
        sizes = [rule(width, height, s) for s in target_scales(width, height, settings, anchor=anchor)]
    for w, h in sizes:
        if max(w, h) > MAX_LEVEL_SIDE or w * h > MAX_LEVEL_PIXELS:
            raise InputTooLargeError(
                f"pyramid level {w}x{h} for a {width}x{height} scene is too large (limits: {MAX_LEVEL_SIDE} px "
                f"per side, {MAX_LEVEL_PIXELS} pixels); use smaller --scales / --base-size")
    kept = [s for s in sizes if min(s) >= MIN_LEVEL_SIDE]
    if not kept:
        raise InvalidInputError(f"scene image {width}x{height} is too small for the pyramid levels {sizes}: "
                                f"every level needs sides of at least {MIN_LEVEL_SIDE} px")
    return kept


def target_scales(width: int, height: int, settings: DetectSettings, *, anchor: float = 240.0) -> List[float]:
    """The scale of each level (longer side or sqrt-area, px) before the size rounding."""
    if settings.scales is not None:
        return list(settings.scales)
    if settings.pyramid_rule == "auto":
        return auto_scales(width, height, anchor=anchor, settings=settings)
    return [f * settings.base_size for f in settings.pyramid]


def pyramid_levels(width: int, height: int, settings: DetectSettings, *, anchor: float = 240.0) -> List[Level]:
    """:func:`level_sizes` with the factors mapping each level back to the original pixels."""
    return [Level(size=s, scale=(width / s[0], height / s[1]))
            for s in level_sizes(width, height, settings, anchor=anchor)]


def level_images(image: Image.Image, levels: List[Level], settings: DetectSettings) -> Iterator[Image.Image]:
    """The scene resized to each level (from the original, or from the base image)."""
    source = image
    if settings.pyramid_from == "base":
        source = resize(image, _base_size(image.width, image.height, settings), interpolation=settings.interpolation)
    for level in levels:
        yield resize(source, level.size, interpolation=settings.interpolation)


def _base_size(width: int, height: int, settings: DetectSettings) -> Size:
    rule = size_by_longer_side if settings.resize_rule == "longer-side" else size_by_area
    return rule(width, height, settings.base_size)


def _base_factors(settings: DetectSettings) -> List[float]:
    if settings.scales is not None:
        return [s / settings.base_size for s in settings.scales]
    return list(settings.pyramid)
