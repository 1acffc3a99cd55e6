"""The user-facing detector: class banks, image pyramid, per-class NMS."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from os2d.data.images import ImageLike, load_image
from os2d.data.preprocess import (
    check_class_image_size,
    resize,
    size_by_area,
    size_by_longer_side,
    to_tensor,
)
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.model.config import ModelConfig
from os2d.model.os2d import OS2DModel
from os2d.ops.boxes import clip_boxes, encode_boxes, make_anchors
from os2d.postprocess import LevelOutput, detect_per_class
from os2d.structures import Detections

logger = logging.getLogger(__name__)

AUGMENTATIONS = {
    "rot90": Image.Transpose.ROTATE_90, "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270, "flip": Image.Transpose.FLIP_LEFT_RIGHT,
}
METHODS = ("os2d", "sliding-window-square", "sliding-window-ar")
RESIZE_RULES = ("longer-side", "area")
MIN_LEVEL_SIDE = 32

ClassSpec = Mapping[str, Union[ImageLike, Sequence[ImageLike]]]


@dataclass
class DetectSettings:
    """Inference settings (defaults come from the model config).

    ``scales``: per pyramid level, the scene's longer side in pixels (``resize_rule="longer-side"``,
    the evaluation pipeline) or ``sqrt(h*w)`` (``"area"``, the reference demo). When ``None``:
    ``pyramid`` factors times ``base_size``.
    """

    scales: Optional[List[float]] = None
    base_size: int = 1280
    pyramid: Tuple[float, ...] = (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)
    resize_rule: str = "longer-side"
    interpolation: str = "bilinear"
    class_size: int = 240
    nms_iou: float = 0.3
    score_threshold: float = 0.5
    max_detections: int = 100
    augment: Tuple[str, ...] = ()
    method: str = "os2d"
    class_batch: int = 8

    def __post_init__(self) -> None:
        if self.resize_rule not in RESIZE_RULES:
            raise InvalidInputError(f"unknown resize rule {self.resize_rule!r}; expected one of {list(RESIZE_RULES)}")
        if self.method not in METHODS:
            raise InvalidInputError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise InvalidInputError(f"unknown class-image augmentation {bad}; expected some of {list(AUGMENTATIONS)}")
        if self.scales is not None and (not self.scales or any(s <= 0 for s in self.scales)):
            raise InvalidInputError(f"scales must be positive pixel sizes, got {self.scales}")
        if self.class_size < 16:
            raise InvalidInputError(f"class size must be at least 16 px, got {self.class_size}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise InvalidInputError(f"NMS IoU threshold must be in (0, 1], got {self.nms_iou}")
        if self.max_detections < 1:
            raise InvalidInputError(f"max detections must be at least 1, got {self.max_detections}")

    @classmethod
    def from_config(cls, config: ModelConfig, **overrides) -> "DetectSettings":
        base = cls(base_size=config.base_size, pyramid=tuple(config.pyramid), class_size=config.class_size,
                   nms_iou=config.nms_iou, score_threshold=config.score_threshold,
                   max_detections=config.max_detections)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidTypeError(f"unknown detector settings {unknown}; known: {sorted(known)}")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def level_sizes(self, width: int, height: int) -> List[Tuple[int, int]]:
        """(w, h) of the network input at each pyramid level for a ``width x height`` scene."""
        scales = self.scales if self.scales is not None else [f * self.base_size for f in self.pyramid]
        rule = size_by_longer_side if self.resize_rule == "longer-side" else size_by_area
        return [rule(width, height, s) for s in scales]


@dataclass
class ClassBank:
    """Class features computed once, reusable across scene images.

    Attributes:
        names: class names (labels index into it).
        features: ``Tensor[K, C, g, g]`` L2-normalised class features, one row per class entry.
        entry_labels: class index of each of the K entries (several images/augmentations per class).
        raw_features: per entry ``Tensor[C, hc, wc]`` unresampled features (aspect-ratio baseline).
        method: the method the bank was prepared for.
    """

    names: List[str]
    features: torch.Tensor
    entry_labels: List[int]
    raw_features: List[torch.Tensor] = field(default_factory=list)
    method: str = "os2d"

    def __len__(self) -> int:
        return len(self.names)


class Detector:
    """One-shot detector: give it class images, get boxes of every instance in scene images.

    Example:
        >>> det = Detector.load("default")
        >>> result = det.detect("shelf.jpg", {"cereal": "cereal_box.jpg"})
        >>> result.to_records()
    """

    def __init__(self, model: OS2DModel, config: ModelConfig, *, device: Union[str, torch.device] = "cpu",
                 **settings) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.settings = DetectSettings.from_config(config, **settings)

    @classmethod
    def load(cls, name_or_path: Union[str, Path] = "default", *, device: Union[str, torch.device] = "cpu",
             **settings) -> "Detector":
        """A detector from a built-in model name or a checkpoint path (see :func:`os2d.zoo.load_model`)."""
        from os2d.zoo import load_model

        model, config = load_model(name_or_path)
        return cls(model, config, device=device, **settings)

    def with_settings(self, **settings) -> "Detector":
        """The same model with other inference settings (no copy of the weights)."""
        clone = object.__new__(Detector)
        clone.model, clone.config, clone.device = self.model, self.config, self.device
        clone.settings = replace(self.settings, **{k: v for k, v in settings.items() if v is not None})
        DetectSettings.__post_init__(clone.settings)
        return clone

    # ----------------------------------------------------------------- class images
    def _class_pixels(self, pil: Image.Image) -> torch.Tensor:
        size = size_by_area(pil.width, pil.height, self.settings.class_size)
        pil = resize(pil, size, interpolation=self.settings.interpolation)
        backbone = self.model.backbone
        return to_tensor(pil, mean=backbone.pixel_mean, std=backbone.pixel_std)

    @torch.no_grad()
    def prepare_classes(self, classes: Union[ClassSpec, ClassBank]) -> ClassBank:
        """Compute class features once: ``{name: image or [images]}`` -> :class:`ClassBank`."""
        if isinstance(classes, ClassBank):
            if classes.method != self.settings.method:
                raise InvalidInputError(f"class bank was prepared for method {classes.method!r}, not {self.settings.method!r}")
            return classes
        if not isinstance(classes, Mapping) or len(classes) == 0:
            raise InvalidInputError("no classes given: pass a mapping of class name -> class image(s)")
        names, tensors, labels = [], [], []
        for label, (name, images) in enumerate(classes.items()):
            names.append(str(name))
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            if not images:
                raise InvalidInputError(f"class {name!r} has no images")
            for image in images:
                pil = load_image(image, what=f"class image for {name!r}")
                check_class_image_size(pil, name=str(name))
                for variant in [pil] + [pil.transpose(AUGMENTATIONS[a]) for a in self.settings.augment]:
                    tensors.append(self._class_pixels(variant).to(self.device))
                    labels.append(label)
        return self.bank_from_tensors(names, tensors, labels)

    @torch.no_grad()
    def bank_from_tensors(self, names: List[str], tensors: List[torch.Tensor], labels: List[int]) -> ClassBank:
        """A class bank from preprocessed class images ``Tensor[3, h, w]`` (entry i has class ``labels[i]``)."""
        from os2d.ops.features import l2_normalize, resize_class_features

        raw = self.model.raw_class_features(tensors)
        grid = self.model.head.grid_size
        resized = torch.cat([resize_class_features(fm.unsqueeze(0), size=grid) for fm in raw], 0)
        feats = l2_normalize(resized, dim=1, eps=self.model.feature_eps)
        # [K, C, g, g]
        raw_normed = [l2_normalize(fm, dim=0, eps=self.model.feature_eps) for fm in raw]
        return ClassBank(names=names, features=feats, entry_labels=labels, raw_features=raw_normed,
                         method=self.settings.method)

    # ----------------------------------------------------------------- scenes
    @torch.no_grad()
    def detect(self, image: ImageLike, classes: Union[ClassSpec, ClassBank], *,
               image_name: Optional[str] = None) -> Detections:
        """Detect every class in one scene image; boxes are in the original image's pixels."""
        bank = self.prepare_classes(classes)
        pil = load_image(image, what="scene image")
        if image_name is None:
            image_name = Path(image).name if isinstance(image, (str, Path)) else ""
        levels = []
        for size in self.settings.level_sizes(pil.width, pil.height):
            if min(size) < MIN_LEVEL_SIDE:
                logger.debug("skipping pyramid level %s: smaller than %d px", size, MIN_LEVEL_SIDE)
                continue
            pixels = resize(pil, size, interpolation=self.settings.interpolation)
            backbone = self.model.backbone
            tensor = to_tensor(pixels, mean=backbone.pixel_mean, std=backbone.pixel_std).unsqueeze(0)
            level = self.level_output(tensor.to(self.device), bank)
            level.scale = (pil.width / size[0], pil.height / size[1])
            levels.append(level)
        if not levels:
            raise InvalidInputError(f"scene image is too small ({pil.width}x{pil.height}) for the pyramid scales")
        return self.finalize(levels, bank, image_size=pil.size, image_name=image_name)

    def detect_many(self, images: Iterable[ImageLike], classes: Union[ClassSpec, ClassBank]) -> List[Detections]:
        """:meth:`detect` over several scenes, computing the class features once."""
        bank = self.prepare_classes(classes)
        return [self.detect(image, bank) for image in images]

    @torch.no_grad()
    def level_output(self, pixels: torch.Tensor, bank: ClassBank) -> LevelOutput:
        """Raw outputs for one preprocessed scene ``Tensor[1, 3, Hi, Wi]`` (one pyramid level)."""
        scene_fm = self.model.scene_features(pixels)
        height, width = scene_fm.shape[-2:]
        stride = self.model.backbone.stride
        anchors = make_anchors(height, width, stride=stride, size=self.model.head.anchor_size, device=pixels.device)
        scores, boxes, corners = self._match(scene_fm, bank)
        codes = encode_boxes(boxes, anchors)
        return LevelOutput(codes=codes, scores=scores, anchors=anchors,
                           image_size=(pixels.shape[-1], pixels.shape[-2]), corners=corners)

    def _match(self, scene_fm: torch.Tensor, bank: ClassBank):
        """Scores ``Tensor[K, N]``, boxes ``Tensor[K, N, 4]``, corners ``Tensor[K, N, 4, 2]`` for all entries."""
        if self.settings.method == "sliding-window-ar":
            from os2d.baselines.sliding_window import aspect_ratio_windows

            return aspect_ratio_windows(scene_fm, bank.raw_features, stride=self.model.backbone.stride)
        head = self.model.head
        if self.settings.method == "sliding-window-square":
            from os2d.baselines.sliding_window import identity_head

            head = identity_head(head)
        scores, boxes, corners = [], [], []
        for start in range(0, bank.features.shape[0], self.settings.class_batch):
            out = head(scene_fm, bank.features[start:start + self.settings.class_batch])
            k = out.scores.shape[1]
            scores.append(out.scores[0].reshape(k, -1))
            # [k, H*W]
            boxes.append(out.boxes[0].reshape(k, -1, 4))
            # [k, H*W, 4]
            corners.append(out.corners[0].reshape(k, -1, 4, 2))
            # [k, H*W, 4, 2]
        return torch.cat(scores), torch.cat(boxes), torch.cat(corners)

    def finalize(self, levels: Sequence[LevelOutput], bank: ClassBank, *, image_size: Tuple[int, int],
                 image_name: str = "") -> Detections:
        """Per-class NMS over all levels and class entries, threshold, top ``max_detections``."""
        per_class = detect_per_class(levels, bank.entry_labels, num_labels=len(bank.names),
                                     score_threshold=self.settings.score_threshold, nms_iou=self.settings.nms_iou)
        labels = torch.cat([torch.full((len(d.scores),), i, dtype=torch.int64) for i, d in enumerate(per_class)])
        boxes = clip_boxes(torch.cat([d.boxes for d in per_class]).float().cpu(), width=image_size[0],
                           height=image_size[1])  # rescaling may overshoot the border by float rounding
        result = Detections(
            boxes=boxes,
            scores=torch.cat([d.scores for d in per_class]).float().cpu(),
            labels=labels, class_names=list(bank.names), image_size=tuple(image_size), image_name=image_name,
            extra={"corners": torch.cat([d.corners for d in per_class]).float().cpu(),
                   "anchors": torch.cat([d.anchors for d in per_class]).float().cpu()},
        ).sorted()
        return result.filter(torch.arange(min(len(result), self.settings.max_detections)))
