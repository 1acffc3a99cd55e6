"""Telling flavours apart: a colour check of boxes that several similar classes claim.

Variants of one brand (two yoghurt flavours, promo and regular packs) share their layout, so their
OS2D scores on a facing are close; what differs is mostly colour. Each class entry gets a colour
signature when its features are prepared (:func:`color_signature`: a hue histogram weighted by the
square of chroma = saturation x value, so that white, grey and black pixels count for nothing, plus
the image's mean squared chroma; the bank's ``colors`` extra). Where one-label suppression must
choose between classes on the same object, it ranks them by ``score + weight * similarity``, the
similarity being the intersection of the box's hue histogram with each class's
(:func:`color_similarity`; 0.5 -- no information -- when either is nearly colourless). The reported
score stays the class's own.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

HUE_BINS = 18
#: Mean squared chroma below which an image counts as colourless (its hues are noise).
COLORLESS = 0.004


def color_signature(image: Image.Image) -> torch.Tensor:
    """``Tensor[HUE_BINS + 1]``: the chroma²-weighted hue histogram (sum 1) and the mean squared chroma."""
    hsv = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR).convert("HSV"), dtype=np.float32) / 255.0
    chroma2 = (hsv[..., 1] * hsv[..., 2]) ** 2
    bins = np.minimum((hsv[..., 0] * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    hist = np.bincount(bins.ravel(), weights=chroma2.ravel(), minlength=HUE_BINS)
    return torch.from_numpy(np.append(hist / max(hist.sum(), 1e-12), chroma2.mean())).float()


def color_similarity(signatures: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Hue-histogram intersection of ``Tensor[N, D]`` with ``Tensor[N, D]`` row by row: ``Tensor[N]`` in
    [0, 1]; 0.5 where either image is colourless."""
    inter = torch.minimum(signatures[:, :HUE_BINS], references[:, :HUE_BINS]).sum(-1)
    colorful = (signatures[:, HUE_BINS] >= COLORLESS) & (references[:, HUE_BINS] >= COLORLESS)
    return torch.where(colorful, inter, torch.full_like(inter, 0.5))


def box_signatures(image: Image.Image, boxes: torch.Tensor) -> torch.Tensor:
    """:func:`color_signature` of each box ``Tensor[N, 4]`` (xyxy, image pixels): ``Tensor[N, D]``."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        left, top = max(0, int(x1)), max(0, int(y1))
        right = min(image.width, max(left + 1, int(round(x2))))
        bottom = min(image.height, max(top + 1, int(round(y2))))
        out.append(color_signature(image.crop((left, top, right, bottom))))
    return torch.stack(out) if out else torch.zeros(0, HUE_BINS + 1)


def entry_signatures(images: Sequence[Image.Image]) -> torch.Tensor:
    """Colour signatures of class-entry images: ``Tensor[K, D]``."""
    return torch.stack([color_signature(im) for im in images])
