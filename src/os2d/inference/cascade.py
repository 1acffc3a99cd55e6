"""Fast mode: a cascade whose last stage is the exact OS2D head.

1. **Shortlist** (per scene): at one *probe* level (the level whose longer side is nearest to
   ``cascade.probe_side``), the scene features are average-pooled over square windows of several
   sizes; each class entry's global descriptor (the normalised mean of its feature map) is compared
   with every window. A class's score is its best cosine; the ``cascade.shortlist`` best classes
   (plus any within ``cascade.shortlist_margin`` of the best) go on. The window size of the best
   match estimates the object's scale: with ``cascade.max_levels > 0`` only that many pyramid levels
   nearest to the estimate are searched for the class (0: every level).
2. **Identity score** (per shortlisted entry and searched level): the OS2D score with the identity
   transform, i.e. the correlation with the class feature map pooled on the fixed grid -- cheap,
   no TransformNet. Its ``cascade.candidates`` best locations per entry (over all levels, after an
   NMS of IoU ``cascade.candidate_nms`` between their anchors) go on.
3. **Exact head** in windows: TransformNet and the resampled, pooled score at every location within
   ``cascade.radius`` of each candidate, exactly as in exact mode (TransformNet's receptive field
   is 15 x 15 correlation cells, so a window gives the dense output at its centre).

Every cut-off is a field of :class:`os2d.inference.settings.CascadeSettings`. Memory: the
features of the shortlisted classes and one level's correlation maps, whatever the catalog size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F

from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, level_candidates, reduce_per_class
from os2d.inference.scene import Scene
from os2d.inference.settings import CascadeSettings
from os2d.ops.boxes import anchor_boxes, nms_per_class
from os2d.ops.features import l2_normalize

#: Window sides (feature cells) of the shortlist's region descriptors.
WINDOWS = (2, 3, 4, 6, 8, 11, 15, 20)


@dataclass
class Shortlist:
    """Stage 1's result: the classes kept and, per class, the object side estimate (probe cells)."""

    labels: torch.Tensor  # [k] int64 class labels, best first
    scores: torch.Tensor  # [k] their shortlist scores
    window: torch.Tensor  # [k] side (cells at the probe level) of each class's best window


def probe_level(scene: Scene, probe_side: int) -> int:
    """Index of the level whose longer side is nearest (in log scale) to ``probe_side``."""
    sides = [max(level.size) for level in scene.levels]
    return min(range(len(sides)), key=lambda i: abs(math.log(sides[i] / probe_side)))


def region_descriptors(fm: torch.Tensor) -> List[tuple]:
    """``[(window, Tensor[C, R])]``: L2-normalised mean features of every square window of each size."""
    _, c, height, width = fm.shape
    out = []
    for w in WINDOWS:
        if w > max(height, width):
            break
        kh, kw = min(w, height), min(w, width)
        pooled = F.avg_pool2d(fm, (kh, kw), stride=1)
        out.append((w, l2_normalize(pooled.reshape(c, -1), dim=0, eps=1e-12)))
        # [C, R]
    return out


def shortlist(fm: torch.Tensor, bank: ClassBank, cfg: CascadeSettings) -> Shortlist:
    """Stage 1 on probe features ``Tensor[1, C, H, W]`` (see the module docstring)."""
    desc = bank.extras["descriptors"].to(fm.dtype)
    # [K, C]
    best = torch.full((desc.shape[0],), -2.0)
    best_w = torch.zeros(desc.shape[0], dtype=torch.int64)
    for w, regions in region_descriptors(fm):
        score = (desc @ regions).amax(dim=1)
        # [K]
        better = score > best
        best, best_w = torch.where(better, score, best), torch.where(better, torch.tensor(w), best_w)
    labels = bank.entry_labels
    num = len(bank)
    class_best = torch.full((num,), -2.0).scatter_reduce(0, labels, best, reduce="amax")
    order = torch.argsort(class_best, descending=True, stable=True)
    keep = num if cfg.shortlist == 0 else min(cfg.shortlist, num)
    top = class_best[order[0]] if num else torch.tensor(0.0)
    extra = (class_best[order] >= top - cfg.shortlist_margin) if cfg.shortlist_margin > 0 else None
    chosen = order[:keep] if extra is None else order[(torch.arange(num) < keep) | extra]
    window = torch.zeros(num, dtype=torch.int64)
    for entry in torch.argsort(best, descending=False).tolist():  # the best entry of a class wins
        window[labels[entry]] = best_w[entry]
    return Shortlist(labels=chosen, scores=class_best[chosen], window=window[chosen])


def levels_for(scene: Scene, probe: int, window: int, max_levels: int) -> List[int]:
    """The ``max_levels`` levels where an object of ``window`` cells at the probe is nearest to the anchor."""
    if max_levels <= 0 or max_levels >= len(scene):
        return list(range(len(scene)))
    grid = 15.0
    want = max(scene.levels[probe].size) * grid / max(window, 1)
    dist = [abs(math.log(max(level.size) / want)) for level in scene.levels]
    return sorted(sorted(range(len(scene)), key=lambda i: dist[i])[:max_levels])


@torch.no_grad()
def cascade_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    """Candidates of the fast mode (per-class NMS applied), see the module docstring."""
    cfg, settings = detector.settings.cascade, detector.settings
    head, stride = detector.model.head, detector.model.backbone.stride
    probe = probe_level(scene, cfg.probe_side)
    short = shortlist(scene.features(probe), bank, cfg)
    entries = torch.cat([bank.entries_of(int(label)) for label in short.labels]) if len(short.labels) else \
        torch.zeros(0, dtype=torch.int64)
    if entries.numel() == 0:
        return Candidates.empty()
    features = bank.entry_features(entries)
    # [k, C, g, g]
    levels = {int(label): levels_for(scene, probe, int(w), cfg.max_levels)
              for label, w in zip(short.labels.tolist(), short.window.tolist())}
    searched = [levels[int(bank.entry_labels[e])] for e in entries.tolist()]
    picks = _identity_candidates(head, scene, features, searched, cfg, stride=stride)
    parts = []
    for level, pairs in sorted(picks.items()):
        local = torch.tensor(pairs, dtype=torch.int64)
        # [M, 3] (local entry, row, col)
        used = local[:, 0].unique()
        corr = head.correlation(scene.features(level), features[used])
        remap = torch.full((features.shape[0],), -1, dtype=torch.int64)
        remap[used] = torch.arange(used.numel())
        centers = torch.stack([remap[local[:, 0]], local[:, 1], local[:, 2]], -1)
        out = head.at_locations(corr, centers, radius=cfg.radius)
        parts.append(level_candidates(
            scores=out.scores, boxes=out.boxes, corners=out.corners,
            centers=torch.stack([out.index[:, 2], out.index[:, 1]], -1).float(),
            entries=entries[used[out.index[:, 0]]], level=level, level_size=scene.levels[level].size,
            scale=scene.levels[level].scale, stride=stride, anchor_size=head.anchor_size,
            score_threshold=settings.score_threshold))
    return reduce_per_class(Candidates.cat(parts), bank.entry_labels, settings)


def _identity_candidates(head, scene: Scene, features: torch.Tensor, searched: Sequence[Sequence[int]],
                         cfg: CascadeSettings, *, stride: int) -> Dict[int, List[tuple]]:
    """Stage 2: per entry, its best identity-score locations over its levels -> ``{level: [(entry, row, col)]}``."""
    k = features.shape[0]
    pool_scores, pool_boxes, pool_entry, pool_where = [], [], [], []
    for level in sorted({lv for levels in searched for lv in levels}):
        members = torch.tensor([i for i in range(k) if level in searched[i]], dtype=torch.int64)
        fm = scene.features(level)
        scores = head.identity_scores(head.correlation(fm, features[members]))
        # [m, H, W]
        m, height, width = scores.shape
        top = min(cfg.candidates, height * width)
        values, flat = scores.reshape(m, -1).topk(top, dim=1)
        # [m, top]: only the best few per level can be among the best few over all levels
        rows, cols = flat // width, flat % width
        centers = torch.stack([cols, rows], -1).float()
        sx, sy = scene.levels[level].scale
        boxes = anchor_boxes(centers, stride=stride, size=head.anchor_size) * torch.tensor([sx, sy, sx, sy])
        pool_scores.append(values.reshape(-1))
        pool_boxes.append(boxes.reshape(-1, 4))
        pool_entry.append(members.repeat_interleave(top))
        pool_where.append(torch.stack([torch.full_like(flat, level), rows, cols], -1).reshape(-1, 3))
    scores, boxes = torch.cat(pool_scores), torch.cat(pool_boxes)
    entry, where = torch.cat(pool_entry), torch.cat(pool_where)
    keep = nms_per_class(boxes, scores, entry, iou=cfg.candidate_nms)
    picks: Dict[int, List[tuple]] = {}
    taken = torch.zeros(k, dtype=torch.int64)
    for i in keep.tolist():
        e = int(entry[i])
        if taken[e] >= cfg.candidates:
            continue
        taken[e] += 1
        level, row, col = where[i].tolist()
        picks.setdefault(level, []).append((e, row, col))
    return picks
