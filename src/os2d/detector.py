"""The user-facing detector: class banks, image pyramid, methods, final detections.

>>> det = Detector.load("default")
>>> bank = det.prepare_classes({"cereal": "cereal_box.jpg"})   # once per catalog
>>> det.detect("shelf.jpg", bank).to_records()

The method (``settings.method``, see :mod:`os2d.inference.registry`) produces candidates; the
per-class NMS, score calibration and cross-class steps are shared (:mod:`os2d.inference.candidates`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

import torch

from os2d.data.images import ImageLike, load_image
from os2d.errors import InvalidInputError
from os2d.inference.bank import BankKey, ClassBank
from os2d.inference.calibration import CALIBRATION_FILE, BackgroundBank, Calibrator, background_stats
from os2d.inference.candidates import above_threshold, finalize
from os2d.inference.one_label import one_label, rank_by_color
from os2d.inference.prepare import ClassSpec, bank_from_tensors, load_class_images
from os2d.inference.registry import Method, get_method
from os2d.inference.scene import Scene
from os2d.inference.settings import DetectSettings
from os2d.model.config import ModelConfig
from os2d.model.fuse import inference_backbone
from os2d.model.identity import model_identity
from os2d.model.os2d import OS2DModel
from os2d.structures import Detections

logger = logging.getLogger(__name__)


def model_folder(name_or_path: Union[str, Path]) -> Optional[Path]:
    """The folder of an os2d model (built-in ``default``, a folder, its config or weights file), else None."""
    from os2d.zoo import packaged_model_dir

    text = str(name_or_path)
    if text in ("default", "untrained"):
        return packaged_model_dir(text) if text == "default" else None
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    return path.parent if path.suffix in (".json", ".safetensors") else None


def _calibration_stats(bank: ClassBank) -> torch.Tensor:
    if "calibration" not in bank.extras:
        raise InvalidInputError("these class features were prepared without calibration statistics (an older "
                                "catalog or bank); rebuild them, or use raw scores (--scores raw)")
    return bank.extras["calibration"]


def _above(keep: torch.Tensor, runner_label: torch.Tensor, runner_score: torch.Tensor, cands, threshold) -> tuple:
    """The winners of the one-label contests (``keep`` into ``cands``) that score above ``threshold``."""
    ok = above_threshold(cands.scores[keep], cands.entries[keep], threshold)
    return keep[ok], runner_label[ok], runner_score[ok]


#: Settings taken from the model config when not given.
CONFIG_SETTINGS = ("base_size", "pyramid", "class_size", "nms_iou", "score_threshold", "max_detections",
                   "pyramid_rule", "scores", "one_label", "color_weight", "trim_class_images")


def settings_from_config(config: ModelConfig, **overrides) -> DetectSettings:
    """The model's recommended settings with ``overrides`` (``None`` values keep the model's)."""
    base = {name: getattr(config, name) for name in CONFIG_SETTINGS if hasattr(config, name)}
    base["pyramid"] = tuple(base["pyramid"])
    return DetectSettings.create(**base).replace(**overrides)


class _Shared:
    """What detectors cloned by :meth:`Detector.with_settings` share: the inference backbone, the
    identity, the calibration data."""

    def __init__(self, model: OS2DModel, config: ModelConfig, background: Optional[BackgroundBank]) -> None:
        self.model, self.config, self.background = model, config, background

    @cached_property
    def backbone(self) -> torch.nn.Module:
        return inference_backbone(self.model.backbone)

    @cached_property
    def identity(self) -> str:
        ident = model_identity(self.model, self.config)
        if self.background is None:
            return ident
        digest = hashlib.sha256(json.dumps(asdict(self.background.calibrator) if self.background.calibrator else {},
                                           sort_keys=True).encode())
        for m in self.background.maps:
            digest.update(m.to(torch.float16).numpy().tobytes())
        return f"{ident}-c{digest.hexdigest()[:8]}"


class Detector:
    """One-shot detector: give it class images, get boxes of every instance in scene images.

    Args:
        model: the network; config: its :class:`ModelConfig` (architecture and default settings).
        device: torch device.
        settings: :class:`DetectSettings` fields overriding the model's defaults.
    """

    def __init__(self, model: OS2DModel, config: ModelConfig, *, device: Union[str, torch.device] = "cpu",
                 background: Optional[BackgroundBank] = None, **settings) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self._shared = _Shared(self.model, config, background)
        self.settings = self._check(settings_from_config(config, **settings))

    @classmethod
    def load(cls, name_or_path: Union[str, Path] = "default", *, device: Union[str, torch.device] = "cpu",
             **settings) -> "Detector":
        """A detector from a built-in model name or a checkpoint path (see :func:`os2d.zoo.load_model`)."""
        from os2d.zoo import load_model

        model, config = load_model(name_or_path)
        folder = model_folder(name_or_path)
        background = BackgroundBank.load(folder) if folder is not None else None
        return cls(model, config, device=device, background=background, **settings)

    def with_settings(self, **settings) -> "Detector":
        """The same model with other settings (no copy of the weights or of the inference backbone)."""
        clone = object.__new__(Detector)
        clone.model, clone.config, clone.device, clone._shared = self.model, self.config, self.device, self._shared
        clone.settings = clone._check(self.settings.replace(**settings))
        return clone

    def _check(self, settings: DetectSettings) -> DetectSettings:
        """Refuse settings this model cannot honour (an unknown method, calibrated scores without data)."""
        method = get_method(settings.method)
        if not method.uses_model:
            raise InvalidInputError(f"method {method.name!r} does not use an OS2D model; "
                                    f"use os2d.eval.methods.build_method({method.name!r})")
        if settings.scores == "calibrated" and self.calibrator is None:
            raise InvalidInputError(f"model {self.config.description or '?'} has no calibration data "
                                    f"({CALIBRATION_FILE}); use raw scores (--scores raw)")
        return settings

    @property
    def calibrator(self) -> Optional[Calibrator]:
        background = self._shared.background
        return None if background is None else background.calibrator

    def raw_thresholds(self, bank: ClassBank):
        """The score threshold in raw units: a number, or ``Tensor[K]`` per entry for calibrated scores."""
        t = self.settings.score_threshold
        if self.settings.scores == "raw" or not math.isfinite(t):
            return t
        cal = self.calibrator
        stats = _calibration_stats(bank)
        return cal.raw_for(cal.z_for(t), stats)

    def candidate_thresholds(self, bank: ClassBank):
        """The raw threshold the methods keep candidates above: :meth:`raw_thresholds`, lowered with one
        label per object so that every rival that could win a contest against a detection above the
        threshold takes part in it.

        A contest ranks raw score + ``color_weight`` x colour similarity (in [0, 1]), so a rival can beat
        a box above the lowest per-entry threshold ``t`` only if its raw score exceeds ``t - color_weight``:
        that is the floor, for every entry. The reporting threshold is applied after the contests
        (:meth:`_post_steps`), so what a facing is labelled does not depend on the threshold shown."""
        t = self.raw_thresholds(bank)
        if not self.settings.one_label:
            return t
        weight = self.settings.color_weight if "colors" in bank.extras else 0.0
        low = float(t.min()) if isinstance(t, torch.Tensor) and t.numel() else float(t)
        return low - weight if math.isfinite(low) else low

    # ----------------------------------------------------------------- identity
    @property
    def method(self) -> Method:
        return get_method(self.settings.method)

    @property
    def model_identity(self) -> str:
        """Changes whenever the model's weights or architecture do (:func:`os2d.model.identity.model_identity`)."""
        return self._shared.identity

    @property
    def bank_key(self) -> BankKey:
        """What class features prepared by this detector depend on."""
        s = self.settings
        return BankKey(model_identity=self.model_identity, class_size=s.class_size, interpolation=s.interpolation,
                       augment=tuple(s.augment), trim=s.trim_class_images)

    def model_summary(self) -> dict:
        """JSON-ready description of the model (for catalogs, result files and the service)."""
        c = self.config
        return {"identity": self.model_identity, "description": c.description, "backbone": c.backbone,
                "variant": c.variant, "use_transform": c.use_transform}

    # ----------------------------------------------------------------- class images
    @torch.no_grad()
    def prepare_classes(self, classes: Union[ClassSpec, ClassBank]) -> ClassBank:
        """Compute class features once: ``{name: image or [images]}`` -> :class:`ClassBank`.

        A bank is returned as it is after checking that it was prepared for this detector.
        """
        if isinstance(classes, ClassBank):
            self.bank_key.check(classes.key)
            if self.method.needs_raw_features and classes.raw_features is None:
                raise InvalidInputError(f"method {self.method.name!r} needs class features prepared for it "
                                        f"(call prepare_classes with a {self.method.name} detector)")
            return classes
        backbone = self.model.backbone
        names, tensors, labels, colors = load_class_images(classes, key=self.bank_key, mean=backbone.pixel_mean,
                                                           std=backbone.pixel_std)
        return self.bank_from_tensors(names, tensors, labels, colors=colors)

    @torch.no_grad()
    def bank_from_tensors(self, names: List[str], tensors: List[torch.Tensor], labels: List[int], *,
                          colors: Optional[torch.Tensor] = None) -> ClassBank:
        """A class bank from preprocessed class images ``Tensor[3, h, w]`` (entry i has class ``labels[i]``);
        ``colors``: their colour signatures ``Tensor[K, D]`` (for telling variants apart)."""
        bank = bank_from_tensors(self.model, self._shared.backbone, names, tensors, labels, key=self.bank_key,
                                 keep_raw=self.method.needs_raw_features, device=self.device)
        if colors is not None:
            bank.extras["colors"] = colors
        if self._shared.background is not None:
            bank.extras["calibration"] = background_stats(self.model.head, bank.features, self._shared.background,
                                                          chunk=self.settings.class_batch)
        return bank

    # ----------------------------------------------------------------- scenes
    def scene(self, image: ImageLike, *, on_level: Optional[Callable[[int, int], None]] = None) -> Scene:
        """The scene's pyramid, with features computed on demand by the inference backbone."""
        pil = load_image(image, what="scene image")
        backbone = self.model.backbone
        return Scene(pil, self.settings, embed=self._embed_scene,
                     mean=backbone.pixel_mean, std=backbone.pixel_std, anchor=self.model.head.anchor_size,
                     device=self.device, stride=backbone.stride, on_level=on_level)

    def _embed_scene(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``Tensor[1, 3, Hi, Wi]`` -> float32 scene features ``Tensor[1, C, H, W]``,
        the backbone run in the method's scene dtype (bfloat16 autocast for fast mode where native)."""
        dtype = self.method.scene_dtype(self) if self.method.scene_dtype is not None else torch.float32
        with torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            raw = self._shared.backbone(pixels)
        return self.model.embed_scene(raw.float())

    @torch.no_grad()
    def detect(self, image: ImageLike, classes: Union[ClassSpec, ClassBank], *, image_name: Optional[str] = None,
               on_level: Optional[Callable[[int, int], None]] = None) -> Detections:
        """Detect every class in one scene image; boxes are in the original image's pixels.

        Args:
            image: path, PIL image or array.
            classes: a :class:`ClassBank` or a mapping ``{name: image or [images]}``.
            image_name: the name in the results (default: the file name, or ``"image_0"``).
            on_level: progress callback ``(levels done, levels)``.
        """
        bank = self.prepare_classes(classes)
        if image_name is None:
            image_name = Path(image).name if isinstance(image, (str, Path)) else "image_0"
        scene = self.scene(image, on_level=on_level)
        cands = self.method.candidates(self, scene, bank)
        done = finalize(cands, bank.entry_labels, self.settings, post=self._post_steps(bank, scene.image))
        c = done.cands
        return Detections(boxes=c.boxes, scores=c.scores, labels=done.labels, class_names=list(bank.names),
                          image_size=scene.size, image_name=image_name,
                          extra={"corners": c.corners, "anchors": c.anchors, "entries": c.entries, **done.extra})

    def _post_steps(self, bank: ClassBank, image) -> list:
        """Cross-class steps after the per-class NMS: calibration, one label per object."""
        steps = []
        if self.settings.scores == "calibrated":
            cal, stats = self.calibrator, _calibration_stats(bank)

            def calibrate(cands, labels, extra):
                raw = cands.scores
                cands = dataclasses.replace(cands, scores=cal(raw, stats[cands.entries]))
                order = torch.sort(cands.scores, descending=True, stable=True).indices
                extra = {k: v[order] for k, v in extra.items()}
                extra["raw_scores"] = raw[order]
                return cands.select(order), labels[order], extra

            steps.append(calibrate)
        if self.settings.one_label:
            iou = self.settings.one_label_iou

            weight = self.settings.color_weight if "colors" in bank.extras else 0.0
            threshold = self.raw_thresholds(bank)  # the contests ran down to candidate_thresholds

            def single(cands, labels, extra):
                # contests between classes on one box compare raw similarities (plus the colour check):
                # calibration offsets come from a few background tail cells per class, too noisy to
                # decide between two flavours of one product; the reported score stays calibrated
                judged = dataclasses.replace(cands, scores=extra["raw_scores"]) if "raw_scores" in extra else cands
                rank = rank_by_color(image, judged, labels, bank.extras.get("colors"), weight=weight, iou=iou)
                rank = judged.scores if rank is None else rank
                keep, runner_label, runner_score = one_label(cands, labels, iou=iou, rank=rank)
                keep, runner_label, runner_score = _above(keep, runner_label, runner_score, judged, threshold)
                extra = {k: v[keep] for k, v in extra.items()}
                extra.update(runner_up_label=runner_label, runner_up_score=runner_score)
                return cands.select(keep), labels[keep], extra

            steps.append(single)
        return steps

    def detect_many(self, images: Iterable[ImageLike], classes: Union[ClassSpec, ClassBank], *,
                    image_names: Optional[Sequence[str]] = None) -> List[Detections]:
        """:meth:`detect` over several scenes, computing the class features once.

        In-memory images are named ``image_<i>`` unless ``image_names`` are given.
        """
        bank = self.prepare_classes(classes)
        images = list(images)
        if image_names is not None and len(image_names) != len(images):
            raise InvalidInputError(f"{len(image_names)} image names for {len(images)} images")
        out = []
        for i, image in enumerate(images):
            name = image_names[i] if image_names is not None else (
                Path(image).name if isinstance(image, (str, Path)) else f"image_{i}")
            out.append(self.detect(image, bank, image_name=name))
        return out
