"""``SynthConfig``: every knob of synthetic scene generation, validated in one place."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Tuple, Union

from os2d.errors import InvalidInputError

#: How a class image's foreground mask is found (see :func:`os2d.synth.objects.foreground_mask`).
MASK_MODES = ("auto", "none", "white")
#: Scene layouts: objects scattered at random, or products in rows on shelves (os2d.synth.shelf).
LAYOUTS = ("random", "shelf")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class ShelfConfig:
    """Knobs of the shelf layout (:mod:`os2d.synth.shelf`; fractions unless stated, ``(lo, hi)``
    pairs are uniform ranges).

    Attributes:
        rows: shelves per shelf unit. unit_width, unit_height: the unit's share of the scene.
        fill: product height / shelf height. facings: facings per product group.
        gap: gap between facings / product width (negative: overlap). same_group_prob: chance
            that the next product is another class of the same group (e.g. brand).
        board_height: shelf board front / shelf height. edge_occlusion: products sink behind
            the board by up to this fraction of their height. tag_prob: price tag per group.
        tilt: scene perspective, corner shifts / scene size. back_photo_prob: back panel is a
            darkened piece of the photo (else a plain colour). product_rotation_deg,
            product_perspective: per-group pose. scene_blur_prob, scene_blur_max_sigma: camera blur.
    """

    rows: Tuple[int, int] = (1, 4)
    unit_width: Tuple[float, float] = (0.75, 1.0)
    unit_height: Tuple[float, float] = (0.7, 1.0)
    fill: Tuple[float, float] = (0.6, 0.9)
    facings: Tuple[int, int] = (2, 6)
    gap: Tuple[float, float] = (-0.12, 0.06)
    same_group_prob: float = 0.6
    board_height: float = 0.1
    edge_occlusion: float = 0.12
    tag_prob: float = 0.85
    tilt: float = 0.05
    back_photo_prob: float = 0.5
    product_rotation_deg: float = 2.0
    product_perspective: float = 0.02
    scene_blur_prob: float = 0.3
    scene_blur_max_sigma: float = 1.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        def bad(name: str, why: str) -> InvalidInputError:
            return InvalidInputError(f"shelf config: {name}={getattr(self, name)!r} {why}")

        for name in ("rows", "facings"):
            lo, hi = getattr(self, name)
            if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 100):
                raise bad(name, "must be integers (lo, hi) with 1 <= lo <= hi <= 100")
        for name in ("unit_width", "unit_height", "fill"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise bad(name, "must be (lo, hi) with 0 < lo <= hi <= 1")
        lo, hi = self.gap
        if not -0.5 <= lo <= hi <= 1:
            raise bad("gap", "must be (lo, hi) with -0.5 <= lo <= hi <= 1")
        for name in ("same_group_prob", "tag_prob", "back_photo_prob", "scene_blur_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "must be in [0, 1]")
        for name, top in (("board_height", 0.3), ("edge_occlusion", 0.5), ("tilt", 0.2),
                          ("product_perspective", 0.3), ("product_rotation_deg", 45.0), ("scene_blur_max_sigma", 10)):
            if not 0 <= getattr(self, name) <= top:
                raise bad(name, f"must be in [0, {top}]")

    def to_dict(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ShelfConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInputError(f"shelf config: unknown settings {unknown}")
        return cls(**data)


@dataclass
class SynthConfig:
    """Parameters of ``os2d synth``. Sizes are in pixels unless a name says ``fraction``.

    Attributes:
        num_scenes: number of scenes to generate.
        seed: base seed; scene ``i`` is drawn from ``np.random.default_rng([seed, i])`` so it does
            not depend on how many scenes are generated.
        min_objects, max_objects: objects attempted per scene (uniform, inclusive).
        scene_size: backgrounds are rescaled so that their longer side is this many pixels.
        object_size: (min, max) of an object's box longer side as a fraction of the scene's longer
            side, sampled log-uniformly.
        min_box_size: objects whose box (clipped to the scene) has a side below this are not pasted.
        max_iou: two pasted objects' boxes overlap with IoU below this.
        max_containment: and the intersection covers at most this fraction of the smaller box
            (so small objects are not pasted inside the box of a big one).
        max_truncation: at most this fraction of an object's mask may fall outside the scene.
        mask: ``auto`` (uniform border colour -> cut the object out; otherwise paste the whole
            rectangle), ``white`` (cut out white-ish background connected to the border),
            ``none`` (always paste the whole rectangle, e.g. logo crops).
        mask_tolerance: max per-channel difference (0-255) from the border colour that still counts
            as background.
        rotation_max_deg: in-plane rotation drawn from [-r, r] degrees.
        aspect_jitter: the aspect ratio is multiplied by a factor in [1/(1+a), 1+a] (log-uniform).
        perspective: each corner moves by up to this fraction of the object size (<= 0.3).
        brightness, contrast, saturation: factors drawn from [1-x, 1+x].
        color_gain: per-channel gains drawn from [1-x, 1+x] (colour cast).
        shading: amplitude of a random linear brightness gradient over the object.
        blur_prob, blur_max_sigma: chance and strength (Gaussian sigma, px) of object blur.
        noise_prob, noise_max_std: chance and strength (std, 0-255 scale) of object noise.
        occlusion_prob: chance that an object gets an extra occluder patch over part of it.
        max_occlusion: no placement or occluder may hide more than this fraction of an object.
        difficult_occlusion: objects hidden by more than this fraction are marked ``difficult``.
        jpeg_quality: (min, max) JPEG quality of the saved scenes (scene-level artefacts).
        background_flip: flip backgrounds horizontally at random.
        split: value of the ``split`` column.
        name: dataset name: ``classes/<name>.csv`` and scene file names ``<name>_000000.jpg``.
        layout: ``random`` (objects scattered over the background) or ``shelf`` (products in rows
            on shelves, :mod:`os2d.synth.shelf`).
        shelf: the shelf layout's knobs (:class:`ShelfConfig`; a dict is converted).
    """

    num_scenes: int = 100
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 6
    scene_size: int = 800
    object_size: Tuple[float, float] = (0.08, 0.5)
    min_box_size: int = 16
    max_iou: float = 0.3
    max_containment: float = 0.5
    max_truncation: float = 0.3
    mask: str = "auto"
    mask_tolerance: int = 30
    rotation_max_deg: float = 15.0
    aspect_jitter: float = 0.2
    perspective: float = 0.1
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    color_gain: float = 0.08
    shading: float = 0.3
    blur_prob: float = 0.3
    blur_max_sigma: float = 1.5
    noise_prob: float = 0.3
    noise_max_std: float = 6.0
    occlusion_prob: float = 0.25
    max_occlusion: float = 0.6
    difficult_occlusion: float = 0.4
    jpeg_quality: Tuple[int, int] = (60, 95)
    background_flip: bool = True
    split: str = "train"
    name: str = "synth"
    layout: str = "random"
    shelf: Union[ShelfConfig, Dict[str, Any]] = field(default_factory=ShelfConfig)

    def __post_init__(self) -> None:
        if isinstance(self.shelf, dict):
            self.shelf = ShelfConfig.from_dict(self.shelf)
        self.object_size = _pair(self.object_size, float, "object_size")  # type: ignore[assignment]
        self.jpeg_quality = _pair(self.jpeg_quality, int, "jpeg_quality")  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""

        def bad(field: str, value: Any, why: str) -> InvalidInputError:
            return InvalidInputError(f"synth config: {field}={value!r} {why}")

        for name in ("num_scenes", "seed", "min_objects", "max_objects", "scene_size", "min_box_size",
                     "mask_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, value, "must be an integer")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise bad(f.name, value, "must be a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, value, "must be finite")
        if self.num_scenes < 1:
            raise bad("num_scenes", self.num_scenes, "must be >= 1 (a dataset needs at least one scene)")
        if self.seed < 0:
            raise bad("seed", self.seed, "must be >= 0")
        if self.min_objects < 1:
            raise bad("min_objects", self.min_objects, "must be >= 1")
        if self.max_objects > 10_000:
            raise bad("max_objects", self.max_objects, "must be <= 10000")
        if self.max_objects < self.min_objects:
            raise bad("max_objects", self.max_objects, f"must be >= min_objects ({self.min_objects})")
        if self.scene_size < 32:
            raise bad("scene_size", self.scene_size, "must be >= 32")
        lo, hi = self.object_size if len(self.object_size) == 2 else (math.nan, math.nan)
        if not (0 < lo <= hi <= 1):
            raise bad("object_size", self.object_size, "must be (min, max) with 0 < min <= max <= 1")
        if self.min_box_size < 1:
            raise bad("min_box_size", self.min_box_size, "must be >= 1")
        if self.min_box_size > hi * self.scene_size:
            raise bad("min_box_size", self.min_box_size,
                      f"is larger than the largest object ({hi} * scene_size {self.scene_size})")
        if not (0 < self.max_iou <= 1):
            raise bad("max_iou", self.max_iou, "must be in (0, 1]")
        if not (0 < self.max_containment <= 1):
            raise bad("max_containment", self.max_containment, "must be in (0, 1]")
        if not (0 <= self.max_truncation < 1):
            raise bad("max_truncation", self.max_truncation, "must be in [0, 1)")
        if self.mask not in MASK_MODES:
            raise bad("mask", self.mask, f"must be one of {', '.join(MASK_MODES)}")
        if not (0 <= self.mask_tolerance <= 255):
            raise bad("mask_tolerance", self.mask_tolerance, "must be in [0, 255]")
        if not (0 <= self.rotation_max_deg <= 180):
            raise bad("rotation_max_deg", self.rotation_max_deg, "must be in [0, 180]")
        if not (0 <= self.perspective <= 0.3):
            raise bad("perspective", self.perspective, "must be in [0, 0.3]")
        for name in ("aspect_jitter", "shading", "blur_max_sigma", "noise_max_std"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "must be >= 0")
        for name in ("brightness", "contrast", "saturation", "color_gain"):
            if not (0 <= getattr(self, name) < 1):
                raise bad(name, getattr(self, name), "must be in [0, 1)")
        for name in ("blur_prob", "noise_prob", "occlusion_prob", "max_occlusion", "difficult_occlusion"):
            if not (0 <= getattr(self, name) <= 1):
                raise bad(name, getattr(self, name), "must be in [0, 1]")
        if self.max_occlusion >= 1:
            raise bad("max_occlusion", self.max_occlusion, "must be < 1")
        qlo, qhi = self.jpeg_quality if len(self.jpeg_quality) == 2 else (0, -1)
        if not (1 <= qlo <= qhi <= 100):
            raise bad("jpeg_quality", self.jpeg_quality, "must be (min, max) with 1 <= min <= max <= 100")
        if not isinstance(self.split, str) or not self.split.strip() or any(c in self.split for c in "\r\n"):
            raise bad("split", self.split, "must be a non-empty single-line string")
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise bad("name", self.name, "must be a file-name-safe word (letters, digits, '.', '_', '-')")
        if self.layout not in LAYOUTS:
            raise bad("layout", self.layout, f"must be one of {', '.join(LAYOUTS)}")
        if not isinstance(self.shelf, ShelfConfig):
            raise bad("shelf", self.shelf, "must be a ShelfConfig or a dict of its settings")
        self.shelf.validate()

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["shelf"] = self.shelf.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SynthConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"synth config: unknown settings {unknown}")
        return cls(**data)


def _pair(value: Any, kind: type, field: str) -> Tuple[Any, ...]:
    """``(lo, hi)`` as a tuple of ``kind``; a clear error for anything else."""
    try:
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"synth config: {field}={value!r} must be a pair of numbers (min, max)") from None
