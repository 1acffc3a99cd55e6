"""Composing synthetic scenes: class images pasted on backgrounds with exact boxes.

Holds the background pool, the scene records (:class:`Scene`, :class:`SceneObject`), the canvas
that enforces the placement and occlusion constraints, the occluder helpers and
:func:`compose_scene`. Class images and the per-object transform live in
:mod:`os2d.synth.objects`; their public names are re-exported here.

Everything random is drawn from a ``numpy.random.Generator`` passed in (scene ``i`` uses
:func:`scene_rng`), so a scene is a pure function of (seed, index, inputs, config).
Images are ``uint8`` HxWx3 RGB arrays; boxes are xyxy floats in scene pixels where a box
``(x1, y1, x2, y2)`` spans pixel columns ``x1 .. x2-1`` (pixel-edge convention).
"""
from __future__ import annotations

import io
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from os2d.data.images import load_image
from os2d.errors import InvalidInputError
from os2d.synth.config import SynthConfig
from os2d.synth.objects import (  # noqa: F401 (re-exported)
    ClassImage,
    ClassSource,
    ObjectPatch,
    foreground_mask,
    jitter_colours,
    load_class_image,
    pick_appearance,
    random_homography,
    resize_longer_side,
    transform_object,
)

_PLACEMENT_ATTEMPTS = 30
_OCCLUDER_ATTEMPTS = 4


# --------------------------------------------------------------------------------------------
# Inputs: backgrounds
# --------------------------------------------------------------------------------------------


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
