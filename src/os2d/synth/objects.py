"""Class images and object appearance: loading, foreground masks and random per-object transforms.

Holds :class:`ClassImage` / :class:`ClassSource` (what gets pasted), :func:`load_class_image` and
:func:`foreground_mask` (cutting a class image out of its background), and :func:`transform_object`
with its helpers :func:`random_homography` and :func:`jitter_colours` (one object's random pose,
lighting and noise, as an :class:`ObjectPatch`). Scenes are put together in
:mod:`os2d.synth.compose`.

Everything random is drawn from a ``numpy.random.Generator`` passed in. Images are ``uint8``
HxWx3 RGB arrays.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from os2d.data.images import ImageLike, load_image
from os2d.errors import InvalidInputError
from os2d.synth.config import MASK_MODES, SynthConfig

logger = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Alpha at or above this counts as "object" for boxes and occlusion bookkeeping.
_ALPHA_ON = 0.5


# --------------------------------------------------------------------------------------------
# Class images
# --------------------------------------------------------------------------------------------


@dataclass
class ClassImage:
    """A class image ready for pasting.

    Attributes:
        name: class name (file stem).
        image: ``uint8[h, w, 3]`` RGB, cropped to the foreground mask's box.
        mask: ``bool[h, w]`` foreground (all True when the whole rectangle is pasted).
        path: source file, or None for an in-memory image.
        data: the source file's bytes (so it can be copied into the dataset later).
        masked: whether a background was cut away.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    path: Optional[Path] = None
    data: Optional[bytes] = field(default=None, repr=False)
    masked: bool = False


@dataclass
class ClassSource:
    """One class: ``class_file`` is copied into the dataset as its class image; one of
    ``appearances`` (at least one) is pasted for each instance; ``group`` e.g. a brand."""

    name: str
    class_file: Path
    appearances: List[ClassImage] = field(default_factory=list)
    group: Optional[str] = None

    @property
    def output_name(self) -> str:
        """File name of the class image in ``classes/images/``: ``<name><suffix>``."""
        return f"{self.name}{self.class_file.suffix}"


def pick_appearance(source: ClassSource, rng: np.random.Generator) -> ClassImage:
    """A random appearance (no random number is drawn when there is only one)."""
    if len(source.appearances) == 1:
        return source.appearances[0]
    return source.appearances[int(rng.integers(len(source.appearances)))]


def foreground_mask(image: np.ndarray, mode: str = "auto", tolerance: int = 30) -> np.ndarray:
    """Foreground of a class image: ``bool[h, w]``.

    ``none``: everything. ``white``: pixels not within ``tolerance`` of white that are connected
    to the image border are background. ``auto``: like ``white`` but with the border's median
    colour, used only when the border is uniform (>= 90 % of border pixels within tolerance);
    otherwise everything is foreground (e.g. logo crops). The mask is cleaned with a morphological
    opening/closing, eroded by one pixel to drop the light halo of anti-aliased edges, and
    falls back to everything if it keeps less than 2 % of the image.
    """
    if mode not in MASK_MODES:
        raise InvalidInputError(f"mask mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")
    h, w = image.shape[:2]
    full = np.ones((h, w), dtype=bool)
    if mode == "none" or h < 8 or w < 8:
        return full
    img = image.astype(np.int16)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    if mode == "white":
        bg_colour = np.array([255, 255, 255], dtype=np.int16)
    else:
        bg_colour = np.median(border, axis=0).astype(np.int16)
        uniform = (np.abs(border - bg_colour).max(axis=1) <= tolerance).mean()
        if uniform < 0.9:
            return full
    near = (np.abs(img - bg_colour).max(axis=2) <= tolerance).astype(np.uint8)
    # background = near-background pixels connected to the border (keeps white labels inside)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    edge_near = np.concatenate([near[0], near[-1], near[:, 0], near[:, -1]]).astype(bool)
    bg_labels = np.unique(edge[edge_near])
    if bg_labels.size == 0:
        return full
    fg = (~np.isin(labels, bg_labels)).astype(np.uint8)
    k = max(3, (min(h, w) // 100) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel)
    if min(h, w) >= 32:
        fg = cv2.erode(fg, np.ones((3, 3), np.uint8))
    # drop specks: keep components with at least 2 % of the largest one's area
    n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n > 2:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(areas >= 0.02 * areas.max()) + 1
        fg = np.isin(comp, keep).astype(np.uint8)
    mask = fg.astype(bool)
    if mask.sum() < 0.02 * h * w:
        logger.warning("foreground mask keeps only %.1f%% of the image; pasting the whole rectangle",
                       100.0 * mask.mean())
        return full
    return mask


def load_class_image(image: ImageLike, *, name: Optional[str] = None, mask: str = "auto",
                     tolerance: int = 30) -> ClassImage:
    """Load a class image (path, PIL image or array) and compute its foreground mask.

    The name defaults to the file stem. Raises ``FileNotFoundError`` / ``ValueError`` for a
    missing or unreadable image.
    """
    path: Optional[Path] = None
    data: Optional[bytes] = None
    if isinstance(image, (str, Path)):
        path = Path(image)
        rgb = np.asarray(load_image(path, what="class image"))
        data = path.read_bytes()
    else:
        rgb = np.asarray(load_image(image, what="class image"))
    if name is None:
        if path is None:
            raise InvalidInputError("load_class_image: a name is required for an in-memory class image")
        name = path.stem
    fg = foreground_mask(rgb, mask, tolerance)
    masked = not bool(fg.all())
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return ClassImage(
        name=name,
        image=np.ascontiguousarray(rgb[y0:y1, x0:x1]),
        mask=np.ascontiguousarray(fg[y0:y1, x0:x1]),
        path=path,
        data=data,
        masked=masked,
    )


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the longer side is ``size`` pixels (area filter when shrinking)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if scale == 1.0:
        return image
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


# --------------------------------------------------------------------------------------------
# One object: geometric + photometric transform
# --------------------------------------------------------------------------------------------


@dataclass
class ObjectPatch:
    """A transformed object: ``rgb`` float32[h, w, 3] (0-255), ``alpha`` float32[h, w] (0-1)."""

    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def solid(self) -> np.ndarray:
        """``bool[h, w]``: pixels that belong to the object (alpha >= 0.5)."""
        return self.alpha >= _ALPHA_ON


def random_homography(width: int, height: int, target_long: float, rng: np.random.Generator,
                      config: SynthConfig, pad: int = 2) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Random aspect jitter + rotation + perspective for a ``width x height`` image.

    Returns ``(H, (out_w, out_h))``: a 3x3 float64 homography mapping source pixel coordinates to
    an output canvas, sized so the warped rectangle's box has longer side ``target_long``.
    """
    src = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    corners = src - np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    jitter = math.log1p(config.aspect_jitter)
    aspect = math.exp(rng.uniform(-jitter, jitter)) if jitter > 0 else 1.0
    corners = corners * np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    theta = math.radians(rng.uniform(-config.rotation_max_deg, config.rotation_max_deg))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    corners = corners @ rot.T
    size = float(np.ptp(corners, axis=0).max())
    corners = corners + rng.uniform(-config.perspective, config.perspective, size=(4, 2)) * size
    corners *= target_long / float(np.ptp(corners, axis=0).max())
    corners -= corners.min(axis=0) - pad
    out_w = int(math.ceil(corners[:, 0].max())) + pad
    out_h = int(math.ceil(corners[:, 1].max())) + pad
    hom = cv2.getPerspectiveTransform(src.astype(np.float32), corners.astype(np.float32))
    return hom, (out_w, out_h)


def jitter_colours(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator,
                   config: SynthConfig) -> np.ndarray:
    """Saturation, contrast, brightness, colour cast and a shading gradient; float32 in/out."""
    x = rgb.astype(np.float32, copy=True)
    sat = rng.uniform(1 - config.saturation, 1 + config.saturation)
    con = rng.uniform(1 - config.contrast, 1 + config.contrast)
    bri = rng.uniform(1 - config.brightness, 1 + config.brightness)
    gains = rng.uniform(1 - config.color_gain, 1 + config.color_gain, size=3).astype(np.float32)
    shade = rng.uniform(0, config.shading)
    phi = rng.uniform(0, 2 * math.pi)
    gray = (x @ _LUMA)[..., None]  # [h, w, 1]
    x = gray + (x - gray) * np.float32(sat)
    weight = float(alpha.sum())
    mean = float((gray[..., 0] * alpha).sum() / weight) if weight > 0 else float(gray.mean())
    x = (x - mean) * np.float32(con) + mean
    x *= np.float32(bri) * gains
    if shade > 0:
        h, w = alpha.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xs - w / 2) * math.cos(phi) + (ys - h / 2) * math.sin(phi)) / max(h, w)
        x *= (1 + np.float32(shade) * ramp)[..., None]
    return np.clip(x, 0, 255, out=x)


def transform_object(cls: ClassImage, target_long: float, rng: np.random.Generator,
                     config: SynthConfig) -> ObjectPatch:
    """Warp a class image to a random pose (box longer side ~ ``target_long`` px) and apply
    lighting/colour jitter, blur and noise. The patch is cropped to its non-zero alpha."""
    rgb, alpha = cls.image, cls.mask.astype(np.float32)
    h, w = alpha.shape
    pre = min(1.0, 2.0 * target_long / max(h, w))
    if pre < 1.0:  # shrink with an area filter first to avoid aliasing in the warp
        size = (max(1, round(w * pre)), max(1, round(h * pre)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        h, w = alpha.shape
    hom, out_size = random_homography(w, h, target_long, rng, config)
    rgb_w = cv2.warpPerspective(rgb, hom, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha_w = cv2.warpPerspective(alpha, hom, out_size, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha_w[alpha_w < 1e-3] = 0
    rows, cols = np.flatnonzero(alpha_w.any(axis=1)), np.flatnonzero(alpha_w.any(axis=0))
    if rows.size == 0:
        return ObjectPatch(np.zeros((1, 1, 3), np.float32), np.zeros((1, 1), np.float32))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    rgb_w, alpha_w = rgb_w[crop], np.ascontiguousarray(alpha_w[crop])

    x = jitter_colours(rgb_w, alpha_w, rng, config)
    if rng.random() < config.blur_prob and config.blur_max_sigma > 0:
        sigma = rng.uniform(0.3, max(0.3, config.blur_max_sigma))
        # premultiplied blur: background colour around a cut-out object does not bleed in
        num = cv2.GaussianBlur(x * alpha_w[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(alpha_w, (0, 0), sigma)[..., None]
        x = np.where(den > 1e-4, num / np.maximum(den, 1e-4), x).astype(np.float32)
    if rng.random() < config.noise_prob and config.noise_max_std > 0:
        std = rng.uniform(0, config.noise_max_std)
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(std)
    np.clip(x, 0, 255, out=x)
    return ObjectPatch(rgb=x, alpha=alpha_w)
