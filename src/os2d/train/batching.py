"""Training batches (paper, section 4 and appendix B.2): random scale/crop patches + class batches.

For each scene of a batch a random scale and location are chosen and a fixed-size square patch
is resampled: a random non-difficult GT box is picked, the scale is chosen so that its size
``sqrt(w*h)`` lands in ``anchor_size * object_scale`` (log-uniform), and the patch is a random
crop that contains that box. Boxes are mapped to the patch, clipped, and dropped (coverage below
``remove_coverage``) or marked difficult (below ``keep_coverage``) when truncated. The class batch
is the classes annotated (non-difficult) in the batch, then *hard negatives* -- for each of them,
its most similar other classes of the same dataset (``classes/similar_classes.json``, see
:mod:`os2d.train.similar_classes`; e.g. flavour variants of the same brand) -- then random
negative classes, up to ``class_batch``.

Everything random comes from ``np.random.default_rng([seed, iteration])``: batch ``i`` depends
only on the seed, ``i`` and the hard-patch pool (when hard patch mining is on).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from os2d.data.datasets.base import Dataset, SceneRecord
from os2d.data.images import load_image
from os2d.data.preprocess import check_class_image_size, resize, size_by_area, to_tensor
from os2d.errors import InvalidInputError
from os2d.train.config import BatchSection
from os2d.train.similar_classes import find_similar_classes

ClassKey = Tuple[int, str]  # (dataset index, class name)

#: Hard negatives per positive class (from the dataset's similar classes) in a class batch.
HARD_NEGATIVES_PER_POSITIVE = 2


@dataclass(frozen=True)
class PatchSpec:
    """Everything needed to re-create a patch: scene, resize factor, top-left corner.

    The scene is resized by ``scale`` (both axes) and the patch is the ``P x P`` window whose
    top-left corner is ``(x0, y0)`` in resized pixels (it may stick out of the scene: padding).
    """

    dataset: int
    image: int
    scale: float
    x0: int
    y0: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Patch:
    """A resampled patch: ``image`` normalised ``Tensor[3, P, P]``; boxes ``[G, 4]`` patch pixels."""

    image: torch.Tensor
    boxes: np.ndarray
    labels: List[str]
    difficult: np.ndarray
    spec: PatchSpec


@dataclass
class TrainBatch:
    """One training batch.

    Attributes:
        images: ``Tensor[B, 3, P, P]`` normalised patches.
        class_keys: the K classes of the class batch, ``(dataset index, class name)``.
        class_images: K normalised class images ``Tensor[3, h, w]`` (area rule).
        class_image_ids: K ids ``(dataset index, class name, image index)`` of those images.
        gt_boxes / gt_labels / gt_difficult: per patch ``Tensor[G, 4]`` (patch pixels),
            ``Tensor[G]`` long (index into ``class_keys``), ``Tensor[G]`` bool.
        specs: the B patch specs; num_positive_classes: classes with a non-difficult box.
    """

    images: torch.Tensor
    class_keys: List[ClassKey]
    class_images: List[torch.Tensor]
    class_image_ids: List[Tuple[int, str, int]]
    gt_boxes: List[torch.Tensor]
    gt_labels: List[torch.Tensor]
    gt_difficult: List[torch.Tensor]
    specs: List[PatchSpec]
    num_positive_classes: int


# ---------------------------------------------------------------------------------------- geometry
def choose_scale(box_size: float, rng: np.random.Generator, *, anchor_size: float,
                 object_scale: Sequence[float], min_scale: float, max_upscale: float) -> float:
    """Resize factor putting an object of size ``box_size`` at ``anchor_size * U_log(lo, hi)``."""
    lo, hi = object_scale
    target = anchor_size * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(min(max(target / max(box_size, 1e-6), min_scale), max_upscale))


def choose_offset(b1: float, b2: float, extent: float, patch: int, rng: np.random.Generator) -> int:
    """Patch start along one axis: the patch ``[x0, x0+P]`` contains ``[b1, b2]`` and stays in
    ``[0, extent]`` when both are possible; a box larger than the patch gets a window inside it."""
    lo_box, hi_box = b2 - patch, b1
    lo_img, hi_img = min(0.0, extent - patch), max(0.0, extent - patch)
    lo, hi = max(lo_box, lo_img), min(hi_box, hi_img)
    if lo > hi:
        lo, hi = sorted((lo_box, hi_box))
    return int(math.floor(rng.uniform(lo, hi))) if hi > lo else int(math.floor(lo))


def crop_boxes(boxes: np.ndarray, difficult: np.ndarray, spec: PatchSpec, patch: int, *,
               keep_coverage: float, remove_coverage: float, min_box_side: float
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map scene boxes ``[N, 4]`` into a patch; returns (kept indices, clipped boxes, difficult).

    ``box' = box * scale - (x0, y0)``, clipped to ``[0, P]``. Coverage = clipped area / area:
    ``< remove_coverage`` or a clipped side ``< min_box_side`` -> dropped; ``< keep_coverage`` ->
    difficult; else the annotated flag is kept.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4)), np.zeros(0, dtype=bool)
    shift = np.array([spec.x0, spec.y0, spec.x0, spec.y0], dtype=np.float64)
    mapped = boxes.astype(np.float64) * spec.scale - shift
    clipped = mapped.clip(0.0, float(patch))
    area = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    coverage = np.where(area > 0, cw * ch / np.maximum(area, 1e-12), 0.0)
    keep = (coverage >= remove_coverage) & (cw >= min_box_side) & (ch >= min_box_side)
    diff = difficult.astype(bool) | (coverage < keep_coverage)
    idx = np.flatnonzero(keep)
    return idx, clipped[idx], diff[idx]


def render_patch(pil: Image.Image, spec: PatchSpec, patch: int, fill: Tuple[int, int, int]) -> Image.Image:
    """The ``P x P`` patch of ``pil`` resized by ``spec.scale`` (bilinear, antialiased), padded with ``fill``."""
    canvas = Image.new("RGB", (patch, patch), fill)
    s = spec.scale
    ox, oy = max(0, -spec.x0), max(0, -spec.y0)
    out_w = min(patch - ox, int(math.floor(pil.width * s - (spec.x0 + ox) + 1e-6)))
    out_h = min(patch - oy, int(math.floor(pil.height * s - (spec.y0 + oy) + 1e-6)))
    if out_w <= 0 or out_h <= 0:
        return canvas
    left, top = (spec.x0 + ox) / s, (spec.y0 + oy) / s
    box = (left, top, min(left + out_w / s, pil.width), min(top + out_h / s, pil.height))
    canvas.paste(pil.resize((out_w, out_h), resample=Image.BILINEAR, box=box), (ox, oy))
    return canvas


# ---------------------------------------------------------------------------------------- sampler
class HardPatchPool:
    """The ``size`` highest-loss patch specs seen so far; a taken spec leaves the pool."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: List[Tuple[float, PatchSpec]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, specs: Sequence[PatchSpec], losses: Sequence[float]) -> None:
        for spec, loss in zip(specs, losses):
            if math.isfinite(loss):
                self.items.append((float(loss), spec))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.size:]

    def take(self, rng: np.random.Generator) -> PatchSpec:
        return self.items.pop(int(rng.integers(len(self.items))))[1]

    def state_dict(self) -> dict:
        return {"size": self.size, "items": [[loss, spec.to_dict()] for loss, spec in self.items]}

    def load_state_dict(self, state: dict) -> None:
        self.size = int(state["size"])
        self.items = [(float(loss), PatchSpec(**spec)) for loss, spec in state["items"]]


class BatchSampler:
    """Builds :class:`TrainBatch` number ``i`` from ``default_rng([seed, i])``.

    Args:
        datasets: training datasets; weights: relative probability of drawing a patch from each.
        config: the ``batch`` section of the training config.
        anchor_size: anchor side in network pixels (``model.head.anchor_size``).
        pixel_mean, pixel_std: the backbone's normalisation (patches are padded with the mean).
        similar_classes: per dataset, class -> most similar other classes (default: each
            dataset's ``similar_classes.json``, none when absent).
        hard_negatives: how many of a positive class's similar classes join the class batch.
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], config: BatchSection, *,
                 anchor_size: float, pixel_mean: Sequence[float], pixel_std: Sequence[float], seed: int = 0,
                 similar_classes: Optional[Sequence[Dict[str, List[str]]]] = None,
                 hard_negatives: int = HARD_NEGATIVES_PER_POSITIVE) -> None:
        if not datasets:
            raise InvalidInputError("no training datasets given")
        if len(weights) != len(datasets) or any(w <= 0 for w in weights):
            raise InvalidInputError(f"need one positive weight per dataset, got {list(weights)}")
        self.datasets = list(datasets)
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.config = config
        self.anchor_size = float(anchor_size)
        self.mean, self.std = tuple(pixel_mean), tuple(pixel_std)
        self.fill = tuple(int(round(255 * m)) for m in self.mean)
        self.seed = int(seed)
        self.pool = HardPatchPool(config.hard_pool_size) if config.hard_patch_mining else None
        self._class_cache: Dict[Tuple[int, str, int], torch.Tensor] = {}
        self.classes: List[List[str]] = [list(ds.class_names) for ds in self.datasets]
        if similar_classes is None:
            similar_classes = [find_similar_classes(ds.class_images) for ds in self.datasets]
        if len(similar_classes) != len(self.datasets):
            raise InvalidInputError(f"need one similar-classes mapping per dataset, got {len(similar_classes)} "
                                    f"for {len(self.datasets)} datasets")
        if hard_negatives < 0:
            raise InvalidInputError(f"hard_negatives must be >= 0, got {hard_negatives}")
        self.similar = [dict(m) for m in similar_classes]
        self.hard_negatives = int(hard_negatives)

    # ------------------------------------------------------------------ patches
    def sample_spec(self, rng: np.random.Generator) -> PatchSpec:
        """A random patch: dataset by weight, scene uniformly, then box, scale and crop."""
        c = self.config
        d = int(rng.choice(len(self.datasets), p=self.weights))
        i = int(rng.integers(len(self.datasets[d].images)))
        rec = self.datasets[d].images[i]
        width, height = self._size(rec)
        candidates = np.flatnonzero(~rec.difficult)
        if candidates.size:
            box = rec.boxes[int(candidates[rng.integers(candidates.size)])]
            size = math.sqrt(max(box[2] - box[0], 1e-6) * max(box[3] - box[1], 1e-6))
            scale = choose_scale(size, rng, anchor_size=self.anchor_size, object_scale=c.object_scale,
                                 min_scale=c.min_scale, max_upscale=c.max_upscale)
        else:  # no usable object: a random scene crop (negatives only)
            box = np.array([0.0, 0.0, width, height])
            scale = float(min(max(c.patch_size / max(width, height) * math.exp(rng.uniform(0, math.log(2))),
                                  c.min_scale), c.max_upscale))
        b = box * scale
        x0 = choose_offset(b[0], b[2], width * scale, c.patch_size, rng)
        y0 = choose_offset(b[1], b[3], height * scale, c.patch_size, rng)
        return PatchSpec(dataset=d, image=i, scale=scale, x0=x0, y0=y0)

    @staticmethod
    def _size(rec: SceneRecord) -> Tuple[int, int]:
        if rec.size is None:
            with Image.open(rec.path) as img:
                rec.size = (img.width, img.height)
        return rec.size

    def make_patch(self, spec: PatchSpec) -> Patch:
        """Render a patch and map its boxes (deterministic given ``spec``)."""
        c = self.config
        rec = self.datasets[spec.dataset].images[spec.image]
        pil = load_image(rec.path, what="scene image")
        if rec.size is not None and pil.size != tuple(rec.size):
            raise InvalidInputError(f"scene {rec.path} is {pil.size} after loading but its annotations assume "
                             f"{tuple(rec.size)} (EXIF rotation?)")
        image = render_patch(pil, spec, c.patch_size, self.fill)
        idx, boxes, difficult = crop_boxes(rec.boxes, rec.difficult, spec, c.patch_size,
                                           keep_coverage=c.keep_coverage, remove_coverage=c.remove_coverage,
                                           min_box_side=c.min_box_side)
        return Patch(image=to_tensor(image, mean=self.mean, std=self.std), boxes=boxes,
                     labels=[rec.labels[j] for j in idx], difficult=difficult, spec=spec)

    # ------------------------------------------------------------------ classes
    def class_image(self, key: ClassKey, rng: Optional[np.random.Generator] = None
                    ) -> Tuple[Tuple[int, str, int], torch.Tensor]:
        """(image id, normalised class image resized so that ``h*w ~= class_size^2``), cached.

        A class with several class images gets a random one (``rng``); the id
        ``(dataset, class name, image index)`` identifies the image for feature caches.
        """
        files = self.datasets[key[0]].class_images[key[1]]
        j = int(rng.integers(len(files))) if (rng is not None and len(files) > 1) else 0
        cache_key = (key[0], key[1], j)
        if cache_key not in self._class_cache:
            pil = load_image(files[j], what=f"class image for {key[1]!r}")
            check_class_image_size(pil, name=key[1])
            pil = resize(pil, size_by_area(pil.width, pil.height, self.config.class_size), interpolation="bilinear")
            self._class_cache[cache_key] = to_tensor(pil, mean=self.mean, std=self.std)
        return cache_key, self._class_cache[cache_key]

    def hard_negative_keys(self, positives: Sequence[ClassKey], room: int) -> List[ClassKey]:
        """Up to ``room`` similar classes of the positives, round-robin: the most similar class of
        every positive first, then the second ones, ... (``hard_negatives`` ranks; no rng)."""
        chosen: List[ClassKey] = []
        taken = set(positives)
        for rank in range(self.hard_negatives):
            for d, name in positives:
                similar = self.similar[d].get(name, [])
                if rank < len(similar) and len(chosen) < room and (d, similar[rank]) not in taken:
                    chosen.append((d, similar[rank]))
                    taken.add((d, similar[rank]))
        return chosen

    def choose_classes(self, patches: Sequence[Patch], rng: np.random.Generator) -> Tuple[List[ClassKey], int]:
        """Annotated (non-difficult) classes of the batch, their hard negatives, then random
        negatives up to ``class_batch``. Returns (class keys, number of positive classes)."""
        limit = self.config.class_batch
        positives: List[ClassKey] = []
        for p in patches:
            for label, diff in zip(p.labels, p.difficult):
                key = (p.spec.dataset, label)
                if not diff and key not in positives:
                    positives.append(key)
        if len(positives) > limit:
            keep = np.sort(rng.choice(len(positives), size=limit, replace=False))
            positives = [positives[i] for i in keep]
        hard = self.hard_negative_keys(positives, limit - len(positives))
        chosen = set(positives) | set(hard)
        used = sorted({p.spec.dataset for p in patches})
        pool = [(d, name) for d in used for name in self.classes[d] if (d, name) not in chosen]
        need = min(limit - len(chosen), len(pool))
        negatives = [pool[i] for i in rng.choice(len(pool), size=need, replace=False)] if need > 0 else []
        return positives + hard + negatives, len(positives)

    # ------------------------------------------------------------------ batches
    def batch(self, iteration: int) -> TrainBatch:
        """Batch number ``iteration`` (uses and updates the hard-patch pool when enabled)."""
        rng = np.random.default_rng([self.seed, int(iteration)])
        specs = []
        for _ in range(self.config.batch_size):
            use_pool = self.pool is not None and len(self.pool) > 0 and rng.random() < self.config.hard_prob
            specs.append(self.pool.take(rng) if use_pool else self.sample_spec(rng))
        return self.batch_from_specs(specs, rng)

    def batch_from_specs(self, specs: Sequence[PatchSpec], rng: np.random.Generator) -> TrainBatch:
        patches = [self.make_patch(s) for s in specs]
        keys, num_pos = self.choose_classes(patches, rng)
        index = {k: i for i, k in enumerate(keys)}
        gt_boxes, gt_labels, gt_difficult = [], [], []
        for p in patches:
            sel = [j for j, lab in enumerate(p.labels) if (p.spec.dataset, lab) in index]
            gt_boxes.append(torch.as_tensor(p.boxes[sel].reshape(-1, 4), dtype=torch.float32))
            gt_labels.append(torch.tensor([index[(p.spec.dataset, p.labels[j])] for j in sel], dtype=torch.long))
            gt_difficult.append(torch.as_tensor(p.difficult[sel].astype(bool)))
        entries = [self.class_image(k, rng) for k in keys]
        return TrainBatch(
            images=torch.stack([p.image for p in patches], 0),  # [B, 3, P, P]
            class_keys=keys, class_images=[e[1] for e in entries], class_image_ids=[e[0] for e in entries],
            gt_boxes=gt_boxes, gt_labels=gt_labels, gt_difficult=gt_difficult,
            specs=list(specs), num_positive_classes=num_pos,
        )

    def record_losses(self, specs: Sequence[PatchSpec], losses: Sequence[float]) -> None:
        """Offer per-patch losses to the hard-patch pool (no-op when mining is off)."""
        if self.pool is not None:
            self.pool.add(specs, losses)
