"""Shelf layout: products standing in rows on shelves, with repeated facings and price tags.

One scene (:func:`compose_shelf_scene`), all randomness from the scene's generator:

1. The background photo (longer side ``scene_size``) gets a *shelf unit*: a rectangle covering
   ``unit_width`` x ``unit_height`` of the scene, its back panel a plain shaded colour or a darkened
   piece of the photo, split into ``rows`` shelves of equal height.
2. Each shelf is filled from left to right with *facing groups*: one product (class), drawn at a
   height of ``fill`` x the shelf height, repeated ``facings`` times side by side (gaps of up to
   ``gap`` x its width; a negative gap lets a facing cover part of its left neighbour). The next
   product is, with probability ``same_group_prob``, another class of the same group (e.g. a
   flavour variant of the same brand), otherwise any class. All facings of a group share one
   appearance, pose and lighting (they are the same product), with a small brightness change each.
3. Products stand on the shelf board; each sinks behind the board's front edge by up to
   ``edge_occlusion`` of its height. Under each group a price tag (probability ``tag_prob``): a
   white or yellow label with printed digits, on the board's front edge.
4. Random occluders (``occlusion_prob`` per object, as in the random layout) may cover parts of
   products.
5. The whole scene gets a mild perspective (each corner moves by up to ``tilt`` of the scene size),
   a lighting gradient and colour cast, sometimes blur and noise, and JPEG compression.

Boxes are exact and amodal: the tight box (alpha >= 0.5) of each product's full mask, warped by
the scene's perspective, clipped to the scene. Occlusion fractions (neighbours, shelf edge,
occluders) are counted on the unwarped scene; objects hidden by more than
``difficult_occlusion`` are difficult.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from os2d.errors import InvalidInputError
from os2d.synth.compose import (
    BackgroundPool,
    Scene,
    SceneObject,
    _Canvas,
    _occluder_fill,
    _occluder_shape,
    scene_rng,
)
from os2d.synth.config import ShelfConfig, SynthConfig
from os2d.synth.objects import ClassSource, ObjectPatch, pick_appearance, transform_object

_OCCLUDER_ATTEMPTS = 4
_TAG_COLOURS = ((250, 250, 245), (250, 225, 60), (255, 240, 120))


@dataclass
class _Placed:
    """Full (amodal) alpha of a pasted product and its top-left corner in the scene."""

    alpha: np.ndarray
    x0: int
    y0: int


# ------------------------------------------------------------------------------------ products
def choose_class(sources: Sequence[ClassSource], previous: Optional[int], rng: np.random.Generator,
                 same_group_prob: float) -> int:
    """Index of the next product: another class of ``previous``'s group with probability
    ``same_group_prob`` (when it has one), else any class."""
    if previous is not None and sources[previous].group is not None:
        group = sources[previous].group
        mates = [i for i, s in enumerate(sources) if s.group == group and i != previous]
        if mates and rng.random() < same_group_prob:
            return mates[int(rng.integers(len(mates)))]
    return int(rng.integers(len(sources)))


def product_patch(source: ClassSource, height: float, rng: np.random.Generator, config: SynthConfig,
                  shelf: ShelfConfig) -> ObjectPatch:
    """One facing of ``source`` about ``height`` px high (small rotation/perspective, lighting)."""
    appearance = pick_appearance(source, rng)
    h, w = appearance.mask.shape
    target_long = height * max(1.0, w / max(h, 1))
    pose = replace(config, rotation_max_deg=shelf.product_rotation_deg, perspective=shelf.product_perspective)
    return transform_object(appearance, target_long, rng, pose)


def _facing_variant(patch: ObjectPatch, rng: np.random.Generator) -> ObjectPatch:
    """The same facing with a slightly different brightness (another pack of the same product)."""
    return ObjectPatch(rgb=np.clip(patch.rgb * np.float32(rng.uniform(0.93, 1.07)), 0, 255), alpha=patch.alpha)


# ------------------------------------------------------------------------------------ the unit
def _back_panel(canvas: _Canvas, unit: Tuple[int, int, int, int], rng: np.random.Generator,
                shelf: ShelfConfig) -> None:
    x0, y0, x1, y1 = unit
    region = canvas.image[y0:y1, x0:x1]
    if rng.random() < shelf.back_photo_prob:
        region *= np.float32(rng.uniform(0.35, 0.8))
    else:
        colour = rng.uniform(40, 235, size=3).astype(np.float32)
        ys = np.linspace(-0.5, 0.5, y1 - y0, dtype=np.float32)[:, None, None]
        region[...] = colour * (1 + np.float32(rng.uniform(-0.3, 0.3)) * ys)
        region += rng.standard_normal(region.shape, dtype=np.float32) * np.float32(rng.uniform(0, 5))
    np.clip(region, 0, 255, out=region)


def _paint_forced(canvas: _Canvas, region: Tuple[slice, slice], shape: np.ndarray, fill: np.ndarray) -> None:
    """Paint ``fill`` where ``shape`` (over ``region``) whatever it hides; visibility bookkeeping kept."""
    owners = canvas.owner[region][shape]
    owners = owners[owners >= 0]
    if owners.size:
        for obj, lost in zip(canvas.objects, np.bincount(owners, minlength=len(canvas.objects))):
            obj.visible -= int(lost)
    canvas.image[region][shape] = fill[shape]
    canvas.owner[region][shape] = -1


def _board(canvas: _Canvas, x0: int, x1: int, top: int, height: int, colour: np.ndarray,
           rng: np.random.Generator) -> None:
    y1 = min(canvas.height, top + height)
    if y1 <= top or x1 <= x0:
        return
    region = (slice(top, y1), slice(x0, x1))
    ramp = np.linspace(1.1, 0.8, y1 - top, dtype=np.float32)[:, None, None]
    fill = np.broadcast_to(colour * ramp, (y1 - top, x1 - x0, 3)).astype(np.float32)
    fill = fill + rng.standard_normal(fill.shape, dtype=np.float32) * np.float32(3)
    _paint_forced(canvas, region, np.ones((y1 - top, x1 - x0), bool), np.clip(fill, 0, 255))


def _price_tag(canvas: _Canvas, cx: float, top: int, board_h: int, max_w: float, rng: np.random.Generator) -> None:
    """A white/yellow label with a printed price, centred at ``cx`` on the board front."""
    th = max(6, int(round(board_h * rng.uniform(0.7, 1.0))))
    tw = int(round(min(max_w, th * rng.uniform(1.8, 3.2))))
    x0, y0 = int(round(cx - tw / 2)), top + max(0, (board_h - th) // 2)
    x0, x1, y1 = max(0, x0), min(canvas.width, x0 + tw), min(canvas.height, y0 + th)
    if x1 - x0 < 6 or y1 - y0 < 5:
        return
    label = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    label[...] = _TAG_COLOURS[int(rng.integers(len(_TAG_COLOURS)))]
    price = f"{int(rng.integers(0, 30))}{',' if rng.random() < 0.5 else '.'}{int(rng.integers(0, 100)):02d}"
    scale = (y1 - y0) / 40.0
    ink = (0, 0, 0) if rng.random() < 0.6 else (200, 20, 20)
    cv2.putText(label, price, (2, int((y1 - y0) * 0.78)), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                max(1, int(round(scale * 2))), cv2.LINE_AA)
    region = (slice(y0, y1), slice(x0, x1))
    _paint_forced(canvas, region, np.ones(label.shape[:2], bool), label.astype(np.float32))


def _fill_row(canvas: _Canvas, placed: List[_Placed], sources: Sequence[ClassSource], row: Tuple[int, int, int, int],
              board_h: int, rng: np.random.Generator, config: SynthConfig, shelf: ShelfConfig) -> List[Tuple[float, float]]:
    """Facing groups from left to right on one shelf; returns each group's (x-centre, width)."""
    x_start, top, x_end, board_top = row
    row_h = board_top - top
    x, previous, groups = float(x_start + rng.uniform(0, 0.05) * row_h), None, []
    while x < x_end:
        index = choose_class(sources, previous, rng, shelf.same_group_prob)
        previous = index
        height = row_h * rng.uniform(*shelf.fill)
        patch = product_patch(sources[index], height, rng, config, shelf)
        ph, pw = patch.alpha.shape
        count = int(rng.integers(shelf.facings[0], shelf.facings[1] + 1))
        sink = int(round(ph * rng.uniform(0, shelf.edge_occlusion)))
        y0, group_x0, pasted = board_top - ph + sink, x, 0
        for _ in range(count):
            if x + pw > x_end:
                break
            facing = _facing_variant(patch, rng)
            if canvas.try_place(facing, int(round(x)), y0, index, sources[index].name):
                placed.append(_Placed(facing.alpha, int(round(x)), y0))
                pasted += 1
            x += pw * (1 + rng.uniform(*shelf.gap))
        if pasted == 0:
            break
        groups.append(((group_x0 + x) / 2, x - group_x0))
        x += pw * rng.uniform(0.02, 0.2)
    return groups


def _shelf_unit(canvas: _Canvas, placed: List[_Placed], sources: Sequence[ClassSource], rng: np.random.Generator,
                config: SynthConfig, shelf: ShelfConfig) -> None:
    W, H = canvas.width, canvas.height
    uw, uh = int(W * rng.uniform(*shelf.unit_width)), int(H * rng.uniform(*shelf.unit_height))
    ux0, uy0 = int(rng.integers(0, W - uw + 1)), int(rng.integers(0, H - uh + 1))
    _back_panel(canvas, (ux0, uy0, ux0 + uw, uy0 + uh), rng, shelf)
    n_rows = int(rng.integers(shelf.rows[0], shelf.rows[1] + 1))
    row_h = uh / n_rows
    board_colour = rng.uniform(60, 240, size=3).astype(np.float32)
    for r in range(n_rows):
        board_h = max(3, int(round(row_h * shelf.board_height)))
        top, board_top = int(round(uy0 + r * row_h)), int(round(uy0 + (r + 1) * row_h)) - board_h
        groups = _fill_row(canvas, placed, sources, (ux0, top, ux0 + uw, board_top), board_h, rng, config, shelf)
        _board(canvas, ux0, ux0 + uw, board_top, board_h, board_colour, rng)
        for cx, width in groups:
            if rng.random() < shelf.tag_prob:
                _price_tag(canvas, cx + rng.uniform(-0.2, 0.2) * width, board_top, board_h, 0.9 * width, rng)


# ------------------------------------------------------------------------------------ the scene
def random_tilt(width: int, height: int, rng: np.random.Generator, tilt: float) -> np.ndarray:
    """A homography moving each scene corner by up to ``tilt`` of the scene size (float64[3, 3])."""
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    dst = src + (rng.uniform(-tilt, tilt, size=(4, 2)) * np.array([width, height])).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def warp_scene(image: np.ndarray, background: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """``image`` (float32[H, W, 3]) warped by ``hom``; where the warp reaches outside the scene, the
    background photo (mirrored at its border) fills in, so no product is ever mirrored in unboxed."""
    size = (image.shape[1], image.shape[0])
    warped = cv2.warpPerspective(image, hom, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
    inside = cv2.warpPerspective(np.ones(image.shape[:2], np.float32), hom, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    if float(inside.min()) >= 1.0:
        return warped
    filler = cv2.warpPerspective(np.ascontiguousarray(background, dtype=np.float32), hom, size,
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return warped + (1.0 - inside) * filler


def warped_box(item: _Placed, hom: np.ndarray, width: int, height: int) -> Optional[Tuple[float, float, float, float]]:
    """Tight box (alpha >= 0.5, clipped to the scene) of a product's full alpha after ``hom``."""
    h, w = item.alpha.shape
    corners = np.array([[item.x0, item.y0], [item.x0 + w, item.y0], [item.x0 + w, item.y0 + h],
                        [item.x0, item.y0 + h]], dtype=np.float64)
    moved = cv2.perspectiveTransform(corners[None], hom)[0]
    rx0, ry0 = max(0, int(math.floor(moved[:, 0].min())) - 2), max(0, int(math.floor(moved[:, 1].min())) - 2)
    rx1, ry1 = min(width, int(math.ceil(moved[:, 0].max())) + 2), min(height, int(math.ceil(moved[:, 1].max())) + 2)
    if rx1 <= rx0 or ry1 <= ry0:
        return None
    shift_in = np.array([[1, 0, item.x0], [0, 1, item.y0], [0, 0, 1]], dtype=np.float64)
    shift_out = np.array([[1, 0, -rx0], [0, 1, -ry0], [0, 0, 1]], dtype=np.float64)
    local = cv2.warpPerspective(item.alpha, shift_out @ hom @ shift_in, (rx1 - rx0, ry1 - ry0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    solid = local >= 0.5
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    if rows.size == 0:
        return None
    return (float(rx0 + cols[0]), float(ry0 + rows[0]), float(rx0 + cols[-1] + 1), float(ry0 + rows[-1] + 1))


def _occlude(canvas: _Canvas, background: np.ndarray, rng: np.random.Generator, config: SynthConfig) -> None:
    if config.occlusion_prob <= 0 or config.max_occlusion <= 0:
        return
    for obj in list(canvas.objects):
        if rng.random() >= config.occlusion_prob:
            continue
        fraction = rng.uniform(0.1, max(0.1, config.max_occlusion))
        for _ in range(_OCCLUDER_ATTEMPTS):
            shape = _occluder_shape(obj.box, fraction, canvas.width, canvas.height, rng)
            if shape is not None:
                region, mask = shape
                if canvas.try_occlude(region, mask, _occluder_fill(background, region, rng)):
                    break
            fraction *= 0.6


def _finish(image: np.ndarray, rng: np.random.Generator, config: SynthConfig, shelf: ShelfConfig) -> np.ndarray:
    """Lighting gradient, colour cast, maybe blur and noise, on the float32 scene."""
    h, w = image.shape[:2]
    phi, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0, config.shading)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 1 + np.float32(amp) * ((xs - w / 2) * math.cos(phi) + (ys - h / 2) * math.sin(phi)) / max(h, w)
    gains = rng.uniform(1 - config.color_gain, 1 + config.color_gain, size=3).astype(np.float32)
    image = image * ramp[..., None] * gains * np.float32(rng.uniform(1 - config.brightness, 1 + config.brightness))
    if rng.random() < shelf.scene_blur_prob and shelf.scene_blur_max_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, max(0.3, shelf.scene_blur_max_sigma)))
    if rng.random() < config.noise_prob and config.noise_max_std > 0:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0, config.noise_max_std))
    return np.clip(image, 0, 255)


def compose_shelf_scene(index: int, sources: Sequence[ClassSource], backgrounds: BackgroundPool,
                        config: SynthConfig) -> Scene:
    """Compose shelf scene ``index`` (see the module docstring; knobs: ``config.shelf``); the same
    ``Scene`` as the random layout."""
    shelf = config.shelf
    if not sources:
        raise InvalidInputError("no class images given")
    rng = scene_rng(config.seed, index)
    bg_index = int(rng.integers(len(backgrounds)))
    background = backgrounds.get(bg_index)
    if config.background_flip and rng.random() < 0.5:
        background = background[:, ::-1]
    canvas = _Canvas(background, replace(config, max_iou=1.0, max_containment=1.0))
    placed: List[_Placed] = []
    _shelf_unit(canvas, placed, sources, rng, config, shelf)
    _occlude(canvas, background, rng, config)
    hom = random_tilt(canvas.width, canvas.height, rng, shelf.tilt)
    image = warp_scene(canvas.image, background, hom)
    image = _finish(image, rng, config, shelf)
    objects: List[SceneObject] = []
    for obj, item in zip(canvas.objects, placed):
        box = warped_box(item, hom, canvas.width, canvas.height)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < config.min_box_size:
            continue
        occlusion = 1.0 - obj.visible / obj.area if obj.area else 0.0
        objects.append(replace(obj, box=box, occlusion=occlusion, difficult=occlusion > config.difficult_occlusion))
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    return Scene(index=index, image=np.clip(np.rint(image), 0, 255).astype(np.uint8), objects=objects,
                 background=backgrounds.name(bg_index), jpeg_quality=quality)
