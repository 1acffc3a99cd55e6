"""Composing synthetic scenes: class images pasted on backgrounds with exact boxes.

Everything random is drawn from a ``numpy.random.Generator`` passed in (scene ``i`` uses
:func:`scene_rng`), so a scene is a pure function of (seed, index, inputs, config).
Images are ``uint8`` HxWx3 RGB arrays; boxes are xyxy floats in scene pixels where a box
``(x1, y1, x2, y2)`` spans pixel columns ``x1 .. x2-1`` (pixel-edge convention).
"""
from __future__ import annotations

import io
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from os2d.data.images import ImageLike, load_image
from os2d.errors import InvalidInputError
from os2d.synth.config import MASK_MODES, SynthConfig

logger = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Alpha at or above this counts as "object" for boxes and occlusion bookkeeping.
_ALPHA_ON = 0.5
_PLACEMENT_ATTEMPTS = 30
_OCCLUDER_ATTEMPTS = 4


# --------------------------------------------------------------------------------------------
# Inputs: class images and backgrounds
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


class BackgroundPool:
    """Backgrounds (paths or arrays), loaded lazily, rescaled to ``scene_size``, LRU-cached."""

    def __init__(self, sources: Sequence[Union[str, Path, np.ndarray]], scene_size: int,
                 cache_size: int = 24) -> None:
        if len(sources) == 0:
            raise InvalidInputError("no background images given")
        self.sources = list(sources)
        self.scene_size = int(scene_size)
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()

    def __len__(self) -> int:
        return len(self.sources)

    def name(self, index: int) -> str:
        src = self.sources[index]
        return Path(src).name if isinstance(src, (str, Path)) else f"<array {index}>"

    def get(self, index: int) -> np.ndarray:
        """``uint8[H, W, 3]`` with ``max(H, W) == scene_size``; do not modify in place."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        src = self.sources[index]
        rgb = np.asarray(load_image(src, what="background image"))
        rgb = np.ascontiguousarray(resize_longer_side(rgb, self.scene_size))
        rgb.setflags(write=False)
        self._cache[index] = rgb
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return rgb


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


# --------------------------------------------------------------------------------------------
# A scene
# --------------------------------------------------------------------------------------------


@dataclass
class SceneObject:
    """One pasted object. ``box`` is xyxy in scene pixels (amodal: visible + occluded part,
    clipped to the scene); ``occlusion`` is the hidden fraction of its in-scene mask."""

    class_index: int
    class_name: str
    box: Tuple[float, float, float, float]
    difficult: bool = False
    occlusion: float = 0.0
    area: int = 0  # in-scene mask pixels
    visible: int = 0  # of those, not covered by later objects/occluders


@dataclass
class Scene:
    """A composed scene before encoding: ``image`` uint8[H, W, 3]."""

    index: int
    image: np.ndarray
    objects: List[SceneObject]
    background: str
    jpeg_quality: int

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]

    def encode_jpeg(self) -> bytes:
        """The scene as JPEG bytes at its ``jpeg_quality`` (deterministic)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="JPEG", quality=self.jpeg_quality)
        return buf.getvalue()


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index``: independent of how many scenes are made."""
    return np.random.default_rng([int(seed), int(index)])


def _overlap(a: Tuple[float, ...], b: Tuple[float, ...]) -> Tuple[float, float]:
    """(IoU, intersection / area of the smaller box) of two xyxy boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


def _too_close(box: Tuple[float, ...], others: Sequence[Tuple[float, ...]], config: SynthConfig) -> bool:
    for other in others:
        iou, contained = _overlap(box, other)
        if iou >= config.max_iou or contained > config.max_containment:
            return True
    return False


class _Canvas:
    """Scene under construction: float image, per-pixel owner (-1 = none), object bookkeeping."""

    def __init__(self, background: np.ndarray, config: SynthConfig) -> None:
        self.image = background.astype(np.float32)
        self.height, self.width = background.shape[:2]
        self.owner = np.full((self.height, self.width), -1, dtype=np.int16)
        self.objects: List[SceneObject] = []
        self.config = config

    def _hidden_ok(self, region: Tuple[slice, slice], cover: np.ndarray) -> Optional[List[int]]:
        """Pixels each object would lose if ``cover`` (bool, over ``region``) were painted on top;
        None if any object would end up hidden by more than ``max_occlusion``."""
        owners = self.owner[region][cover]
        owners = owners[owners >= 0]
        lost = np.bincount(owners, minlength=len(self.objects)) if owners.size else None
        if lost is None:
            return [0] * len(self.objects)
        for obj, n in zip(self.objects, lost):
            if n and (obj.visible - n) < (1 - self.config.max_occlusion) * obj.area:
                return None
        return [int(n) for n in lost]

    def _apply_loss(self, lost: List[int]) -> None:
        for obj, n in zip(self.objects, lost):
            obj.visible -= n

    def try_place(self, patch: ObjectPatch, x0: int, y0: int, class_index: int, class_name: str) -> bool:
        """Paste ``patch`` with its top-left at (x0, y0) if all constraints hold."""
        cfg = self.config
        solid = patch.solid
        ph, pw = solid.shape
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + pw, self.width), min(y0 + ph, self.height)
        if sx1 <= sx0 or sy1 <= sy0:
            return False
        local = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        inside = solid[local]
        area, total = int(inside.sum()), int(solid.sum())
        if total == 0 or area < (1 - cfg.max_truncation) * total:
            return False
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        box = (float(sx0 + cols[0]), float(sy0 + rows[0]),
               float(sx0 + cols[-1] + 1), float(sy0 + rows[-1] + 1))
        if min(box[2] - box[0], box[3] - box[1]) < cfg.min_box_size:
            return False
        if _too_close(box, [o.box for o in self.objects], cfg):
            return False
        region = (slice(sy0, sy1), slice(sx0, sx1))
        lost = self._hidden_ok(region, inside)
        if lost is None:
            return False
        self._apply_loss(lost)
        a = patch.alpha[local][..., None]
        dst = self.image[region]
        dst += a * (patch.rgb[local] - dst)
        self.owner[region][inside] = len(self.objects)
        self.objects.append(SceneObject(class_index, class_name, box, area=area, visible=area))
        return True

    def try_occlude(self, region: Tuple[slice, slice], shape: np.ndarray, fill: np.ndarray) -> bool:
        """Paint ``fill`` (float32[h, w, 3]) where ``shape`` (bool[h, w]) inside ``region`` of the
        scene if no object gets hidden by more than ``max_occlusion``."""
        lost = self._hidden_ok(region, shape)
        if lost is None:
            return False
        self._apply_loss(lost)
        self.image[region][shape] = fill[shape]
        self.owner[region][shape] = -1
        return True


def _occluder_shape(box: Tuple[float, ...], fraction: float, width: int, height: int,
                    rng: np.random.Generator) -> Optional[Tuple[Tuple[slice, slice], np.ndarray]]:
    """A random rotated rectangle or ellipse straddling one side of ``box``, covering about
    ``fraction`` of it: ``(region, bool mask over region)``, or None if it misses the scene."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    area = fraction * bw * bh * rng.uniform(1.0, 1.8)
    ratio = math.exp(rng.uniform(-1.0, 1.0))
    sw, sh = math.sqrt(area * ratio), math.sqrt(area / ratio)
    side = rng.integers(4)
    t = rng.uniform(0.0, 1.0)
    depth = rng.uniform(0.0, 0.35)
    if side == 0:
        cx, cy = x1 + t * bw, y1 + depth * bh
    elif side == 1:
        cx, cy = x1 + t * bw, y2 - depth * bh
    elif side == 2:
        cx, cy = x1 + depth * bw, y1 + t * bh
    else:
        cx, cy = x2 - depth * bw, y1 + t * bh
    angle = rng.uniform(0, 180)
    ellipse = rng.random() < 0.5
    reach = 0.5 * math.hypot(sw, sh) + 2
    rx0, ry0 = max(0, int(cx - reach)), max(0, int(cy - reach))
    rx1, ry1 = min(width, int(math.ceil(cx + reach)) + 1), min(height, int(math.ceil(cy + reach)) + 1)
    if rx1 <= rx0 or ry1 <= ry0:
        return None
    canvas = np.zeros((ry1 - ry0, rx1 - rx0), dtype=np.uint8)
    lcx, lcy = cx - rx0, cy - ry0
    if ellipse:
        axes = (max(1, int(round(sw / 2))), max(1, int(round(sh / 2))))
        cv2.ellipse(canvas, (int(round(lcx)), int(round(lcy))), axes, float(angle), 0, 360, 1, -1)
    else:
        pts = cv2.boxPoints(((float(lcx), float(lcy)), (float(sw), float(sh)), float(angle)))
        cv2.fillConvexPoly(canvas, np.round(pts).astype(np.int32), 1)
    return (slice(ry0, ry1), slice(rx0, rx1)), canvas.astype(bool)


def _occluder_fill(background: np.ndarray, region: Tuple[slice, slice],
                   rng: np.random.Generator) -> np.ndarray:
    """float32[h, w, 3] for ``region``: a shifted (maybe mirrored) piece of the background, or a
    shaded, noisy random colour."""
    h, w = background.shape[:2]
    ys = np.arange(region[0].start, region[0].stop)
    xs = np.arange(region[1].start, region[1].stop)
    if rng.random() < 0.5:
        dy, dx = int(rng.integers(h)), int(rng.integers(w))
        src_x = (xs + dx) % w
        if rng.random() < 0.5:
            src_x = src_x[::-1]
        return background[np.ix_((ys + dy) % h, src_x)].astype(np.float32)
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    ramp = 1 + 0.3 * (((xs[None, :] - w / 2) * math.cos(phi) + (ys[:, None] - h / 2) * math.sin(phi))
                      / max(h, w)).astype(np.float32)
    fill = colour * ramp[..., None]
    fill += rng.standard_normal(fill.shape, dtype=np.float32) * np.float32(rng.uniform(0, 8))
    return np.clip(fill, 0, 255)


def compose_scene(index: int, classes: Sequence[Union[ClassImage, ClassSource]], backgrounds: BackgroundPool,
                  config: SynthConfig) -> Scene:
    """Compose scene ``index``: the uint8 image before JPEG encoding and its objects.

    ``classes``: class images, or class sources (a random one of a source's appearances is pasted
    for each object; no random number is drawn for a source with one appearance, so a source
    made from a class image gives the same scene as the class image).

    Objects are pasted in order (later ones may partly cover earlier ones); each object's box is
    the tight box of its warped mask (alpha >= 0.5) clipped to the scene. Placements that would
    break ``max_iou``, ``max_containment``, ``min_box_size``, ``max_truncation`` or
    ``max_occlusion`` are retried, then tried smaller, then skipped. Finally occluder patches are
    painted over some objects.
    """
    if not classes:
        raise InvalidInputError("no class images given")
    rng = scene_rng(config.seed, index)
    bg_index = int(rng.integers(len(backgrounds)))
    background = backgrounds.get(bg_index)
    if config.background_flip and rng.random() < 0.5:
        background = background[:, ::-1]
    canvas = _Canvas(background, config)
    height, width = canvas.height, canvas.width
    longer = max(height, width)
    lo, hi = config.object_size
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))

    for _ in range(n_objects):
        class_index = int(rng.integers(len(classes)))
        entry = classes[class_index]
        cls = entry if isinstance(entry, ClassImage) else pick_appearance(entry, rng)
        target = longer * math.exp(rng.uniform(math.log(lo), math.log(hi)))
        patch = transform_object(cls, target, rng, config)
        for attempt in range(_PLACEMENT_ATTEMPTS):
            if attempt and attempt % 10 == 0:  # hard to fit: try a smaller instance
                target = max(target * 0.7, float(config.min_box_size))
                patch = transform_object(cls, target, rng, config)
            ph, pw = patch.alpha.shape
            slack_x, slack_y = int(config.max_truncation * pw), int(config.max_truncation * ph)
            x_hi, y_hi = width - pw + slack_x, height - ph + slack_y
            if x_hi < -slack_x or y_hi < -slack_y:
                continue
            x0 = int(rng.integers(-slack_x, x_hi + 1))
            y0 = int(rng.integers(-slack_y, y_hi + 1))
            if canvas.try_place(patch, x0, y0, class_index, cls.name):
                break

    if config.occlusion_prob > 0 and config.max_occlusion > 0:
        for obj_index in range(len(canvas.objects)):
            if rng.random() >= config.occlusion_prob:
                continue
            fraction = rng.uniform(0.1, max(0.1, config.max_occlusion))
            for _ in range(_OCCLUDER_ATTEMPTS):
                shape = _occluder_shape(canvas.objects[obj_index].box, fraction, width, height, rng)
                if shape is not None:
                    region, mask = shape
                    if canvas.try_occlude(region, mask, _occluder_fill(background, region, rng)):
                        break
                fraction *= 0.6

    for obj in canvas.objects:
        obj.occlusion = 1.0 - obj.visible / obj.area if obj.area else 0.0
        obj.difficult = obj.occlusion > config.difficult_occlusion
    qlo, qhi = config.jpeg_quality
    quality = int(rng.integers(qlo, qhi + 1))
    image = np.clip(np.rint(canvas.image), 0, 255).astype(np.uint8)
    return Scene(index=index, image=image, objects=canvas.objects,
                 background=backgrounds.name(bg_index), jpeg_quality=quality)
