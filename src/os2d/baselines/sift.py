"""Classical SIFT + RANSAC-homography baseline with the same interface as the OS2D detector.

For every class image the detector matches SIFT descriptors of the scene to those of the class
image (k-NN with k=2 and Lowe's ratio test), fits a homography with RANSAC and, when enough
matches agree, reports one instance whose box is the bounding box of the projected class-image
corners. The instance's inlier matches and every match whose scene keypoint lies inside the
projected quadrilateral are then removed and the search repeats, so several instances of one class
can be found in one scene.

Matching runs from the scene to the class image (each scene keypoint looks for its two nearest
class keypoints). In this direction the ratio test is not confused by several copies of the object
in the scene, which would make a class keypoint's two nearest scene keypoints equally good.

Score of an instance with ``n`` RANSAC inliers: ``n / (n + score_scale)`` (``score_scale``
defaults to 20), a number in [0, 1) that grows strictly with ``n`` and does not saturate in
float32 for realistic counts; 8 inliers give 0.29, 20 give 0.5, 60 give 0.75, 500 give 0.96. It does
not depend on ``min_inliers``, so scores of detectors with different thresholds are comparable.

Usage::

    detector = SiftDetector()
    bank = detector.prepare_classes({"pepsi": "pepsi.jpg", "mini": ["mini_a.jpg", "mini_b.jpg"]})
    for path in scenes:
        dets = detector.detect(path, bank, image_name=path.name)
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms

from os2d.data.images import ImageLike, load_image
from os2d.errors import InvalidInputError, InvalidTypeError
from os2d.structures import Detections

logger = logging.getLogger(__name__)

#: Class images with a side shorter than this many pixels are refused.
MIN_CLASS_IMAGE_SIDE = 16


@dataclass
class SiftImageFeatures:
    """SIFT keypoints of one (possibly resized) grayscale image.

    Attributes:
        points: ``float32 [N, 2]`` keypoint positions (x, y) in pixels of the resized image.
        descriptors: ``float32 [N, 128]`` SIFT descriptors (``N`` may be 0).
        size: (width, height) of the resized image the keypoints live in.
        scale: resized size / original size (1.0 when not resized).
    """

    points: np.ndarray
    descriptors: np.ndarray
    size: Tuple[int, int]
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass
class SiftClassBank:
    """Precomputed SIFT features of the class images, reusable across scenes.

    Attributes:
        class_names: class names in label order (``Detections.labels`` index into it).
        features: ``features[k]`` is the list of per-image features of class ``k``
            (one entry per class image).
    """

    class_names: List[str]
    features: List[List[SiftImageFeatures]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.class_names)

    @property
    def names(self) -> List[str]:
        """The class names (the same attribute name as :class:`os2d.inference.bank.ClassBank`)."""
        return self.class_names

    def subset(self, names: Sequence[str]) -> "SiftClassBank":
        """A bank with only the named classes, in the given order."""
        index = {name: i for i, name in enumerate(self.class_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise InvalidInputError(f"classes not in the bank: {missing}; bank has {self.class_names}")
        return SiftClassBank(list(names), [self.features[index[n]] for n in names])


class SiftDetector:
    """SIFT + ratio test + RANSAC homography detector for one-shot detection.

    Args:
        ratio: Lowe ratio-test threshold (best / second-best descriptor distance).
        min_inliers: RANSAC inliers needed to accept an instance (>= 4).
        ransac_reproj_threshold: RANSAC reprojection threshold in pixels of the (resized) scene.
        max_instances: most instances reported per class image.
        max_side: the scene is downscaled so its longer side is at most this (boxes are mapped
            back to original pixels); ``None`` or 0 disables it.
        class_max_side: the same for class images (defaults to ``max_side``).
        nfeatures: keep at most this many SIFT keypoints per image (0 = all).
        contrast_threshold, edge_threshold: passed to ``cv2.SIFT_create``.
        matcher: ``"bf"`` (exact brute force, deterministic) or ``"flann"`` (approximate kd-trees).
        nms_iou: IoU threshold of the per-class NMS that merges instances found with different
            class images of the same class.
        score_scale: ``score = inliers / (inliers + score_scale)``.
        max_distortion: reject a homography whose projected quadrilateral changes the class
            image's aspect ratio, or the length ratio of opposite sides, by more than this factor.
        min_box_side: reject instances whose clipped box is narrower than this (original pixels).
        max_area_ratio: reject a projected quadrilateral larger than this fraction of the scene.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.75,
        min_inliers: int = 8,
        ransac_reproj_threshold: float = 5.0,
        max_instances: int = 10,
        max_side: Optional[int] = 1280,
        class_max_side: Optional[int] = None,
        nfeatures: int = 0,
        contrast_threshold: float = 0.04,
        edge_threshold: float = 10.0,
        matcher: str = "bf",
        nms_iou: float = 0.3,
        score_scale: float = 20.0,
        max_distortion: float = 4.0,
        min_box_side: float = 4.0,
        max_area_ratio: float = 1.0,
    ) -> None:
        if not 0.0 < ratio <= 1.0:
            raise InvalidInputError(f"ratio must be in (0, 1], got {ratio}")
        if int(min_inliers) < 4:
            raise InvalidInputError(f"min_inliers must be >= 4 (a homography needs 4 points), got {min_inliers}")
        if ransac_reproj_threshold <= 0:
            raise InvalidInputError(f"ransac_reproj_threshold must be > 0, got {ransac_reproj_threshold}")
        if int(max_instances) < 1:
            raise InvalidInputError(f"max_instances must be >= 1, got {max_instances}")
        for name, value in (("max_side", max_side), ("class_max_side", class_max_side)):
            if value is not None and value != 0 and value < MIN_CLASS_IMAGE_SIDE:
                raise InvalidInputError(f"{name} must be >= {MIN_CLASS_IMAGE_SIDE} or None, got {value}")
        if nfeatures < 0:
            raise InvalidInputError(f"nfeatures must be >= 0, got {nfeatures}")
        if matcher not in ("bf", "flann"):
            raise InvalidInputError(f"matcher must be 'bf' or 'flann', got {matcher!r}")
        if score_scale <= 0:
            raise InvalidInputError(f"score_scale must be > 0, got {score_scale}")
        if max_distortion < 1:
            raise InvalidInputError(f"max_distortion must be >= 1, got {max_distortion}")
        self.ratio = float(ratio)
        self.min_inliers = int(min_inliers)
        self.ransac_reproj_threshold = float(ransac_reproj_threshold)
        self.max_instances = int(max_instances)
        self.max_side = int(max_side) if max_side else None
        self.class_max_side = int(class_max_side) if class_max_side else self.max_side
        self.nfeatures = int(nfeatures)
        self.contrast_threshold = float(contrast_threshold)
        self.edge_threshold = float(edge_threshold)
        self.matcher = matcher
        self.nms_iou = float(nms_iou)
        self.score_scale = float(score_scale)
        self.max_distortion = float(max_distortion)
        self.min_box_side = float(min_box_side)
        self.max_area_ratio = float(max_area_ratio)
        self._sift = cv2.SIFT_create(
            nfeatures=self.nfeatures,
            contrastThreshold=self.contrast_threshold,
            edgeThreshold=self.edge_threshold,
        )

    # ------------------------------------------------------------------ features
    def extract(self, image: Union[ImageLike, Image.Image], *, max_side: Optional[int],
                what: str = "image") -> SiftImageFeatures:
        """SIFT features of ``image`` (grayscale, downscaled so its longer side <= ``max_side``)."""
        pil = load_image(image, what=what)
        gray = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        scale = 1.0
        if max_side and max(width, height) > max_side:
            scale = max_side / float(max(width, height))
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            gray = cv2.resize(gray, new_size, interpolation=cv2.INTER_AREA)
        keypoints, descriptors = self._sift.detectAndCompute(gray, None)
        if descriptors is None or len(keypoints) == 0:
            points = np.zeros((0, 2), np.float32)
            descriptors = np.zeros((0, 128), np.float32)
        else:
            points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
            descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        return SiftImageFeatures(points, descriptors, (gray.shape[1], gray.shape[0]), scale)

    def prepare_classes(
        self, classes: Mapping[str, Union[ImageLike, Sequence[ImageLike]]]
    ) -> SiftClassBank:
        """Compute SIFT features of every class image once.

        Args:
            classes: class name -> one image (path, PIL image or array) or a list of images.

        Raises:
            ValueError: no classes, a class without images, or a class image with a side
                shorter than 16 pixels (the message names the class).
        """
        if isinstance(classes, SiftClassBank):
            return classes
        if not isinstance(classes, Mapping):
            raise InvalidTypeError(f"classes: expected a mapping name -> image(s), got {type(classes).__name__}")
        if len(classes) == 0:
            raise InvalidInputError("classes: no classes given")
        names: List[str] = []
        features: List[List[SiftImageFeatures]] = []
        for name, images in classes.items():
            if _is_single_image(images):
                images = [images]
            images = list(images)
            if not images:
                raise InvalidInputError(f"class {name!r}: no class images given")
            per_class = []
            for i, image in enumerate(images):
                what = f"class image {i} of class {name!r}"
                pil = load_image(image, what=what)
                if min(pil.size) < MIN_CLASS_IMAGE_SIDE:
                    raise InvalidInputError(
                        f"class {name!r}: class image {i} is too small ({pil.width}x{pil.height}); "
                        f"both sides must be at least {MIN_CLASS_IMAGE_SIDE} pixels"
                    )
                feats = self.extract(pil, max_side=self.class_max_side, what=what)
                if len(feats) < 2:
                    logger.warning("class %r: class image %d has %d SIFT keypoints; it will never match",
                                   name, i, len(feats))
                per_class.append(feats)
            names.append(str(name))
            features.append(per_class)
        return SiftClassBank(names, features)

    # ------------------------------------------------------------------ detection
    def detect(
        self,
        image: ImageLike,
        classes_or_bank: Union[SiftClassBank, Mapping[str, Union[ImageLike, Sequence[ImageLike]]]],
        *,
        image_name: str = "",
    ) -> Detections:
        """Detect all instances of all classes in one scene.

        Args:
            image: the scene (path, PIL image or array).
            classes_or_bank: a :class:`SiftClassBank` from :meth:`prepare_classes`, or the mapping
                to build one from.
            image_name: stored in the result (used in JSON output); defaults to the file name
                when ``image`` is a path.

        Returns:
            ``Detections`` sorted by decreasing score, boxes xyxy in original scene pixels;
            ``extra["inliers"]`` holds the RANSAC inlier count of each detection.
        """
        bank = self.prepare_classes(classes_or_bank)
        if not image_name and isinstance(image, (str, os.PathLike)):
            image_name = Path(image).name
        pil = load_image(image, what="scene image")
        image_size = (pil.width, pil.height)
        scene = self.extract(pil, max_side=self.max_side, what="scene image")

        all_boxes, all_scores, all_labels, all_inliers = [], [], [], []
        for label, class_features in enumerate(bank.features):
            for feats in class_features:
                for box, inliers in self._detect_one(scene, feats):
                    all_boxes.append(box)
                    all_scores.append(inliers / (inliers + self.score_scale))
                    all_labels.append(label)
                    all_inliers.append(inliers)
        if not all_boxes:
            return Detections.empty(bank.class_names, image_size, image_name)

        boxes = torch.tensor(np.array(all_boxes), dtype=torch.float32) / scene.scale  # [N, 4]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[0])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[1])
        scores = torch.tensor(all_scores, dtype=torch.float32)
        labels = torch.tensor(all_labels, dtype=torch.int64)
        inliers = torch.tensor(all_inliers, dtype=torch.int64)
        keep = batched_nms(boxes, scores, labels, self.nms_iou)  # sorted by decreasing score
        return Detections(boxes[keep], scores[keep], labels[keep], bank.class_names, image_size,
                          image_name, {"inliers": inliers[keep]})

    def _match(self, scene: SiftImageFeatures, cls: SiftImageFeatures) -> Tuple[np.ndarray, np.ndarray]:
        """Ratio-test matches scene -> class: (scene points [M, 2], class points [M, 2])."""
        empty = (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
        if len(scene) < 1 or len(cls) < 2:
            return empty
        if self.matcher == "flann":
            index_params = dict(algorithm=1, trees=4)  # FLANN_INDEX_KDTREE
            matcher = cv2.FlannBasedMatcher(index_params, dict(checks=64))
        else:
            matcher = cv2.BFMatcher(cv2.NORM_L2)
        knn = matcher.knnMatch(scene.descriptors, cls.descriptors, k=2)
        scene_idx, class_idx = [], []
        for pair in knn:
            if len(pair) == 2 and pair[0].distance < self.ratio * pair[1].distance:
                scene_idx.append(pair[0].queryIdx)
                class_idx.append(pair[0].trainIdx)
        if not scene_idx:
            return empty
        pts_scene = scene.points[scene_idx]
        pts_class = cls.points[class_idx]
        # SIFT repeats a keypoint once per dominant orientation; identical correspondences would
        # count twice as inliers, so keep one of each (positions rounded to 0.1 px).
        key = np.round(np.concatenate([pts_scene, pts_class], axis=1) * 10).astype(np.int64)
        _, first = np.unique(key, axis=0, return_index=True)
        first.sort()
        return pts_scene[first], pts_class[first]

    def _detect_one(self, scene: SiftImageFeatures, cls: SiftImageFeatures) -> List[Tuple[np.ndarray, int]]:
        """Instances of one class image in the (resized) scene: [(box xyxy in resized px, inliers)]."""
        pts_scene, pts_class = self._match(scene, cls)
        found: List[Tuple[np.ndarray, int]] = []
        cw, ch = cls.size
        corners = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], dtype=np.float64)
        scene_w, scene_h = scene.size
        attempts = 0
        while len(found) < self.max_instances and len(pts_scene) >= self.min_inliers:
            attempts += 1
            if attempts > 2 * self.max_instances + 2:
                break
            H, mask = cv2.findHomography(pts_class, pts_scene, cv2.RANSAC, self.ransac_reproj_threshold,
                                         maxIters=2000, confidence=0.995)
            if H is None or mask is None:
                break
            inlier = mask.ravel().astype(bool)
            n_inliers = int(inlier.sum())
            if n_inliers < self.min_inliers:
                break
            quad = _project(H, corners)
            reason = None if quad is not None else "points behind the camera"
            if reason is None:
                reason = self._degenerate(quad, cw, ch, scene_w, scene_h, scene.scale)
            remove = inlier.copy()
            if reason is None:
                x1, y1 = quad.min(axis=0)
                x2, y2 = quad.max(axis=0)
                box = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, scene_w), min(y2, scene_h)])
                found.append((box, n_inliers))
                remove |= _inside_convex(pts_scene, quad)
            else:
                logger.debug("rejected homography with %d inliers: %s", n_inliers, reason)
            pts_scene, pts_class = pts_scene[~remove], pts_class[~remove]
        return found

    def _degenerate(self, quad: np.ndarray, cw: int, ch: int, scene_w: int, scene_h: int,
                    scene_scale: float) -> Optional[str]:
        """Why the projected quadrilateral ``quad`` [4, 2] is implausible, or None when it is fine."""
        if not np.isfinite(quad).all():
            return "non-finite corners"
        edges = np.roll(quad, -1, axis=0) - quad  # [4, 2]
        nxt = np.roll(edges, -1, axis=0)
        cross = edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]
        # The class-image corners run clockwise on screen (y down): all turns must be positive,
        # otherwise the quadrilateral is self-intersecting, concave or mirrored.
        if not (cross > 0).all():
            return "non-convex or mirrored quadrilateral"
        area = 0.5 * abs(float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1])))
        if area > self.max_area_ratio * scene_w * scene_h:
            return f"area {area:.0f} larger than the scene"
        lengths = np.linalg.norm(edges, axis=1)  # top, right, bottom, left
        if lengths.min() <= 1e-6:
            return "collapsed side"
        d = self.max_distortion
        if max(lengths[0] / lengths[2], lengths[2] / lengths[0], lengths[1] / lengths[3], lengths[3] / lengths[1]) > d:
            return "extreme perspective"
        aspect = ((lengths[0] + lengths[2]) / (lengths[1] + lengths[3])) / (cw / ch)
        if not 1.0 / d <= aspect <= d:
            return f"aspect ratio distorted by {aspect:.2f}"
        x1, y1 = np.maximum(quad.min(axis=0), 0.0)
        x2, y2 = quad.max(axis=0)
        x2, y2 = min(x2, scene_w), min(y2, scene_h)
        # ``min_box_side`` is in original pixels, the quadrilateral in resized ones.
        if min(x2 - x1, y2 - y1) < self.min_box_side * scene_scale:
            return "box (almost) outside the scene or tiny"
        return None


def _is_single_image(value) -> bool:
    return isinstance(value, (str, Image.Image, np.ndarray)) or hasattr(value, "__fspath__")


def _project(H: np.ndarray, points: np.ndarray) -> Optional[np.ndarray]:
    """Apply homography ``H`` to ``points`` [N, 2]; None when a point maps to or behind infinity."""
    homog = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ H.T  # [N, 3]
    w = homog[:, 2]
    if not np.isfinite(homog).all() or (w <= 1e-9).any():
        return None
    return homog[:, :2] / w[:, None]


def _inside_convex(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Boolean [N]: which ``points`` [N, 2] lie inside the clockwise (y down) convex ``quad``."""
    inside = np.ones(len(points), dtype=bool)
    for a, b in zip(quad, np.roll(quad, -1, axis=0)):
        cross = (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0])
        inside &= cross >= 0
    return inside
