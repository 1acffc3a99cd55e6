"""Resize rules and pixel normalisation, exactly as the reference implementation does them."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from os2d.errors import InvalidInputError

#: Smallest side (pixels) accepted for a class image.
MIN_CLASS_IMAGE_SIDE = 16

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def size_by_area(width: int, height: int, target: float) -> Tuple[int, int]:
    """Aspect-preserving size with ``h * w ~= target**2`` (reference rule, truncating).

    ``r = h/w; h' = int(target * sqrt(r)); w' = int(target / sqrt(r))``. Returns ``(w', h')``.
    """
    ratio = height / width
    return max(int(target / math.sqrt(ratio)), 1), max(int(target * math.sqrt(ratio)), 1)


def size_by_longer_side(width: int, height: int, longer: float) -> Tuple[int, int]:
    """Aspect-preserving size whose longer side is ``longer``: ``int(w * s + 0.5)``. Returns ``(w', h')``."""
    scale = longer / max(width, height)
    return max(int(width * scale + 0.5), 1), max(int(height * scale + 0.5), 1)


def resize(image: Image.Image, size: Tuple[int, int], *, interpolation: str = "bilinear") -> Image.Image:
    """PIL resize to ``size = (w, h)`` with ``"bilinear"`` (evaluation pipeline) or ``"bicubic"`` (demo)."""
    if interpolation not in _FILTERS:
        raise InvalidInputError(f"unknown interpolation {interpolation!r}; expected one of {sorted(_FILTERS)}")
    if image.size == tuple(size):
        return image
    return image.resize(tuple(size), resample=_FILTERS[interpolation])


def to_tensor(image: Image.Image, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """8-bit RGB PIL image -> normalised ``Tensor[3, h, w]`` float32 (ToTensor + Normalize)."""
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean_t) / std_t


def check_class_image_size(image: Image.Image, *, name: str) -> None:
    """Refuse class images too small to give a feature map (< 16 px on a side)."""
    if min(image.size) < MIN_CLASS_IMAGE_SIDE:
        raise InvalidInputError(
            f"class image for {name!r} is too small ({image.width}x{image.height} px); "
            f"each side must be at least {MIN_CLASS_IMAGE_SIDE} px"
        )
