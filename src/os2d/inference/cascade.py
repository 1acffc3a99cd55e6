"""Fast mode: a cascade whose last stage is the exact OS2D head.

1. **Shortlist** (per scene): at one *probe* level (the level whose longer side is nearest to
   ``cascade.probe_side``), the scene features are average-pooled over square windows of several
   sizes, and each class entry's global descriptor (the normalised mean of its feature map) is
   compared with every window. A class's score is its best cosine; the ``cascade.shortlist`` best
   classes (plus any within ``cascade.shortlist_margin`` of the best) go on, each with its
   ``cascade.regions`` best windows (after an NMS between windows).
2. **Where to look**: the size of a window estimates the object's scale. For each window, the
   ``cascade.max_levels`` pyramid levels where such an object is nearest to the anchor size are
   searched, and only around the window (``cascade.crop_margin`` feature cells beyond it; the
   backbone runs on that part of the level only, unless the parts cover most of the level).
   ``max_levels = 0`` searches every level in full (only the shortlist and the candidates cut).
3. **Identity score** in those regions: the OS2D score with the identity transform -- a plain
   correlation with the class feature map, pooled on the fixed grid, no TransformNet. Its
   ``cascade.candidates`` best locations per entry and level (after an NMS of IoU
   ``cascade.candidate_nms`` between their anchors) go on.
4. **Exact head** in windows: TransformNet and the resampled, pooled score at every location within
   ``cascade.radius`` of each candidate, exactly as in exact mode (TransformNet's receptive field
   is 15 x 15 correlation cells, so a window gives the dense output at its centre).

Every cut-off is a field of :class:`os2d.inference.settings.CascadeSettings` (docs/speed.md). With no
cut-off (``shortlist=0``, ``max_levels=0``, ``candidate_nms=1``, enough candidates, ``radius=0``)
the result equals exact mode. Memory: the features of the shortlisted classes and one level's
correlation maps, whatever the catalog size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, level_candidates, reduce_per_class
from os2d.inference.scene import Scene
from os2d.inference.settings import CascadeSettings
from os2d.model.transform_net import RECEPTIVE_HALF
from os2d.ops.boxes import anchor_boxes, nms_per_class
from os2d.ops.features import l2_normalize

#: Window sides (feature cells at the probe level) of the shortlist's region descriptors.
WINDOWS = (2, 3, 4, 6, 8, 11, 15, 20)
#: When the searched parts of a level cover more than this fraction of it, the whole level is computed.
FULL_LEVEL_FRACTION = 0.6


@dataclass
class Hits:
    """Stage 1: the probe windows kept, one row each."""

    entries: torch.Tensor  # [n] int64 class-bank entry
    scores: torch.Tensor  # [n] cosine of the entry's descriptor with the window's mean feature
    boxes: torch.Tensor  # [n, 4] window (row0, col0, row1, col1), probe cells


def probe_level(scene: Scene, probe_side: int) -> int:
    """Index of the level whose longer side is nearest (in log scale) to ``probe_side``."""
    sides = [max(level.size) for level in scene.levels]
    return min(range(len(sides)), key=lambda i: abs(math.log(sides[i] / probe_side)))


def window_scores(fm: torch.Tensor, descriptors: torch.Tensor):
    """For each window size: ``(kh, kw, Tensor[K, H', W'])`` cosines of every entry with every window."""
    _, c, height, width = fm.shape
    out = []
    for w in WINDOWS:
        kh, kw = min(w, height), min(w, width)
        pooled = l2_normalize(F.avg_pool2d(fm, (kh, kw), stride=1)[0], dim=0, eps=1e-12)
        # [C, H', W']
        out.append((kh, kw, torch.einsum("kc,chw->khw", descriptors, pooled)))
        if w >= max(height, width):
            break
    return out


def probe_hits(fm: torch.Tensor, bank: ClassBank, cfg: CascadeSettings) -> Hits:
    """Stage 1 on probe features ``Tensor[1, C, H, W]``: the shortlisted entries' best windows."""
    desc = bank.extras["descriptors"].to(fm.dtype)
    per = max(cfg.regions, 1) * 4  # windows per entry and size before the NMS between windows
    entry, score, box = [], [], []
    for kh, kw, cos in window_scores(fm, desc):
        k, hh, ww = cos.shape
        top = min(per, hh * ww)
        values, flat = cos.reshape(k, -1).topk(top, dim=1)
        rows, cols = flat // ww, flat % ww
        entry.append(torch.arange(k).repeat_interleave(top))
        score.append(values.reshape(-1))
        box.append(torch.stack([rows, cols, rows + kh, cols + kw], -1).reshape(-1, 4).float())
    entry, score, box = torch.cat(entry), torch.cat(score), torch.cat(box)
    classes = _shortlisted(bank, entry, score, cfg)
    keep = nms_per_class(box[:, [1, 0, 3, 2]], score, entry, iou=0.3)
    keep = keep[torch.isin(bank.entry_labels[entry[keep]], classes)]
    chosen, taken = [], {}
    for i in keep.tolist():
        e = int(entry[i])
        if taken.get(e, 0) < max(cfg.regions, 1):
            taken[e] = taken.get(e, 0) + 1
            chosen.append(i)
    idx = torch.tensor(chosen, dtype=torch.int64)
    return Hits(entries=entry[idx], scores=score[idx], boxes=box[idx])


def _shortlisted(bank: ClassBank, entry: torch.Tensor, score: torch.Tensor, cfg: CascadeSettings) -> torch.Tensor:
    """Labels of the classes kept by the shortlist."""
    labels = bank.entry_labels[entry]
    best = torch.full((len(bank),), -2.0).scatter_reduce(0, labels, score, reduce="amax")
    order = torch.argsort(best, descending=True, stable=True)
    keep = len(bank) if cfg.shortlist == 0 else min(cfg.shortlist, len(bank))
    chosen = order[:keep]
    if cfg.shortlist_margin > 0:
        chosen = order[(torch.arange(len(bank)) < keep) | (best[order] >= best[order[0]] - cfg.shortlist_margin)]
    return chosen


def search_plan(scene: Scene, probe: int, hits: Hits, cfg: CascadeSettings, grid: int) -> Dict[int, Dict]:
    """``{level: {"box": (r0, c0, r1, c1) cells, "entries": {entry: [region boxes in level cells]}}}``."""
    plan: Dict[int, Dict] = {}
    probe_rows, probe_cols = scene.level_cells(probe)
    for e, box in zip(hits.entries.tolist(), hits.boxes.tolist()):
        side = max(box[2] - box[0], box[3] - box[1])
        for level in _levels_for(scene, probe, side, cfg.max_levels, grid):
            rows, cols = scene.level_cells(level)
            fy, fx = rows / probe_rows, cols / probe_cols
            region = (box[0] * fy, box[1] * fx, box[2] * fy, box[3] * fx)
            entry = plan.setdefault(level, {"entries": {}})["entries"]
            entry.setdefault(e, []).append(region)
    margin = cfg.crop_margin + RECEPTIVE_HALF + cfg.radius
    for level, item in plan.items():
        rows, cols = scene.level_cells(level)
        regions = [r for rs in item["entries"].values() for r in rs]
        if cfg.max_levels == 0 or cfg.crop_margin == 0:
            item["box"] = (0, 0, rows, cols)
            continue
        r0 = max(0, int(math.floor(min(r[0] for r in regions))) - margin)
        c0 = max(0, int(math.floor(min(r[1] for r in regions))) - margin)
        r1 = min(rows, int(math.ceil(max(r[2] for r in regions))) + margin)
        c1 = min(cols, int(math.ceil(max(r[3] for r in regions))) + margin)
        full = (r1 - r0) * (c1 - c0) > FULL_LEVEL_FRACTION * rows * cols
        item["box"] = (0, 0, rows, cols) if full else (r0, c0, r1, c1)
    return plan


def _levels_for(scene: Scene, probe: int, side: float, max_levels: int, grid: int) -> List[int]:
    """The ``max_levels`` levels where an object of ``side`` probe cells is nearest to ``grid`` cells."""
    if max_levels <= 0 or max_levels >= len(scene):
        return list(range(len(scene)))
    want = max(scene.levels[probe].size) * grid / max(side, 1.0)
    dist = [abs(math.log(max(level.size) / want)) for level in scene.levels]
    return sorted(range(len(scene)), key=lambda i: dist[i])[:max_levels]


@torch.no_grad()
def cascade_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    """Candidates of the fast mode (per-class NMS applied), see the module docstring."""
    cfg, settings = detector.settings.cascade, detector.settings
    head = detector.model.head
    probe = probe_level(scene, cfg.probe_side)
    hits = probe_hits(scene.features(probe), bank, cfg)
    if hits.entries.numel() == 0:
        return Candidates.empty()
    if cfg.max_levels == 0:  # every level in full, no regions
        hits = Hits(entries=hits.entries.unique(), scores=hits.scores.new_zeros(0),
                    boxes=torch.zeros(0, 4))
        plan = {lv: {"box": (0, 0, *scene.level_cells(lv)), "entries": {e: None for e in hits.entries.tolist()}}
                for lv in range(len(scene))}
    else:
        plan = search_plan(scene, probe, hits, cfg, head.grid_size)
    parts = [_level_part(detector, scene, bank, level, item) for level, item in sorted(plan.items())]
    return reduce_per_class(Candidates.cat(parts), bank.entry_labels, settings)


def _level_part(detector, scene: Scene, bank: ClassBank, level: int, item: Dict) -> Candidates:
    """Stages 3 and 4 at one level (or the searched part of it)."""
    cfg, head, stride = detector.settings.cascade, detector.model.head, detector.model.backbone.stride
    r0, c0, _, _ = item["box"]
    fm = scene.crop_features(level, item["box"])
    entries = torch.tensor(sorted(item["entries"]), dtype=torch.int64)
    corr = head.correlation(fm, bank.entry_features(entries))
    # [k, S, h, w] of the searched part
    scores = head.identity_scores(corr)
    # [k, h, w]
    mask = _region_mask(item, entries, scores.shape[-2:], (r0, c0))
    centers = _candidates(scores.masked_fill(~mask, -3.0), cfg, stride=stride, anchor=head.anchor_size)
    out = head.at_locations(corr, centers, radius=cfg.radius)
    offset = torch.tensor([c0, r0], dtype=torch.float32)
    return level_candidates(
        scores=out.scores, boxes=out.boxes + (offset * stride).repeat(2), corners=out.corners + offset * stride,
        centers=torch.stack([out.index[:, 2], out.index[:, 1]], -1).float() + offset, entries=entries[out.index[:, 0]],
        level=level, level_size=scene.levels[level].size, scale=scene.levels[level].scale, stride=stride,
        anchor_size=head.anchor_size, score_threshold=detector.raw_thresholds(bank))


def _region_mask(item: Dict, entries: torch.Tensor, shape: Tuple[int, int], origin: Tuple[int, int]) -> torch.Tensor:
    """``Tensor[k, h, w]`` bool: the cells where each entry's candidates may lie (near its windows)."""
    height, width = shape
    mask = torch.zeros(entries.numel(), height, width, dtype=torch.bool)
    for i, e in enumerate(entries.tolist()):
        regions = item["entries"][e]
        if regions is None:
            mask[i] = True
            continue
        for r in regions:
            y0, x0 = max(0, int(math.floor(r[0])) - origin[0] - 1), max(0, int(math.floor(r[1])) - origin[1] - 1)
            y1, x1 = int(math.ceil(r[2])) - origin[0] + 1, int(math.ceil(r[3])) - origin[1] + 1
            mask[i, y0:max(y0, y1), x0:max(x0, x1)] = True
    return mask


def _candidates(scores: torch.Tensor, cfg: CascadeSettings, *, stride: int, anchor: float) -> torch.Tensor:
    """Stage 3's picks: per entry, the best identity-score locations after an NMS of their anchors.

    Returns ``Tensor[M, 3]`` int64 ``(entry, row, col)``.
    """
    k, height, width = scores.shape
    top = min(cfg.candidates * 4, height * width)
    values, flat = scores.reshape(k, -1).topk(top, dim=1)
    rows, cols = flat // width, flat % width
    boxes = anchor_boxes(torch.stack([cols, rows], -1).float(), stride=stride, size=anchor).reshape(-1, 4)
    entry = torch.arange(k).repeat_interleave(top)
    valid = values.reshape(-1) > -3.0
    keep = nms_per_class(boxes[valid], values.reshape(-1)[valid], entry[valid], iou=cfg.candidate_nms)
    keep = valid.nonzero().squeeze(1)[keep]
    picked, taken = [], torch.zeros(k, dtype=torch.int64)
    for i in keep.tolist():
        e = int(entry[i])
        if taken[e] < cfg.candidates:
            taken[e] += 1
            picked.append((e, int(rows.reshape(-1)[i]), int(cols.reshape(-1)[i])))
    return torch.tensor(picked, dtype=torch.int64).reshape(-1, 3)
